"""What every task page shares: read-only permissions, and the table of a task's attempts."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.contrib import admin
from django.http import HttpRequest
from django.utils.html import format_html
from django.utils.safestring import SafeString

from ..models import Task, TaskAttempt
from . import display

if TYPE_CHECKING:
    AttemptInlineBase = admin.TabularInline[TaskAttempt, Task]
else:  # The admin classes are generic only in the type stubs.
    AttemptInlineBase = admin.TabularInline

OPERATE_PERMISSION = "horsies_django.operate_task"


class ReadOnly:
    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class Operated(ReadOnly):
    """Read-only, but staff with the operate permission may view it and act on it (the actions)."""

    def has_operate_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(OPERATE_PERMISSION)

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return super().has_view_permission(request, obj) or self.has_operate_permission(request)  # type: ignore[misc]


class TaskAttemptInline(ReadOnly, AttemptInlineBase):
    model = TaskAttempt
    template = "horsies_django/admin/attempts_inline.html"
    extra = 0
    can_delete = False
    fields = readonly_fields = ("number", "outcome_badge", "worker", "started", "finished", "took", "error")
    verbose_name_plural = "attempts"

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # Whoever may see the task may see its attempts; no separate permission to hand out.
        return request.user.has_perm("horsies_django.view_task") or request.user.has_perm(OPERATE_PERMISSION)

    @admin.display(description="outcome")
    def outcome_badge(self, obj: TaskAttempt) -> SafeString:
        return display.badge(obj.outcome, obj.outcome.replace("_", " "))

    @admin.display(description="worker")
    def worker(self, obj: TaskAttempt) -> str:
        return obj.worker_id or display.EMPTY

    @admin.display(description="started")
    def started(self, obj: TaskAttempt) -> SafeString | str:
        return display.when(obj.started_at)

    @admin.display(description="finished")
    def finished(self, obj: TaskAttempt) -> SafeString | str:
        return display.when(obj.finished_at)

    @admin.display(description="took")
    def took(self, obj: TaskAttempt) -> str:
        return display.duration(obj.started_at, obj.finished_at)

    @admin.display(description="error")
    def error(self, obj: TaskAttempt) -> SafeString | str:
        if not obj.error_code:
            return display.EMPTY
        if not obj.error_traceback:
            return format_html("<strong>{}</strong> {}", obj.error_code, obj.error_message)
        return format_html(
            '<details class="hz-details"><summary><strong>{}</strong> {}</summary>{}</details>',
            obj.error_code,
            obj.error_message,
            display.pre(obj.error_traceback),
        )
