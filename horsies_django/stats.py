"""Read-only numbers about the queue, shared by the admin dashboard and `manage.py horsies_status`.

Every query here is cheap on a large table: it reads through an index (status, finished_at, the
pending-only index) or a small group, never a COUNT(*) of the whole table per page.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.db import connections
from django.db.models import Count, Field, Min, Q, QuerySet
from django.db.models.functions import TruncMinute
from django.utils import timezone

from . import failures
from .conf import get_settings
from .models import HELD_STATUSES, Task, TaskStatus, WorkerProcess

STATUSES = [status.value for status in TaskStatus]
# Values read with a loose index scan, so listing them costs one index probe per distinct value:
# columns that lead an index, and columns that follow `status` in the status index.
DISTINCT_FIELDS = frozenset({"name", "error_code"})
DISTINCT_AFTER_STATUS = frozenset({"queue_name"})
# Below this, an exact count is cheap enough; above it, the planner's estimate is shown instead.
EXACT_COUNT_LIMIT = 10_000


@dataclass(frozen=True)
class QueueStats:
    name: str
    counts: dict[str, int]
    scheduled: int = 0
    oldest_pending_s: float | None = None

    @property
    def total(self) -> int:
        return sum(self.counts.values())


@dataclass(frozen=True)
class MinuteStats:
    start: datetime
    completed: int = 0
    failed: int = 0


@dataclass(frozen=True)
class ErrorStats:
    """A group of failures (`failures.ErrorGroup`): one task, one code, one normalised message."""

    code: str
    count: int
    name: str = ""
    group: str = ""
    message: str = ""


@dataclass(frozen=True)
class RunningTask:
    id: str
    name: str
    status: str
    started_at: datetime | None


@dataclass(frozen=True)
class WorkerStats:
    id: str
    hostname: str
    pid: int
    queues: list[str]
    concurrency: int
    pool: str
    started_at: datetime
    last_heartbeat_at: datetime
    stopped_at: datetime | None
    state: str
    heartbeat_age_s: float
    running: list[RunningTask] = field(default_factory=list)


@dataclass(frozen=True)
class Snapshot:
    """Everything the dashboard and `horsies_status` show, read at `at`."""

    at: datetime
    queues: list[QueueStats]
    throughput: list[MinuteStats]
    top_errors: list[ErrorStats]
    workers: list[WorkerStats]

    def totals(self) -> dict[str, int]:
        return {status: sum(q.counts[status] for q in self.queues) for status in STATUSES}

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON types: datetimes as ISO 8601 strings."""
        data = asdict(self)
        data["totals"] = self.totals()
        result: dict[str, Any] = json.loads(json.dumps(data, default=_iso))
        return result


def _iso(value: object) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"cannot encode {type(value).__name__}")


def _tasks() -> QuerySet[Task]:
    return Task.objects.using(get_settings().database)


def heartbeat_grace_s() -> float:
    """A worker is alive while its last heartbeat is at most two heartbeats old."""
    return 2 * get_settings().worker.heartbeat_s


def worker_state(worker: WorkerProcess, now: datetime) -> str:
    if worker.stopped_at is not None:
        return "stopped"
    age = (now - worker.last_heartbeat_at).total_seconds()
    return "alive" if age <= heartbeat_grace_s() else "silent"


def queue_stats(now: datetime) -> list[QueueStats]:
    """Per queue: a count for every status, how many wait for a future `run_at`, the oldest ready wait."""
    rows = list(_tasks().order_by().values("queue_name", "status").annotate(n=Count("*")))
    # Configured queues are listed even while empty.
    names = set(get_settings().queues) | {row["queue_name"] for row in rows}
    counts = {name: dict.fromkeys(STATUSES, 0) for name in names}
    for row in rows:
        counts[row["queue_name"]][row["status"]] = row["n"]
    pending = _tasks().order_by().filter(status=TaskStatus.PENDING)
    scheduled = dict(
        pending.filter(run_at__gt=now).values("queue_name").annotate(n=Count("*")).values_list("queue_name", "n")
    )
    oldest = dict(
        pending.filter(run_at__lte=now).values("queue_name").annotate(at=Min("run_at")).values_list("queue_name", "at")
    )
    return [
        QueueStats(
            name=name,
            counts=counts[name],
            scheduled=scheduled.get(name, 0),
            oldest_pending_s=(now - oldest[name]).total_seconds() if name in oldest else None,
        )
        for name in sorted(counts)
    ]


def throughput(now: datetime, minutes: int = 60) -> list[MinuteStats]:
    """Tasks that ended COMPLETED or FAILED in each of the last `minutes` minutes, oldest first."""
    last = now.replace(second=0, microsecond=0)
    first = last - timedelta(minutes=minutes - 1)
    rows = (
        _tasks()
        .order_by()
        .filter(finished_at__gte=first, status__in=[TaskStatus.COMPLETED, TaskStatus.FAILED])
        .annotate(minute=TruncMinute("finished_at"))
        .values("minute", "status")
        .annotate(n=Count("*"))
    )
    found: dict[tuple[datetime, str], int] = {(row["minute"], row["status"]): row["n"] for row in rows}
    buckets = []
    for i in range(minutes):
        start = first + timedelta(minutes=i)
        buckets.append(
            MinuteStats(
                start=start,
                completed=found.get((start, TaskStatus.COMPLETED), 0),
                failed=found.get((start, TaskStatus.FAILED), 0),
            )
        )
    return buckets


def top_errors(now: datetime, hours: int = 24, limit: int = 10) -> list[ErrorStats]:
    """The largest error groups among tasks that failed in the last `hours` hours."""
    return [
        ErrorStats(code=g.code, count=g.failed, name=g.name, group=g.group, message=g.message)
        for g in failures.top_groups(now, hours=hours, limit=limit)
    ]


def worker_stats(now: datetime, *, recent_s: float = 3600, limit: int = 50) -> list[WorkerStats]:
    """Workers not stopped, or stopped in the last `recent_s` seconds, with the tasks they hold."""
    workers = list(
        WorkerProcess.objects.using(get_settings().database)
        .filter(Q(stopped_at__isnull=True) | Q(stopped_at__gte=now - timedelta(seconds=recent_s)))
        .order_by("-last_heartbeat_at")[:limit]
    )
    running: dict[str, list[RunningTask]] = defaultdict(list)
    held = (
        _tasks()
        .filter(status__in=HELD_STATUSES, worker_id__in=[w.id for w in workers])
        .order_by("started_at")
        .values_list("worker_id", "id", "name", "status", "started_at")
    )
    for worker_id, task_id, name, status, started_at in held:
        running[str(worker_id)].append(RunningTask(id=str(task_id), name=name, status=status, started_at=started_at))
    return [
        WorkerStats(
            id=w.id,
            hostname=w.hostname,
            pid=w.pid,
            queues=list(w.queues),
            concurrency=w.concurrency,
            pool=w.pool,
            started_at=w.started_at,
            last_heartbeat_at=w.last_heartbeat_at,
            stopped_at=w.stopped_at,
            state=worker_state(w, now),
            heartbeat_age_s=max((now - w.last_heartbeat_at).total_seconds(), 0.0),
            running=running[w.id],
        )
        for w in workers
    ]


def snapshot(now: datetime | None = None) -> Snapshot:
    now = now or timezone.now()
    return Snapshot(
        at=now,
        queues=queue_stats(now),
        throughput=throughput(now),
        top_errors=top_errors(now),
        workers=worker_stats(now),
    )


def distinct_values(field_name: str, limit: int = 200) -> list[str]:
    """The distinct non-null values of an indexed column, smallest first, at most `limit` of them.

    A loose index scan: one `min(col) WHERE col > previous` probe per value, instead of the
    `SELECT DISTINCT` that reads every row (tens of milliseconds per million rows on each page).
    A column that follows `status` in the status index is scanned once per status, so it needs no
    index of its own (which every send would have to write); rows whose status is not one of
    `TaskStatus` (written behind the broker's back) are not among its values.
    """
    if field_name not in DISTINCT_FIELDS | DISTINCT_AFTER_STATUS:
        raise ValueError(f"no loose index scan for {field_name!r}")
    alias = get_settings().database
    quote = connections[alias].ops.quote_name
    field = Task._meta.get_field(field_name)
    assert isinstance(field, Field) and field.column
    table, column, status = quote(Task._meta.db_table), quote(field.column), quote("status")
    if field_name in DISTINCT_FIELDS:
        sql = (
            f"WITH RECURSIVE t(v, n) AS (SELECT MIN({column}), 1 FROM {table} "
            f"UNION ALL SELECT (SELECT MIN({column}) FROM {table} WHERE {column} > t.v), t.n + 1 "
            "FROM t WHERE t.v IS NOT NULL AND t.n < %s) SELECT v FROM t WHERE v IS NOT NULL"
        )
        params: list[Any] = [limit]
    else:
        values = ", ".join(["(%s)"] * len(STATUSES))
        sql = (
            f"WITH RECURSIVE t(s, v, n) AS (SELECT statuses.column1, (SELECT MIN({column}) FROM {table} "
            f"WHERE {status} = statuses.column1), 1 FROM (VALUES {values}) AS statuses "
            f"UNION ALL SELECT t.s, (SELECT MIN({column}) FROM {table} WHERE {status} = t.s AND {column} > t.v), "
            # A value found under several statuses comes once per status: grouped (these few rows,
            # not the table), ordered and cut by the database, as the one-column scan is.
            "t.n + 1 FROM t WHERE t.v IS NOT NULL AND t.n < %s) "
            "SELECT v FROM t WHERE v IS NOT NULL GROUP BY v ORDER BY v LIMIT %s"
        )
        params = [*STATUSES, limit, limit]
    with connections[alias].cursor() as cursor:
        cursor.execute(sql, params)
        return [row[0] for row in cursor.fetchall()]


def estimated_count(queryset: QuerySet[Any]) -> tuple[int, bool]:
    """How many rows `queryset` holds, and whether that is an estimate.

    Exact when small or off PostgreSQL; otherwise the planner's estimate (from `pg_class.reltuples`
    and the column statistics), which costs no scan, where an exact COUNT(*) of a million rows
    costs a full index or table scan on every page.
    """
    queryset = queryset.order_by()
    if connections[queryset.db].vendor == "postgresql":
        plan = json.loads(queryset.explain(format="json"))
        estimate = int(plan[0]["Plan"]["Plan Rows"])
        if estimate > EXACT_COUNT_LIMIT:
            return estimate, True
    return queryset.count(), False


def human_duration(seconds: float | None) -> str:
    """`420ms`, `1.5s`, `12s`, `3m 04s`, `2h 05m`, `3d 4h`; an empty string for None."""
    if seconds is None:
        return ""
    seconds = max(seconds, 0.0)
    if seconds < 10:
        return f"{seconds * 1000:.0f}ms" if seconds < 1 else f"{seconds:.1f}s"
    whole = int(seconds)
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m {whole % 60:02d}s"
    if whole < 86400:
        return f"{whole // 3600}h {whole % 3600 // 60:02d}m"
    return f"{whole // 86400}d {whole % 86400 // 3600}h"
