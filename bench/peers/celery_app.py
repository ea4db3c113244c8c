"""Celery + Redis, the peer outside the database-queue family, for bench/run.py.

Default settings apart from a result backend (Redis, as the broker), which the benchmark needs
to see when tasks finished: horsies stores every result too. Redis databases 11 and 12 by default,
so that a run does not touch other users' keys on a shared Redis.
"""

from __future__ import annotations

import os
import time

from celery import Celery

from bench.peers.record import record

BROKER_URL = os.environ.get("HORSIES_BENCH_CELERY_BROKER", "redis://127.0.0.1:6379/11")
RESULT_URL = os.environ.get("HORSIES_BENCH_CELERY_BACKEND", "redis://127.0.0.1:6379/12")

app = Celery("horsies_bench", broker=BROKER_URL, backend=RESULT_URL)
app.conf.update(broker_connection_retry_on_startup=True, worker_hijack_root_logger=False)


@app.task(name="bench.noop")
def noop(n: int) -> int:
    return n


@app.task(name="bench.latency")
def latency(sample: int) -> int:
    started = time.time()
    record(sample, started)
    return sample
