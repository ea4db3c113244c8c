"""Celery + Redis as a peer of bench/run.py: the same measures through the same `Library` interface.

Celery has no burst mode, so a processing run waits until every result is stored, then stops the
workers. Finish times come from the results' `date_done`; Celery stores no start time, so its
"start -> first task" is its first finish (for a no-op task, the same moment within a millisecond).
"""

from __future__ import annotations

import datetime as dt
import os
import sys
import uuid
from importlib.util import find_spec
from typing import Any

from bench.run import Library

CELERY = "celery"
# Prefork children per worker process, as in the reference run ("prefork 2 per worker").
DEFAULT_CONCURRENCY = 2


def unavailable() -> str | None:
    """Why Celery cannot run here, or None."""
    if not find_spec("celery") or not find_spec("redis"):
        return "not installed (pip install 'celery[redis]')"
    import redis

    from bench.peers.celery_app import BROKER_URL

    try:
        redis.Redis.from_url(BROKER_URL, socket_connect_timeout=2).ping()
    except redis.RedisError as exc:
        return f"no Redis at {BROKER_URL} ({exc.__class__.__name__})"
    return None


class Celery(Library):
    name = CELERY
    idle_poll_s = 0.05  # the worker blocks on Redis (BRPOP): it wakes at once
    has_blocking_get = True
    burst_exits = False
    concurrency = int(os.environ.get("HORSIES_BENCH_CELERY_CONCURRENCY", DEFAULT_CONCURRENCY))

    def __init__(self) -> None:
        import redis

        from bench.peers import celery_app

        self.tasks = celery_app
        self.broker = redis.Redis.from_url(celery_app.BROKER_URL)
        self.results = redis.Redis.from_url(celery_app.RESULT_URL)

    def reset(self) -> None:
        self.broker.flushdb()
        self.results.flushdb()

    def send(self, n: int) -> None:
        self.tasks.noop.delay(n)

    def fill(self, n: int) -> None:
        with self.tasks.app.producer_or_acquire() as producer:
            for i in range(n):
                self.tasks.noop.apply_async((i,), producer=producer)

    def worker_command(self, *, pool: str, concurrency: int, burst: bool) -> list[str]:
        return [
            sys.executable, "-m", "celery", "-A", "bench.peers.celery_app", "worker",
            "--pool", "prefork", "--concurrency", str(self.concurrency), "--loglevel", "WARNING",
            "--without-gossip", "--without-mingle", "--without-heartbeat", "-n", f"bench-{uuid.uuid4().hex[:8]}@%h",
        ]  # fmt: skip

    def done_count(self) -> int:
        return int(self.results.dbsize())

    def finish_times(self, since: dt.datetime) -> list[dt.datetime]:
        import json

        times = []
        keys = list(self.results.scan_iter(match="celery-task-meta-*", count=5000))
        for start in range(0, len(keys), 5000):
            for raw in self.results.mget(keys[start : start + 5000]):
                if raw is None:
                    continue
                meta = json.loads(raw)
                if meta.get("status") != "SUCCESS" or not meta.get("date_done"):
                    continue
                done = dt.datetime.fromisoformat(meta["date_done"])
                times.append(done if done.tzinfo else done.replace(tzinfo=dt.UTC))
        return sorted(t for t in times if t >= since)

    def drained(self, since: dt.datetime) -> tuple[int, dt.datetime | None, dt.datetime | None]:
        times = self.finish_times(since)
        return len(times), (times[0] if times else None), (times[-1] if times else None)

    def first_start(self, since: dt.datetime) -> dt.datetime | None:
        times = self.finish_times(since)
        return times[0] if times else None

    def send_latency(self, sample: int) -> Any:
        return self.tasks.latency.delay(sample)

    def get(self, handle: Any) -> None:
        handle.get(timeout=30)

    def analyze(self) -> None:
        pass
