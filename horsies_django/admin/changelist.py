"""The task list's machinery, made cheap on a million rows: counts, filter choices, date drill-down."""

from __future__ import annotations

import calendar
from datetime import date, datetime
from typing import TYPE_CHECKING, Any

from django.contrib import admin
from django.contrib.admin.views.main import ChangeList
from django.core.paginator import Paginator
from django.db.models import Max, Min, QuerySet
from django.db.models.functions import Substr
from django.http import HttpRequest
from django.utils import formats, timezone
from django.utils.functional import cached_property
from django.utils.text import capfirst

from .. import stats
from ..conf import DEFAULT_QUEUE, get_settings

if TYPE_CHECKING:
    from django.contrib.admin import ModelAdmin

MESSAGE_HEAD = 120  # characters of the error message the list reads


class EstimatedCountPaginator(Paginator):  # type: ignore[type-arg]
    """Counts exactly up to `stats.EXACT_COUNT_LIMIT` rows; past that, on PostgreSQL, estimates."""

    @cached_property
    def _counted(self) -> tuple[int, bool]:
        return stats.estimated_count(self.object_list)  # type: ignore[arg-type]

    @cached_property
    def count(self) -> int:
        return self._counted[0]

    @property
    def estimated(self) -> bool:
        """True when `count` is the planner's estimate, shown as such on the page."""
        return self._counted[1]


class TaskChangeList(ChangeList):
    def get_queryset(self, request: HttpRequest, exclude_parameters: Any = None) -> QuerySet[Any]:
        # The list never shows the payloads; leave the large columns in the database, and read
        # only the head of the error message for its short column.
        queryset = super().get_queryset(request, exclude_parameters)
        lean: QuerySet[Any] = queryset.defer("arguments", "result", "error_traceback", "error_message").annotate(
            error_head=Substr("error_message", 1, MESSAGE_HEAD)
        )
        return lean


class DistinctValueFilter(admin.SimpleListFilter):
    """Choices from a loose index scan of an indexed column, not a `SELECT DISTINCT` of every row."""

    field_name = ""

    def lookups(self, request: HttpRequest, model_admin: ModelAdmin[Any]) -> list[tuple[str, str]]:
        return [(value, value) for value in self.values()]

    def values(self) -> list[str]:
        return stats.distinct_values(self.field_name)

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        value = self.value()
        return queryset.filter(**{self.field_name: value}) if value else queryset


class QueueFilter(DistinctValueFilter):
    title = "queue"
    parameter_name = "queue"
    field_name = "queue_name"

    def values(self) -> list[str]:
        return sorted(set(super().values()) | set(get_settings().queues) | {DEFAULT_QUEUE})

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        # queue_name has no index of its own: naming every status lets the (status, queue_name)
        # index find one queue's rows, and count them, without reading the others.
        value = self.value()
        return queryset.filter(status__in=stats.STATUSES, queue_name=value) if value else queryset


class NameFilter(DistinctValueFilter):
    title = "task name"
    parameter_name = "name"
    field_name = "name"


class ErrorGroupFilter(admin.SimpleListFilter):
    """`?group=`: the tasks of one group of the Errors page. Listed only while it is in use."""

    title = "error group"
    parameter_name = "group"

    def lookups(self, request: HttpRequest, model_admin: ModelAdmin[Any]) -> list[tuple[str, str]]:
        value = self.value()
        return [(value, value)] if value else []

    def has_output(self) -> bool:
        return bool(self.value())

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        value = self.value()
        return queryset.filter(error_group=value) if value else queryset


class ErrorCodeFilter(DistinctValueFilter):
    title = "error code"
    parameter_name = "error_code"
    field_name = "error_code"


def date_drilldown(cl: ChangeList) -> dict[str, Any] | None:
    """What Django's `date_hierarchy` tag shows, from MIN/MAX probes of the date index.

    Django lists the years, months or days that hold rows with a `SELECT DISTINCT` over every
    matching row; this lists every one between the first and the last, so a day without tasks
    can appear, and the page stays fast.
    """
    field = cl.date_hierarchy
    if not field:
        return None
    year, month, day = (cl.params.get(f"{field}__{part}") for part in ("year", "month", "day"))

    def link(filters: dict[str, Any]) -> str:
        return str(cl.get_query_string(filters, [f"{field}__"]))

    if year and month and day:
        chosen = date(int(str(year)), int(str(month)), int(str(day)))
        up = {"link": link({f"{field}__year": year, f"{field}__month": month}), "title": _month_title(chosen)}
        return {"show": True, "back": up, "choices": [{"title": _day_title(chosen)}]}
    bounds = cl.queryset.aggregate(first=Min(field), last=Max(field))
    first: datetime | None = bounds["first"]
    last: datetime | None = bounds["last"]
    if first is None or last is None:
        return {"show": True, "choices": []}
    first, last = timezone.localtime(first), timezone.localtime(last)
    back: dict[str, str] | None = None
    if year and month:
        back = {"link": link({f"{field}__year": year}), "title": str(year)}
    elif year:
        back = {"link": link({}), "title": "All dates"}
    elif first.year == last.year:
        year = str(first.year)
        if first.month == last.month:
            month = str(first.month)
    if year and month:
        y, m = int(str(year)), int(str(month))
        days = range(first.day if first.month == m else 1, (last.day if last.month == m else _days_in(y, m)) + 1)
        choices = [
            {
                "link": link({f"{field}__year": y, f"{field}__month": m, f"{field}__day": d}),
                "title": _day_title(date(y, m, d)),
            }
            for d in days
        ]
    elif year:
        y = int(str(year))
        months = range(first.month if first.year == y else 1, (last.month if last.year == y else 12) + 1)
        choices = [
            {"link": link({f"{field}__year": y, f"{field}__month": m}), "title": _month_title(date(y, m, 1))}
            for m in months
        ]
    else:
        choices = [{"link": link({f"{field}__year": y}), "title": str(y)} for y in range(first.year, last.year + 1)]
    return {"show": True, "back": back, "choices": choices}


def _days_in(year: int, month: int) -> int:
    return calendar.monthrange(year, month)[1]


def _day_title(day: date) -> str:
    return str(capfirst(formats.date_format(day, "MONTH_DAY_FORMAT")))


def _month_title(day: date) -> str:
    return str(capfirst(formats.date_format(day, "YEAR_MONTH_FORMAT")))
