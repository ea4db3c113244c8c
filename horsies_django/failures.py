"""Failures grouped like an error tracker's issues: by task name and `Task.error_group` (the error
code and the normalised message). Read-only; the admin's Errors page and the dashboard use it.

Every count comes from one grouped scan of `horsies_task_error_group_idx`, which holds only failed
and retrying rows; a group's sample and its 24-hour sparkline are ranges of the same index.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

from django.db.models import Count, Max, Min, Q, QuerySet
from django.db.models.functions import TruncHour

from .conf import get_settings
from .models import Task, TaskStatus
from .types.grouping import normalise

# Rows that belong to a group: ended FAILED, or PENDING again for an automatic retry after failing.
GROUPED = (TaskStatus.FAILED, TaskStatus.PENDING)
SPARK_HOURS = 24


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
    rows = _tasks().filter(error_group__isnull=False, status__in=GROUPED)
    if name:
        rows = rows.filter(name=name)
    if since is not None:
        rows = rows.filter(finished_at__gte=since)
    return rows


def error_groups(
    now: datetime, *, name: str | None = None, since: datetime | None = None, order: str = "last", limit: int = 100
) -> tuple[list[ErrorGroup], int]:
    """The groups (most recent or largest first, at most `limit`) with samples and sparklines, and
    how many groups there are in all."""
    rows = (
        grouped_rows(name=name, since=since)
        .values("name", "error_group")
        .annotate(
            failed=Count("pk", filter=Q(status=TaskStatus.FAILED)),
            retrying=Count("pk", filter=Q(status=TaskStatus.PENDING)),
            first=Min("finished_at"),
            last=Max("finished_at"),
        )
    )
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
        _tasks()
        .filter(error_group__isnull=False, status=TaskStatus.FAILED, finished_at__gte=since)
        .values("name", "error_group")
        .annotate(n=Count("pk"), first=Min("finished_at"), last=Max("finished_at"))
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
    hourly = _hourly(groups, now) if sparkline else {}
    done = []
    for g in groups:
        sample = (
            _tasks()
            .filter(in_group(g.name, g.group), status__in=GROUPED)
            .order_by("status", "-finished_at")  # FAILED before PENDING, then the latest
            .values_list("pk", "error_code", "error_message")
            .first()
        )
        if sample is not None:
            pk, code, message = sample
            g = replace(g, code=code or "", message=normalise(message or ""), sample_id=str(pk))
        if sparkline:
            g = replace(g, hourly=hourly.get((g.name, g.group), [0] * SPARK_HOURS))
        done.append(g)
    return done


def _hourly(groups: list[ErrorGroup], now: datetime) -> dict[tuple[str, str], list[int]]:
    first_hour = now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=SPARK_HOURS - 1)
    match = Q()
    for g in groups:
        match |= in_group(g.name, g.group)
    rows = (
        _tasks()
        .filter(match, status=TaskStatus.FAILED, finished_at__gte=first_hour)
        .annotate(hour=TruncHour("finished_at", tzinfo=UTC))
        .values("name", "error_group", "hour")
        .annotate(n=Count("pk"))
    )
    found: dict[tuple[str, str], list[int]] = {}
    for row in rows:
        index = int((row["hour"] - first_hour).total_seconds() // 3600)
        if 0 <= index < SPARK_HOURS:
            found.setdefault((row["name"], str(row["error_group"])), [0] * SPARK_HOURS)[index] += row["n"]
    return found
