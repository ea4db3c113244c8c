"""The schedules page: what runs when, what ran last, and Pause/Resume. Rows come from the settings and
@app.periodic, so they cannot be added, edited or deleted here."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from django.contrib import admin
from django.db.models import Count, OuterRef, QuerySet, Subquery, Value
from django.db.models.functions import Coalesce, Concat
from django.http import HttpRequest, HttpResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString

from .. import scheduler
from ..models import Schedule, Task, TaskStatus
from . import audit, display
from .actions import Confirmed, confirm_listed, report
from .attempts import Operated

if TYPE_CHECKING:
    ScheduleAdminBase = admin.ModelAdmin[Schedule]
else:  # The admin classes are generic only in the type stubs.
    ScheduleAdminBase = admin.ModelAdmin

# The task-status colours that fit: green for running, red for failing, grey for paused, amber for
# not running at all.
STATES = {"active": "alive", "failing": "failed", "paused": "cancelled", "inactive": "expired"}
FAILURE_WINDOW = timedelta(hours=24)


def with_outcomes(queryset: QuerySet[Schedule], now: datetime) -> QuerySet[Schedule]:
    """Each schedule with its last task's status and error code, and its failures in the last 24 h
    (tasks it sent, found by the slot idempotency key `schedule:<name>:<slot>`)."""
    last = Task.objects.filter(pk=OuterRef("last_task_id"))
    failed = (
        Task.objects.filter(
            name=OuterRef("task_name"),
            idempotency_key__startswith=Concat(Value("schedule:"), OuterRef("name"), Value(":")),
            status=TaskStatus.FAILED,
            finished_at__gte=now - FAILURE_WINDOW,
        )
        .order_by()
        .values("name")
        .annotate(n=Count("pk"))
        .values("n")
    )
    return queryset.annotate(
        last_status=Subquery(last.values("status")[:1]),
        last_error=Subquery(last.values("error_code")[:1]),
        failures_24h=Coalesce(Subquery(failed), 0),
    )


def state_of(schedule: Schedule) -> str:
    """From the database, as the workers wrote it: a web process with older code than the workers
    must not call a live schedule inactive. Workers clear `next_run_at` of a schedule they do not
    declare."""
    if schedule.paused:
        return "paused"
    if schedule.next_run_at is None:
        return "inactive"
    return "failing" if getattr(schedule, "last_status", None) == TaskStatus.FAILED else "active"


@dataclass(frozen=True)
class Toggle(Confirmed):
    paused: bool  # the state it applies to
    apply: Callable[[list[str]], list[str]]


TOGGLES = {
    toggle.action: toggle
    for toggle in [
        Toggle(
            action="pause_schedules",
            title="Pause schedules",
            explanation="A paused schedule sends nothing until it is resumed. Tasks it has already sent are not "
            "affected.",
            button="Yes, pause",
            done="paused",
            paused=False,
            apply=scheduler.pause,
        ),
        Toggle(
            action="resume_schedules",
            title="Resume schedules",
            explanation="Each schedule goes on from its next slot. The slots it missed while paused are skipped, "
            "whatever its catch_up setting.",
            button="Yes, resume",
            done="resumed",
            paused=True,
            apply=scheduler.resume,
        ),
    ]
}


@admin.register(Schedule)
class ScheduleAdmin(Operated, ScheduleAdminBase):
    list_display = ["name", "task_name", "spec", "state", "last_outcome", "failures", "last_run", "next_run"]
    list_filter = ["paused"]
    search_fields = ["name", "task_name"]
    show_facets = admin.ShowFacets.NEVER
    actions = ["pause_schedules", "resume_schedules"]
    fields = readonly_fields = (
        "name",
        "task_name",
        "spec",
        "state",
        "last_outcome",
        "failures",
        "declaration",
        "last_slot_at",
        "last_run_at",
        "next_run_at",
        "updated_at",
    )

    class Media:
        css = {"all": ["horsies_django/admin.css"]}

    def get_queryset(self, request: HttpRequest) -> QuerySet[Schedule]:
        return with_outcomes(super().get_queryset(request), timezone.now())

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        return super().changelist_view(request, {"title": "Schedules", **(extra_context or {})})

    @admin.display(description="state", ordering="paused")
    def state(self, obj: Schedule) -> SafeString:
        state = state_of(obj)
        badge = display.badge(STATES[state], state)
        if state == "inactive":
            why = "no worker declares it (HORSIES['SCHEDULES'] or @app.periodic, valid per manage.py check)"
            return format_html('<span title="{}">{}</span>', why, badge)
        return badge

    @admin.display(description="last outcome")
    def last_outcome(self, obj: Schedule) -> SafeString | str:
        status = getattr(obj, "last_status", None)
        if obj.last_task_id is None or status is None:
            return display.EMPTY
        url = reverse(f"{self.admin_site.name}:horsies_django_task_change", args=[obj.last_task_id])
        error = getattr(obj, "last_error", None)
        return format_html(
            '<a href="{}" class="hz-outcome">{}</a>{}',
            url,
            display.badge(status),
            format_html(' <span class="hz-code">{}</span>', error) if error else "",
        )

    @admin.display(description="failed, 24 h")
    def failures(self, obj: Schedule) -> SafeString | str:
        count = getattr(obj, "failures_24h", 0)
        if not count:
            return "0"
        url = reverse(f"{self.admin_site.name}:horsies_django_task_changelist")
        query = urlencode({"name": obj.task_name, "status__exact": TaskStatus.FAILED, "q": f"schedule:{obj.name}:"})
        return format_html('<a href="{}?{}" class="hz-failures">{}</a>', url, query, count)

    @admin.display(description="last run", ordering="last_run_at")
    def last_run(self, obj: Schedule) -> SafeString | str:
        if obj.last_run_at is None:
            return display.EMPTY
        return format_html(
            '{}<small class="hz-sub">slot {}</small>', display.when(obj.last_run_at), display.when(obj.last_slot_at)
        )

    @admin.display(description="next run", ordering="next_run_at")
    def next_run(self, obj: Schedule) -> SafeString | str:
        if obj.paused:
            return display.EMPTY
        return display.when(obj.next_run_at)

    @admin.display(description="declaration")
    def declaration(self, obj: Schedule) -> SafeString | str:
        schedule = scheduler.declared_schedules()[0].get(obj.name)
        if schedule is None:
            return display.EMPTY
        return display.pretty_json(
            {
                "task": schedule.task.name,
                "cron" if schedule.cron else "every": schedule.cron or schedule.spec.removeprefix("every "),
                "timezone": schedule.tz.key,
                "catch_up": schedule.catch_up,
                "args": list(schedule.args),
                "kwargs": schedule.kwargs,
            }
        )

    @admin.action(description="Pause selected schedules", permissions=["operate"])
    def pause_schedules(self, request: HttpRequest, queryset: QuerySet[Schedule]) -> HttpResponse | None:
        return self._toggle(request, queryset, "pause_schedules")

    @admin.action(description="Resume selected schedules", permissions=["operate"])
    def resume_schedules(self, request: HttpRequest, queryset: QuerySet[Schedule]) -> HttpResponse | None:
        return self._toggle(request, queryset, "resume_schedules")

    def _toggle(self, request: HttpRequest, queryset: QuerySet[Schedule], action: str) -> HttpResponse | None:
        """Show the confirmation page; once confirmed (`post=yes`), pause or resume and report it."""
        toggle = TOGGLES[action]
        eligible = list(queryset.filter(paused=toggle.paused).order_by("name"))
        if request.POST.get("post") == "yes":
            changed = toggle.apply([s.name for s in eligible])
            audit.record(
                request.user, Schedule, [(n, n) for n in changed], audit.action_message(toggle.done, len(changed))
            )
            report(self, request, len(changed), "schedule", toggle.done)
            return None
        return confirm_listed(self, request, "horsies_django/admin/confirm_schedules.html", toggle, eligible, queryset)
