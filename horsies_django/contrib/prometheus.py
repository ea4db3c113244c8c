"""Prometheus metrics: queue state read from the database, task counters recorded by workers.

Queue state (the same in every process, so any one may serve it):
    horsies_tasks{queue,status}                 tasks in each status
    horsies_tasks_scheduled{queue}              pending tasks waiting for a future run_at
    horsies_oldest_ready_age_seconds{queue}     how long the oldest ready task has waited
    horsies_workers{state}                      workers by state (alive, silent, stopped; last hour)

Counters and histograms, recorded in each worker process from horsies_django.signals once
`record_task_metrics()` has run (`horsies_worker --metrics-port` runs it):
    horsies_tasks_finished_total{queue,task,status}   COMPLETED or FAILED
    horsies_tasks_retried_total{queue,task}
    horsies_task_run_seconds{queue,task}              start to finish of the last try
    horsies_task_start_latency_seconds{queue}         send to start of the last try

Serve the first group with `metrics_view` (mount it in urls.py) or `horsies_status --prometheus`.
Each worker serves its own counters on `--metrics-port`; several processes on one host can share
one exposition through prometheus-client's multiprocess mode (PROMETHEUS_MULTIPROC_DIR), which
`metrics_view` then reads too.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    start_http_server,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from .. import signals

RUN_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600)
LATENCY_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600)

FINISHED = Counter(
    "horsies_tasks_finished", "Tasks that ended in a worker, by final status.", ["queue", "task", "status"]
)
RETRIED = Counter("horsies_tasks_retried", "Tries that failed and were scheduled again.", ["queue", "task"])
RUN_SECONDS = Histogram(
    "horsies_task_run_seconds", "Run time of a task's last try.", ["queue", "task"], buckets=RUN_BUCKETS
)
START_LATENCY = Histogram(
    "horsies_task_start_latency_seconds", "From send to the start of the last try.", ["queue"], buckets=LATENCY_BUCKETS
)


class DatabaseCollector(Collector):
    """Queue depth, oldest ready age and workers, read from the database at each scrape."""

    def collect(self) -> Iterator[Metric]:
        from .. import stats

        now = timezone.now()
        tasks = GaugeMetricFamily("horsies_tasks", "Tasks in each status.", labels=["queue", "status"])
        scheduled = GaugeMetricFamily(
            "horsies_tasks_scheduled", "Pending tasks waiting for a future run_at.", labels=["queue"]
        )
        oldest = GaugeMetricFamily(
            "horsies_oldest_ready_age_seconds", "Wait of the oldest task ready to run.", labels=["queue"]
        )
        for queue in stats.queue_stats(now):
            for status, count in queue.counts.items():
                tasks.add_metric([queue.name, status], count)
            scheduled.add_metric([queue.name], queue.scheduled)
            oldest.add_metric([queue.name], queue.oldest_pending_s or 0.0)
        workers = GaugeMetricFamily("horsies_workers", "Workers seen in the last hour, by state.", labels=["state"])
        states = dict.fromkeys(("alive", "silent", "stopped"), 0)
        for worker in stats.worker_stats(now):
            states[worker.state] = states.get(worker.state, 0) + 1
        for state, count in states.items():
            workers.add_metric([state], count)
        yield from (tasks, scheduled, oldest, workers)


def registry() -> CollectorRegistry:
    """The database metrics plus this process's own (or, in multiprocess mode, every process's)."""
    combined = CollectorRegistry(auto_describe=False)
    combined.register(DatabaseCollector())
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.MultiProcessCollector(combined)  # type: ignore[no-untyped-call]
    else:
        combined.register(_Forward(REGISTRY))
    return combined


class _Forward(Collector):
    def __init__(self, source: CollectorRegistry) -> None:
        self.source = source

    def collect(self) -> Iterator[Metric]:
        yield from self.source.collect()


def exposition() -> bytes:
    """The metrics in Prometheus' text format."""
    return generate_latest(registry())


def metrics_view(request: HttpRequest) -> HttpResponse:
    """`path("metrics", metrics_view)`. Protect it as you would any internal endpoint."""
    return HttpResponse(exposition(), content_type=CONTENT_TYPE_LATEST)


def record_task_metrics() -> None:
    """Count finishes and retries and time runs in this process, from horsies_django.signals."""
    signals.task_finished.connect(_finished, weak=False, dispatch_uid="horsies_django.contrib.prometheus.finished")
    signals.task_retried.connect(_retried, weak=False, dispatch_uid="horsies_django.contrib.prometheus.retried")


def _finished(sender: Any, *, task_name: str, queue_name: str, status: str, **kwargs: Any) -> None:
    FINISHED.labels(queue_name, task_name, status).inc()
    started, finished, enqueued = kwargs.get("started_at"), kwargs.get("finished_at"), kwargs.get("enqueued_at")
    if started is not None and finished is not None:
        RUN_SECONDS.labels(queue_name, task_name).observe(max((finished - started).total_seconds(), 0.0))
    if started is not None and enqueued is not None:
        START_LATENCY.labels(queue_name).observe(max((started - enqueued).total_seconds(), 0.0))


def _retried(sender: Any, *, task_name: str, queue_name: str, **kwargs: Any) -> None:
    RETRIED.labels(queue_name, task_name).inc()


__all__ = ["DatabaseCollector", "exposition", "metrics_view", "record_task_metrics", "registry", "start_http_server"]
