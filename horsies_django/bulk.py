"""Change every task a filter matches, in batches: the admin's "all matching" actions, the Errors
page's group actions and `manage.py horsies_retry`.

Only ids (and names, for the audit log) pass through Python, one batch at a time; each batch is
one broker transition (`retry`, `cancel`, `run_now`), which re-checks each row's status under its
lock. Batches walk the matching rows in primary-key order, so a row is looked at once even when
the change leaves it matching (run now) and the filter is read again for every batch.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db.models import QuerySet
from django.utils import timezone

from .app import cancel_tasks
from .broker import get_broker
from .models import Task

BATCH = 1_000
Apply = Callable[[list[str]], list[str]]


def retry(ids: list[str]) -> list[str]:
    return get_broker().retry([uuid.UUID(i) for i in ids], now=timezone.now())


def cancel(ids: list[str]) -> list[str]:
    return cancel_tasks(ids)


def run_now(ids: list[str]) -> list[str]:
    return get_broker().run_now([uuid.UUID(i) for i in ids], now=timezone.now())


def parse_id(text: str) -> str | None:
    try:
        return str(uuid.UUID(text))
    except ValueError:
        return None


@dataclass(frozen=True)
class Batch:
    changed: list[tuple[str, str]]  # (id, task name) of each task changed
    seen: int  # rows looked at, changed or not
    after: str | None  # the last id looked at, where the next batch starts; None: nothing was left


def step(queryset: QuerySet[Task], apply: Apply, *, after: str | None = None, batch: int = BATCH) -> Batch:
    """Apply to the next `batch` matching tasks whose id sorts after `after`."""
    page = queryset.order_by("pk")
    if after:
        page = page.filter(pk__gt=after)
    rows = [(str(pk), name) for pk, name in page.values_list("pk", "name")[:batch]]
    if not rows:
        return Batch(changed=[], seen=0, after=None)
    done = set(apply([pk for pk, _ in rows]))
    return Batch(changed=[row for row in rows if row[0] in done], seen=len(rows), after=rows[-1][0])


def batches(queryset: QuerySet[Task], apply: Apply, *, batch: int = BATCH) -> Iterator[Batch]:
    """Apply to every matching task, one batch at a time; yield each batch once it is done."""
    after: str | None = None
    while True:
        done = step(queryset, apply, after=after, batch=batch)
        if done.after is None:
            return
        yield done
        after = done.after


_SINCE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}


def parse_since(text: str) -> timedelta:
    """`90s`, `15m`, `1h`, `2d`, `1w` as a timedelta; ValueError for anything else."""
    match = _SINCE.match(text)
    if not match:
        raise ValueError(f"expected a number and a unit (s, m, h, d, w), such as 1h or 30m, got {text!r}")
    seconds = float(match[1]) * _UNITS[match[2]]
    if seconds > 3650 * 86_400:
        raise ValueError(f"at most 3650 days, got {text!r}")
    return timedelta(seconds=seconds)


def matching(
    *,
    statuses: Iterable[str],
    name: str | None = None,
    error_code: str | None = None,
    group: str | None = None,
    queue: str | None = None,
    finished_since: datetime | None = None,
    database: str | None = None,
) -> QuerySet[Task]:
    """The tasks a command line or a link describes."""
    filters: dict[str, Any] = {"status__in": sorted(statuses)}
    for key, value in (("name", name), ("error_code", error_code), ("error_group", group), ("queue_name", queue)):
        if value:
            filters[key] = value
    if finished_since is not None:
        filters["finished_at__gte"] = finished_since
    manager = Task.objects.using(database) if database else Task.objects
    return manager.filter(**filters)
