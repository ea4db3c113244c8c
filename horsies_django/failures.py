"""Failures grouped like an error tracker's issues: by task name and `Task.error_group` (the error
code and the normalised message). Read-only; the admin's Errors page and the dashboard use it.

Every count comes from one grouped scan of `horsies_task_error_group_idx`, which holds only failed
and retrying rows; a group's sample and its 24-hour sparkline are ranges of the same index.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db.models import Count, Max, Min, Q, QuerySet
from django.db.models.functions import TruncHour

from .conf import get_settings
from .models import Task, TaskStatus
from .types.grouping import normalise

# A group's rows: FAILED ones, and PENDING ones waiting for an automatic retry after failing so.
SPARK_HOURS = 24
FAILED = Q(status=TaskStatus.FAILED)


@dataclass(frozen=True)
class ErrorGroup:
    name: str
    group: str
    failed: int
    retrying: int
    first_seen: datetime | None
    last_seen: datetime | None
    code: str = ""
    message: str = ""  # the sample's message, normalised
    sample_id: str | None = None
    hourly: list[int] = field(default_factory=list)  # failures per hour over the last 24 h, oldest first


def _tasks() -> QuerySet[Task]:
    return Task.objects.using(get_settings().database).order_by()


def in_group(name: str, group: str) -> Q:
    return Q(name=name, error_group=group)


def grouped_rows(*, name: str | None = None, since: datetime | None = None) -> QuerySet[Task]:
    """Every row of the partial index. Statuses are told apart by the counts' FILTERs, not in the
    WHERE clause, so PostgreSQL reads the index alone, in group order (an index-only scan)."""
    rows = _tasks().filter(error_group__isnull=False)
    if name:
        rows = rows.filter(name=name)
    if since is not None:
        rows = rows.filter(finished_at__gte=since)
    return rows


def group_counts(*, name: str | None = None, since: datetime | None = None) -> QuerySet[Any, Any]:
    """The one grouped query: per task name and group, failed and retrying counts, first and last seen."""
    return (
        grouped_rows(name=name, since=since)
        .values("name", "error_group")
        .annotate(
            failed=Count("pk", filter=FAILED),
            retrying=Count("pk", filter=Q(status=TaskStatus.PENDING)),
            first=Min("finished_at", filter=FAILED),
            last=Max("finished_at", filter=FAILED),
        )
    )


def error_groups(
    now: datetime, *, name: str | None = None, since: datetime | None = None, order: str = "last", limit: int = 50
) -> tuple[list[ErrorGroup], int]:
    """The groups (most recent or largest first, at most `limit`) with samples and sparklines, and
    how many groups there are in all."""
    rows = group_counts(name=name, since=since)
    groups = [
        ErrorGroup(
            name=row["name"],
            group=str(row["error_group"]),
            failed=row["failed"],
            retrying=row["retrying"],
            first_seen=row["first"],
            last_seen=row["last"],
        )
        for row in rows
        if row["failed"] or row["retrying"]  # rows of other statuses only (cancelled since) form no group
    ]
    if order == "count":
        groups.sort(key=lambda g: (-g.failed, -g.retrying, g.name))
    else:  # groups of only retrying rows have no finish time yet: they are the newest
        groups.sort(key=lambda g: (g.last_seen is not None, -(g.last_seen or now).timestamp(), g.name))
    return complete(groups[:limit], now), len(groups)


def top_groups(now: datetime, *, hours: int = 24, limit: int = 10) -> list[ErrorGroup]:
    """The groups with the most failures that ended in the last `hours` hours."""
    since = now - timedelta(hours=hours)
    rows = (
        grouped_rows(since=since)
        .values("name", "error_group")
        .annotate(
            n=Count("pk", filter=FAILED),
            first=Min("finished_at", filter=FAILED),
            last=Max("finished_at", filter=FAILED),
        )
        .filter(n__gt=0)
        .order_by("-n", "name", "error_group")[:limit]
    )
    groups = [
        ErrorGroup(
            name=row["name"],
            group=str(row["error_group"]),
            failed=row["n"],
            retrying=0,
            first_seen=row["first"],
            last_seen=row["last"],
        )
        for row in rows
    ]
    return complete(groups, now, sparkline=False)


def complete(groups: list[ErrorGroup], now: datetime, *, sparkline: bool = True) -> list[ErrorGroup]:
    """Add each group's sample (its latest failure: code, normalised message, id) and sparkline."""
    if not groups:
        return []
    first_hour = now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=SPARK_HOURS - 1)
    done = []
    for g in groups:
        sample = _sample(g, TaskStatus.FAILED) or _sample(g, TaskStatus.PENDING)
        if sample is not None:
            pk, code, message = sample
            g = replace(g, code=code or "", message=normalise(message or ""), sample_id=str(pk))
        if sparkline:
            g = replace(g, hourly=_hourly(g, first_hour))
        done.append(g)
    return done


def _sample(g: ErrorGroup, status: str) -> tuple[Any, str | None, str] | None:
    """The group's latest row in `status`: one backward step along the group's index range."""
    return (
        _tasks()
        .filter(in_group(g.name, g.group), status=status)
        .order_by("-finished_at")
        .values_list("pk", "error_code", "error_message")
        .first()
    )


def _hourly(g: ErrorGroup, first_hour: datetime) -> list[int]:
    """Failures per hour since `first_hour`: the group's index range, read without the table."""
    rows = (
        _tasks()
        .filter(in_group(g.name, g.group), status=TaskStatus.FAILED, finished_at__gte=first_hour)
        .annotate(hour=TruncHour("finished_at", tzinfo=UTC))
        .values("hour")
        .annotate(n=Count("pk"))
    )
    hourly = [0] * SPARK_HOURS
    for row in rows:
        index = int((row["hour"] - first_hour).total_seconds() // 3600)
        if 0 <= index < SPARK_HOURS:
            hourly[index] += row["n"]
    return hourly
