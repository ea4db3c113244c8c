"""django-tasks-db's benchmark tasks (django.tasks API; the backport before Django 6)."""

from __future__ import annotations

import time

try:
    from django.tasks import task  # type: ignore[import-not-found,unused-ignore]
except ImportError:
    from django_tasks import task  # type: ignore[no-redef,unused-ignore]

from bench.peers.record import record


@task()
def noop(n: int) -> int:
    return n


@task()
def latency(sample: int) -> int:
    started = time.time()
    record(sample, started)
    return sample
