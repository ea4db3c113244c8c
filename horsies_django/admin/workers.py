"""The workers page: who runs tasks, from which host, and whether it still sends heartbeats."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any

from django.contrib import admin
from django.db.models import Count, OuterRef, Q, QuerySet, Subquery
from django.db.models.functions import Coalesce
from django.http import HttpRequest, HttpResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from .. import stats
from ..models import HELD_STATUSES, Task, WorkerProcess
from . import display
from .attempts import ReadOnly

if TYPE_CHECKING:
    WorkerAdminBase = admin.ModelAdmin[WorkerProcess]
else:
    WorkerAdminBase = admin.ModelAdmin


class StateFilter(admin.SimpleListFilter):
    title = "state"
    parameter_name = "state"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("alive", "alive"), ("silent", "silent"), ("stopped", "stopped")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        fresh = Q(last_heartbeat_at__gte=timezone.now() - timedelta(seconds=stats.heartbeat_grace_s()))
        running = Q(stopped_at__isnull=True)
        match self.value():
            case "alive":
                return queryset.filter(running & fresh)
            case "silent":
                return queryset.filter(running & ~fresh)
            case "stopped":
                return queryset.filter(stopped_at__isnull=False)
        return queryset


@admin.register(WorkerProcess)
class WorkerProcessAdmin(ReadOnly, WorkerAdminBase):
    change_list_template = "horsies_django/admin/worker_change_list.html"
    # Fits 1440 px beside the navigation sidebar and the filters; pid and pool are on the detail page.
    list_display = ["worker", "state", "hostname", "queue_list", "held", "started", "heartbeat"]
    list_filter = [StateFilter, "hostname"]
    search_fields = ["=id", "hostname"]
    show_facets = admin.ShowFacets.NEVER
    fields = readonly_fields = (
        "id",
        "state",
        "hostname",
        "pid",
        "queue_list",
        "concurrency",
        "pool",
        "started_at",
        "last_heartbeat_at",
        "stopped_at",
        "running_tasks",
    )

    class Media:
        css = {"all": ["horsies_django/admin.css"]}

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        return super().changelist_view(request, {"title": "Workers", **(extra_context or {})})

    def get_queryset(self, request: HttpRequest) -> QuerySet[WorkerProcess]:
        held = (
            Task.objects.filter(worker_id=OuterRef("pk"), status__in=HELD_STATUSES)
            .order_by()
            .values("worker_id")
            .annotate(n=Count("pk"))
            .values("n")
        )
        return super().get_queryset(request).annotate(held_count=Coalesce(Subquery(held), 0))

    @admin.display(description="worker", ordering="id")
    def worker(self, obj: WorkerProcess) -> SafeString | str:
        return display.worker(obj.id)

    @admin.display(description="state")
    def state(self, obj: WorkerProcess) -> SafeString:
        return display.badge(stats.worker_state(obj, timezone.now()))

    @admin.display(description="queues")
    def queue_list(self, obj: WorkerProcess) -> str:
        return ", ".join(obj.queues) or "all"

    @admin.display(description="started", ordering="started_at")
    def started(self, obj: WorkerProcess) -> SafeString | str:
        return display.when(obj.started_at)

    @admin.display(description="last heartbeat", ordering="-last_heartbeat_at")
    def heartbeat(self, obj: WorkerProcess) -> SafeString:
        age = stats.human_duration((timezone.now() - obj.last_heartbeat_at).total_seconds())
        return (
            format_html("{} ago", age)
            if obj.stopped_at is None
            else format_html("stopped {}", display.when(obj.stopped_at))
        )

    @admin.display(description="running")
    def held(self, obj: WorkerProcess) -> SafeString | str:
        count = getattr(obj, "held_count", 0)
        if not count:
            return f"0 / {obj.concurrency}"
        url = reverse(f"{self.admin_site.name}:horsies_django_task_changelist")
        return format_html(
            '<a href="{}?q={}&amp;status__exact=RUNNING">{}</a> / {}', url, obj.pk, count, obj.concurrency
        )

    @admin.display(description="running tasks")
    def running_tasks(self, obj: WorkerProcess) -> SafeString | str:
        tasks = Task.objects.filter(worker_id=obj.pk, status__in=HELD_STATUSES).order_by("started_at")[:100]
        if not tasks:
            return display.EMPTY
        return format_html(
            '<ul class="hz-plain">{}</ul>',
            format_html_join(
                "",
                '<li><a href="{}">{}</a> {} {}</li>',
                (
                    (
                        reverse(f"{self.admin_site.name}:horsies_django_task_change", args=[t.pk]),
                        t.name,
                        display.short_id(t.pk),
                        display.duration(t.started_at, None),
                    )
                    for t in tasks
                ),
            ),
        )
