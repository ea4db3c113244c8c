"""Read-only admin: operators look at tasks and their attempts; tasks are not edited by hand."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from django.contrib import admin
from django.http import HttpRequest
from django.utils.html import format_html

from .models import Task, TaskAttempt

if TYPE_CHECKING:
    AttemptInlineBase = admin.TabularInline[TaskAttempt, Task]
    TaskAdminBase = admin.ModelAdmin[Task]
else:  # The admin classes are generic only in the type stubs.
    AttemptInlineBase = admin.TabularInline
    TaskAdminBase = admin.ModelAdmin


def _pretty_json(value: Any) -> str:
    return format_html("<pre>{}</pre>", json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False))


class ReadOnlyMixin:
    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class TaskAttemptInline(ReadOnlyMixin, AttemptInlineBase):
    model = TaskAttempt
    extra = 0
    fields = ("number", "outcome", "worker_id", "started_at", "finished_at", "error_code", "error_message")
    readonly_fields = fields
    can_delete = False


@admin.register(Task)
class TaskAdmin(ReadOnlyMixin, TaskAdminBase):
    list_display = [
        "name",
        "queue_name",
        "status",
        "error_code",
        "attempt",
        "priority",
        "enqueued_at",
        "started_at",
        "finished_at",
    ]
    list_filter = ["status", "queue_name", "name", "error_code"]
    search_fields = ["=id", "name"]
    date_hierarchy = "enqueued_at"
    show_full_result_count = False
    inlines = [TaskAttemptInline]
    display_fields = ["pretty_arguments", "pretty_result", "error_traceback_pre"]
    fieldsets = [
        (None, {"fields": ["id", "name", "queue_name", "priority", "status", "pretty_arguments"]}),
        ("Outcome", {"fields": ["pretty_result", "error_code", "error_message", "error_traceback_pre"]}),
        (
            "Timeline",
            {"fields": ["enqueued_at", "run_at", "claimed_at", "started_at", "finished_at", "good_until"]},
        ),
        (
            "Delivery",
            {"fields": ["attempt", "max_retries", "crash_reruns", "worker_id", "lease_expires_at", "claim_token"]},
        ),
    ]

    def get_readonly_fields(self, request: HttpRequest, obj: Task | None = None) -> list[str]:
        return [f.name for f in Task._meta.fields] + self.display_fields

    @admin.display(description="arguments")
    def pretty_arguments(self, obj: Task) -> str:
        return _pretty_json(obj.arguments)

    @admin.display(description="result")
    def pretty_result(self, obj: Task) -> str:
        return _pretty_json(obj.result) if obj.result is not None else "-"

    @admin.display(description="traceback")
    def error_traceback_pre(self, obj: Task) -> str:
        return format_html("<pre>{}</pre>", obj.error_traceback) if obj.error_traceback else "-"
