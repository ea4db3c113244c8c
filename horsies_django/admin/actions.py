"""Retry, cancel and run-now as admin actions: a confirmation page first, then the broker's transition."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from django.contrib import messages
from django.contrib.admin import helpers
from django.db.models import Q, QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone

from ..app import cancel_tasks
from ..broker import get_broker
from ..models import HELD_STATUSES, Task, TaskStatus

if TYPE_CHECKING:
    from django.contrib.admin import ModelAdmin

# One action changes at most this many tasks; the broker gets them in batches of BATCH.
MAX_TASKS = 10_000
BATCH = 500
SHOWN = 20
RETRYABLE = frozenset({TaskStatus.FAILED, TaskStatus.CANCELLED, TaskStatus.EXPIRED})
CANCELLABLE = frozenset({TaskStatus.PENDING, *HELD_STATUSES})


def _retry(ids: list[str]) -> list[str]:
    return get_broker().retry([uuid.UUID(i) for i in ids], now=timezone.now())


def _run_now(ids: list[str]) -> list[str]:
    return get_broker().run_now([uuid.UUID(i) for i in ids], now=timezone.now())


@dataclass(frozen=True)
class Operation:
    action: str
    title: str
    done: str
    explanation: str
    button: str
    short: str
    eligible: Callable[[datetime], Q]
    applies: Callable[[Task, datetime], bool]
    apply: Callable[[list[str]], list[str]]


OPERATIONS = {
    op.action: op
    for op in [
        Operation(
            action="retry_tasks",
            title="Retry tasks",
            done="retried",
            explanation="Each task goes back to the queue as a new attempt. Its earlier attempts stay in its history.",
            button="Yes, retry",
            short="Retry",
            eligible=lambda now: Q(status__in=RETRYABLE),
            applies=lambda task, now: task.status in RETRYABLE,
            apply=_retry,
        ),
        Operation(
            action="cancel_tasks",
            title="Cancel tasks",
            done="cancelled",
            explanation="Pending tasks never run. A running task is stopped at its worker's next heartbeat "
            "and whatever it returns afterwards is discarded. Both end with TASK_CANCELLED.",
            button="Yes, cancel",
            short="Cancel",
            eligible=lambda now: Q(status__in=CANCELLABLE),
            applies=lambda task, now: task.status in CANCELLABLE,
            apply=cancel_tasks,
        ),
        Operation(
            action="run_now",
            title="Run scheduled tasks now",
            done="made ready to run now",
            explanation="Scheduled tasks become ready at once instead of at their run time.",
            button="Yes, run now",
            short="Run now",
            eligible=lambda now: Q(status=TaskStatus.PENDING, run_at__gt=now),
            applies=lambda task, now: task.status == TaskStatus.PENDING and task.run_at > now,
            apply=_run_now,
        ),
    ]
}


def operations_for(task: Task) -> list[Operation]:
    """The actions that would change `task`, for its detail page's buttons."""
    now = timezone.now()
    return [op for op in OPERATIONS.values() if op.applies(task, now)]


def operate(
    model_admin: ModelAdmin[Any], request: HttpRequest, queryset: QuerySet[Task], action: str
) -> HttpResponse | None:
    """Show the confirmation page; once confirmed (`post=yes`), apply the transition and report it."""
    op = OPERATIONS[action]
    eligible = queryset.filter(op.eligible(timezone.now()))
    if request.POST.get("post") == "yes":
        ids = [str(pk) for pk in eligible.order_by().values_list("pk", flat=True)[:MAX_TASKS]]
        changed = [done for start in range(0, len(ids), BATCH) for done in op.apply(ids[start : start + BATCH])]
        level = messages.SUCCESS if changed else messages.WARNING
        model_admin.message_user(request, f"{len(changed)} task{'s'[: len(changed) != 1]} {op.done}.", level)
        if len(ids) == MAX_TASKS:
            model_admin.message_user(
                request,
                f"An action changes at most {MAX_TASKS} tasks at once; run it again for the rest.",
                messages.WARNING,
            )
        if request.POST.get("_from_detail") and len(changed) == 1:
            return HttpResponseRedirect(
                reverse(f"{model_admin.admin_site.name}:horsies_django_task_change", args=[changed[0]])
            )
        return None
    total = queryset.order_by()[: MAX_TASKS + 1].count()
    shown = list(eligible.order_by("-enqueued_at")[:SHOWN])
    eligible_count = eligible.order_by()[: MAX_TASKS + 1].count()
    context = {
        **model_admin.admin_site.each_context(request),
        "title": op.title,
        "op": op,
        "opts": model_admin.opts,
        "shown": shown,
        "eligible_count": eligible_count,
        "more_count": max(eligible_count - len(shown), 0),
        "skipped_count": total - eligible_count,
        # Posted back as they came: the ticked ids, or "every task the filters match" (select_across).
        "selected": request.POST.getlist(helpers.ACTION_CHECKBOX_NAME),
        "select_across": request.POST.get("select_across") == "1",
        "from_detail": bool(request.POST.get("_from_detail")),
        "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
        "max_tasks": MAX_TASKS,
    }
    request.current_app = model_admin.admin_site.name
    return TemplateResponse(request, "horsies_django/admin/confirm_action.html", context)
