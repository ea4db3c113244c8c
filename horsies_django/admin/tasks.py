"""The task list and detail page. Read-only: tasks change only through the actions, never by hand."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

from django.contrib import admin
from django.contrib.admin.utils import unquote
from django.db.models import Q, QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import URLPattern, path
from django.utils.html import format_html
from django.utils.safestring import SafeString

from ..models import Task
from . import audit, display
from .actions import operate, operations_for
from .attempts import Operated, TaskAttemptInline
from .changelist import (
    ErrorCodeFilter,
    ErrorGroupFilter,
    EstimatedCountPaginator,
    NameFilter,
    QueueFilter,
    TaskChangeList,
    date_drilldown,
)
from .dashboard import dashboard_view
from .errors import errors_view
from .workflows import workflow_link

if TYPE_CHECKING:
    TaskAdminBase = admin.ModelAdmin[Task]
else:  # The admin classes are generic only in the type stubs.
    TaskAdminBase = admin.ModelAdmin


@admin.register(Task)
class TaskAdmin(Operated, TaskAdminBase):
    change_list_template = "horsies_django/admin/task_change_list.html"
    change_form_template = "horsies_django/admin/task_change_form.html"
    # Fits 1440 px beside the navigation sidebar and the filters: the finish time sits under the run
    # time; the enqueue time is on the date drill-down above the list and on the detail page.
    list_display = ["task", "status_badge", "error", "attempts", "waited", "ran", "worker"]
    list_filter = ["status", QueueFilter, NameFilter, ErrorCodeFilter, ErrorGroupFilter]
    search_fields = ["name", "error_code", "error_message"]
    search_help_text = (
        "Search by task id or worker id, by words in the name, error code or error message, "
        "or by schedule:<name>: for the tasks a schedule sent."
    )
    date_hierarchy = "enqueued_at"
    show_full_result_count = False
    show_facets = admin.ShowFacets.NEVER
    paginator = EstimatedCountPaginator
    list_per_page = 50
    actions = ["retry_tasks", "cancel_tasks", "run_now"]
    inlines = [TaskAttemptInline]
    fieldsets = [
        (
            None,
            {"fields": ["id", "name", "queue_name", "priority", "status_badge", "attempts", "worker_id", "workflow"]},
        ),
        ("Arguments", {"fields": ["pretty_arguments"]}),
        ("Outcome", {"fields": ["pretty_result", "error_code", "error_message", "traceback"]}),
        ("Timeline", {"fields": ["queue_wait", "run_time", "timeline"]}),
        ("Operator actions", {"fields": ["operator_history"]}),
        (
            "Delivery",
            {
                "classes": ["collapse"],
                "fields": ["run_at", "good_until", "lease_expires_at", "claim_token", "crash_reruns", "max_retries"],
            },
        ),
    ]
    readonly_fields = [
        *[f.name for f in Task._meta.fields],
        *["status_badge", "error", "attempts", "pretty_arguments", "pretty_result", "traceback", "timeline"],
        *["queue_wait", "run_time", "operator_history"],
        "workflow",
    ]

    class Media:
        css = {"all": ["horsies_django/admin.css"]}

    # -- list -----------------------------------------------------------------------------

    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type[TaskChangeList]:
        return TaskChangeList

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Task], search_term: str
    ) -> tuple[QuerySet[Task], bool]:
        term = search_term.strip()
        if not term:
            return queryset, False
        try:
            return queryset.filter(pk=uuid.UUID(term)), False
        except ValueError:
            pass
        if term.startswith("schedule:"):  # the tasks a schedule sent: their slot idempotency keys
            return queryset.filter(idempotency_key__startswith=term), False
        match = (
            Q(name__icontains=term)
            | Q(error_code__icontains=term)
            | Q(error_message__icontains=term)
            | Q(worker_id=term)
        )
        return queryset.filter(match), False

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        response = super().changelist_view(request, {"title": "Tasks", **(extra_context or {})})
        if isinstance(response, TemplateResponse) and response.context_data and "cl" in response.context_data:
            response.context_data["horsies_dates"] = date_drilldown(response.context_data["cl"])
        return response

    @admin.display(description="task", ordering="name")
    def task(self, obj: Task) -> SafeString:
        return format_html(
            '<span class="hz-name">{}</span>{}<small class="hz-sub">{} · priority {}</small>',
            obj.name,
            display.short_id(obj.pk),
            obj.queue_name,
            obj.priority,
        )

    @admin.display(description="status", ordering="status")
    def status_badge(self, obj: Task) -> SafeString:
        return display.badge(obj.status)

    @admin.display(description="error", ordering="error_code")
    def error(self, obj: Task) -> SafeString | str:
        if not obj.error_code:
            return display.EMPTY
        head = getattr(obj, "error_head", None)
        if head is None:  # the detail page reads the whole message
            head = obj.error_message[:120]
        return format_html(
            '<span class="hz-code">{}</span><small class="hz-sub hz-msg" title="{}">{}</small>',
            obj.error_code,
            head,
            head,
        )

    @admin.display(description="attempts")
    def attempts(self, obj: Task) -> SafeString:
        return display.attempts(obj)

    @admin.display(description="enqueued", ordering="enqueued_at")
    def enqueued(self, obj: Task) -> SafeString | str:
        return display.when(obj.enqueued_at)

    @admin.display(description="waited")
    def waited(self, obj: Task) -> str:
        return display.queue_wait(obj)

    @admin.display(description="ran", ordering="finished_at")
    def ran(self, obj: Task) -> SafeString | str:
        if obj.finished_at is None:
            return display.run_time(obj)
        return format_html('{}<small class="hz-sub">{}</small>', display.run_time(obj), display.when(obj.finished_at))

    @admin.display(description="finished", ordering="finished_at")
    def finished(self, obj: Task) -> SafeString | str:
        return display.when(obj.finished_at)

    @admin.display(description="worker")
    def worker(self, obj: Task) -> SafeString | str:
        return display.worker(obj.worker_id)

    # -- detail ---------------------------------------------------------------------------

    @admin.display(description="arguments")
    def pretty_arguments(self, obj: Task) -> SafeString:
        return display.pretty_json(obj.arguments)

    @admin.display(description="result")
    def pretty_result(self, obj: Task) -> SafeString | str:
        return display.pretty_json(obj.result) if obj.result is not None else display.EMPTY

    @admin.display(description="traceback")
    def traceback(self, obj: Task) -> SafeString | str:
        return display.pre(obj.error_traceback)

    @admin.display(description="workflow")
    def workflow(self, obj: Task) -> SafeString | str:
        return workflow_link(obj, self.admin_site.name)

    @admin.display(description="timeline")
    def timeline(self, obj: Task) -> SafeString:
        return display.timeline(obj, list(obj.attempts.all()))

    @admin.display(description="queue wait")
    def queue_wait(self, obj: Task) -> str:
        return display.queue_wait(obj)

    @admin.display(description="run time")
    def run_time(self, obj: Task) -> str:
        return display.run_time(obj)

    @admin.display(description="who did what")
    def operator_history(self, obj: Task) -> SafeString | str:
        return audit.history(obj)

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        task = self.get_object(request, unquote(object_id)) if self.has_operate_permission(request) else None
        extra = {"operations": operations_for(task) if task else [], **(extra_context or {})}
        return super().change_view(request, object_id, form_url, extra)

    # -- actions --------------------------------------------------------------------------

    @admin.action(description="Retry selected tasks", permissions=["operate"])
    def retry_tasks(self, request: HttpRequest, queryset: QuerySet[Task]) -> HttpResponse | None:
        return operate(self, request, queryset, "retry_tasks")

    @admin.action(description="Cancel selected tasks", permissions=["operate"])
    def cancel_tasks(self, request: HttpRequest, queryset: QuerySet[Task]) -> HttpResponse | None:
        return operate(self, request, queryset, "cancel_tasks")

    @admin.action(description="Run selected scheduled tasks now", permissions=["operate"])
    def run_now(self, request: HttpRequest, queryset: QuerySet[Task]) -> HttpResponse | None:
        return operate(self, request, queryset, "run_now")

    # -- dashboard ------------------------------------------------------------------------

    def get_urls(self) -> list[URLPattern]:
        view = self.admin_site.admin_view
        return [
            path("dashboard/", view(self.dashboard), name="horsies_django_task_dashboard"),
            path("errors/", view(self.errors), name="horsies_django_task_errors"),
            path("dashboard/fragment/", view(self.dashboard_fragment), name="horsies_django_task_dashboard_fragment"),
            *super().get_urls(),
        ]

    def dashboard(self, request: HttpRequest) -> TemplateResponse:
        return dashboard_view(self, request)

    def errors(self, request: HttpRequest) -> HttpResponse:
        return errors_view(self, request)

    def dashboard_fragment(self, request: HttpRequest) -> TemplateResponse:
        return dashboard_view(self, request, fragment=True)
