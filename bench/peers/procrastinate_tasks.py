"""procrastinate's benchmark tasks, registered on its Django app (procrastinate.contrib.django)."""

from __future__ import annotations

import time

from procrastinate.contrib.django import app

from bench.peers.record import record


@app.task(name="bench.noop")
def noop(n: int) -> int:
    return n


@app.task(name="bench.latency")
def latency(sample: int) -> int:
    started = time.time()
    record(sample, started)
    return sample
