"""The schedules page: what runs when, what ran last, and Pause/Resume. Rows come from the settings and
@app.periodic, so they cannot be added, edited or deleted here."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.db.models import BooleanField, Case, QuerySet, Value, When
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.html import format_html
from django.utils.safestring import SafeString

from .. import scheduler
from ..models import Schedule
from . import display
from .attempts import Operated

if TYPE_CHECKING:
    ScheduleAdminBase = admin.ModelAdmin[Schedule]
else:  # The admin classes are generic only in the type stubs.
    ScheduleAdminBase = admin.ModelAdmin

# The task-status colours that fit: green for running, grey for paused, amber for not running at all.
STATES = {"active": "alive", "paused": "cancelled", "inactive": "expired"}


@dataclass(frozen=True)
class Toggle:
    title: str
    explanation: str
    button: str
    done: str
    paused: bool  # the state it applies to
    apply: Callable[[list[str]], list[str]]


TOGGLES = {
    "pause_schedules": Toggle(
        title="Pause schedules",
        explanation="A paused schedule sends nothing until it is resumed. Tasks it has already sent are not affected.",
        button="Yes, pause",
        done="paused",
        paused=False,
        apply=scheduler.pause,
    ),
    "resume_schedules": Toggle(
        title="Resume schedules",
        explanation="Each schedule goes on from its next slot. The slots it missed while paused are skipped, "
        "whatever its catch_up setting.",
        button="Yes, resume",
        done="resumed",
        paused=True,
        apply=scheduler.resume,
    ),
}


@admin.register(Schedule)
class ScheduleAdmin(Operated, ScheduleAdminBase):
    list_display = ["name", "task_name", "spec", "state", "last_run", "next_run", "last_task"]
    list_filter = ["paused"]
    search_fields = ["name", "task_name"]
    show_facets = admin.ShowFacets.NEVER
    actions = ["pause_schedules", "resume_schedules"]
    fields = readonly_fields = (
        "name",
        "task_name",
        "spec",
        "state",
        "declaration",
        "last_slot_at",
        "last_run_at",
        "last_task",
        "next_run_at",
        "updated_at",
    )

    class Media:
        css = {"all": ["horsies_django/admin.css"]}

    def get_queryset(self, request: HttpRequest) -> QuerySet[Schedule]:
        # Declared means in this process's settings or @app.periodic, and valid: what the workers run.
        names = list(scheduler.declared_schedules()[0])
        declared = (
            Case(When(name__in=names, then=Value(True)), default=Value(False), output_field=BooleanField())
            if names
            else Value(False, output_field=BooleanField())
        )
        return super().get_queryset(request).annotate(declared=declared)

    def _state(self, obj: Schedule) -> str:
        if not getattr(obj, "declared", False):
            return "inactive"
        return "paused" if obj.paused else "active"

    @admin.display(description="state", ordering="paused")
    def state(self, obj: Schedule) -> SafeString:
        state = self._state(obj)
        badge = display.badge(STATES[state], state)
        if state == "inactive":
            why = "not in HORSIES['SCHEDULES'] or @app.periodic, or invalid (see manage.py check): nothing is sent"
            return format_html('<span title="{}">{}</span>', why, badge)
        return badge

    @admin.display(description="last run", ordering="last_run_at")
    def last_run(self, obj: Schedule) -> SafeString | str:
        if obj.last_run_at is None:
            return display.EMPTY
        return format_html(
            '{}<small class="hz-sub">slot {}</small>', display.when(obj.last_run_at), display.when(obj.last_slot_at)
        )

    @admin.display(description="next run", ordering="next_run_at")
    def next_run(self, obj: Schedule) -> SafeString | str:
        if self._state(obj) != "active":
            return display.EMPTY
        return display.when(obj.next_run_at)

    @admin.display(description="last task")
    def last_task(self, obj: Schedule) -> SafeString | str:
        if obj.last_task_id is None:
            return display.EMPTY
        url = reverse(f"{self.admin_site.name}:horsies_django_task_change", args=[obj.last_task_id])
        return format_html('<a href="{}">{}</a>', url, display.short_id(obj.last_task_id))

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
            level = messages.SUCCESS if changed else messages.WARNING
            self.message_user(request, f"{len(changed)} schedule{'s'[: len(changed) != 1]} {toggle.done}.", level)
            return None
        context = {
            **self.admin_site.each_context(request),
            "title": toggle.title,
            "toggle": toggle,
            "action": action,
            "opts": self.opts,
            "eligible": eligible,
            "skipped_count": queryset.count() - len(eligible),
            "selected": request.POST.getlist(helpers.ACTION_CHECKBOX_NAME),
            "select_across": request.POST.get("select_across") == "1",
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
        }
        request.current_app = self.admin_site.name
        return TemplateResponse(request, "horsies_django/admin/confirm_schedules.html", context)
