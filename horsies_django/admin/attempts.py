"""What every task page shares: read-only permissions, and the table of a task's attempts."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.contrib import admin
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest
from django.utils.html import format_html
from django.utils.safestring import SafeString

from ..models import Task, TaskAttempt
from . import display

if TYPE_CHECKING:
    AttemptInlineBase = admin.TabularInline[TaskAttempt, Task]
else:  # The admin classes are generic only in the type stubs.
    AttemptInlineBase = admin.TabularInline

OPERATE_PERMISSION = "horsies_django.operate_task"


NUL_REFUSED = "A NUL character (%00) cannot be part of a filter, a search or an id."


def has_nul(request: HttpRequest, *values: str) -> bool:
    """True if the path, a query or form parameter (name or value), or one of `values` holds NUL.

    PostgreSQL refuses NUL in text, so such a value would end in a database error (a 500);
    it is no filter anybody means, so the page answers 400 instead.
    """
    texts = [request.path, *values]
    for params in (request.GET, request.POST):
        for key, items in params.lists():
            texts.append(key)
            texts.extend(items)
    return any("\x00" in text for text in texts)


class ReadOnly:
    """No add, change or delete; and a 400, not a database error, for NUL in the request."""

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        if has_nul(request):
            return HttpResponseBadRequest(NUL_REFUSED)
        return super().changelist_view(request, extra_context)  # type: ignore[misc,no-any-return]

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        if has_nul(request, object_id):
            return HttpResponseBadRequest(NUL_REFUSED)
        return super().change_view(request, object_id, form_url, extra_context)  # type: ignore[misc,no-any-return]

    def history_view(
        self, request: HttpRequest, object_id: str, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        if has_nul(request, object_id):
            return HttpResponseBadRequest(NUL_REFUSED)
        return super().history_view(request, object_id, extra_context)  # type: ignore[misc,no-any-return]

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
