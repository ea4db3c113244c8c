"""Retry, cancel and run-now as admin actions: a confirmation page first, then the broker's
transition, in batches over every task the selection or the filter matches, with progress. The
confirmation page, the report and the way back to the detail page serve the workflow and schedule
actions too."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from django.contrib import messages
from django.contrib.admin import helpers
from django.db.models import Q, QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone

from .. import bulk
from ..models import HELD_STATUSES, Task, TaskStatus
from . import audit

if TYPE_CHECKING:
    from django.contrib.admin import ModelAdmin

SHOWN = 20
RETRYABLE = frozenset({TaskStatus.FAILED, TaskStatus.CANCELLED, TaskStatus.EXPIRED})
CANCELLABLE = frozenset({TaskStatus.PENDING, *HELD_STATUSES})


@dataclass(frozen=True)
class Confirmed:
    """An admin action as its confirmation page (confirm_base.html) and its report show it; the
    task, workflow and schedule actions add how they select and apply."""

    action: str
    title: str
    explanation: str
    button: str
    done: str


@dataclass(frozen=True)
class Operation(Confirmed):
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
            apply=bulk.retry,
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
            apply=bulk.cancel,
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
            apply=bulk.run_now,
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
    """Show the confirmation page with the count; once confirmed (`post=yes`), apply the transition.

    The confirmed form is applied in batches: all at once when posted plainly, or one batch per
    request (`_step`, answered in JSON) when the page's script drives it and shows the progress.
    """
    op = OPERATIONS[action]
    eligible = queryset.filter(op.eligible(timezone.now())).order_by()
    if request.POST.get("post") == "yes":
        total = _int(request.POST.get("_total"))
        if request.POST.get("_step"):
            return _step(model_admin, request, eligible, op, total)
        changed = 0
        for batch in bulk.batches(eligible, op.apply, batch=bulk.BATCH):
            audit.record(request.user, Task, _labelled(batch), audit.action_message(op.done, max(total, 1)))
            changed += len(batch.changed)
        report(model_admin, request, changed, "task", op.done)
        return back_to_detail(model_admin, request, changed, request.POST.get(helpers.ACTION_CHECKBOX_NAME, ""))
    shown = list(eligible.order_by("-enqueued_at")[:SHOWN])
    eligible_count = eligible.count()
    total = queryset.order_by().count()
    return confirmation(
        model_admin,
        request,
        "horsies_django/admin/confirm_action.html",
        op,
        shown=shown,
        eligible_count=eligible_count,
        more_count=max(eligible_count - len(shown), 0),
        skipped_count=total - eligible_count,
        batch=bulk.BATCH,
    )


def confirmation(
    model_admin: ModelAdmin[Any], request: HttpRequest, template: str, op: Confirmed, **context: Any
) -> TemplateResponse:
    """An action's confirmation page (tasks, workflows, schedules), with what each page posts back."""
    context = {
        **model_admin.admin_site.each_context(request),
        "title": op.title,
        "op": op,
        "opts": model_admin.opts,
        # Posted back as they came: the ticked ids, or "every row the filters match" (select_across),
        # so that the confirmed post selects what the first one did.
        "selected": request.POST.getlist(helpers.ACTION_CHECKBOX_NAME),
        "select_across": request.POST.get("select_across") == "1",
        "from_detail": bool(request.POST.get("_from_detail")),
        "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
        **context,
    }
    request.current_app = model_admin.admin_site.name
    return TemplateResponse(request, template, context)


def confirm_listed(
    model_admin: ModelAdmin[Any],
    request: HttpRequest,
    template: str,
    op: Confirmed,
    eligible: list[Any],
    selected: QuerySet[Any],
) -> TemplateResponse:
    """The confirmation page of an action that lists every row it will change (schedules,
    workflows), and counts the selected rows it leaves as they are."""
    return confirmation(
        model_admin,
        request,
        template,
        op,
        eligible=eligible,
        eligible_count=len(eligible),
        skipped_count=selected.count() - len(eligible),
    )


def report(model_admin: ModelAdmin[Any], request: HttpRequest, changed: int, noun: str, done: str) -> None:
    """A warning when nothing changed, so that an action that did nothing does not read as one that worked."""
    level = messages.SUCCESS if changed else messages.WARNING
    model_admin.message_user(request, f"{changed:,} {noun}{'s'[: changed != 1]} {done}.", level)


def back_to_detail(
    model_admin: ModelAdmin[Any], request: HttpRequest, changed: int, pk: str
) -> HttpResponseRedirect | None:
    """Where an action posted from an object's page (`_from_detail`) and changed that object, the
    operator goes back to it, not to the list (None: the admin's default, the list)."""
    if not (request.POST.get("_from_detail") and changed == 1):
        return None
    opts = model_admin.opts
    return HttpResponseRedirect(
        reverse(f"{model_admin.admin_site.name}:{opts.app_label}_{opts.model_name}_change", args=[pk])
    )


def _step(
    model_admin: ModelAdmin[Any], request: HttpRequest, eligible: QuerySet[Task], op: Operation, total: int
) -> JsonResponse:
    after = request.POST.get("_after") or None
    if after is not None and bulk.parse_id(after) is None:
        return JsonResponse({"error": "_after must be a task id"}, status=400)
    batch = bulk.step(eligible, op.apply, after=after, batch=bulk.BATCH)
    audit.record(request.user, Task, _labelled(batch), audit.action_message(op.done, max(total, 1)))
    done = batch.after is None
    if done:  # shown on the page the script opens next
        report(model_admin, request, _int(request.POST.get("_changed")), "task", op.done)
    return JsonResponse({"changed": len(batch.changed), "seen": batch.seen, "after": batch.after, "done": done})


def _labelled(batch: bulk.Batch) -> list[tuple[str, str]]:
    return [(pk, f"{name} {pk}") for pk, name in batch.changed]


def _int(value: str | None) -> int:
    try:
        return max(int(value or 0), 0)
    except ValueError:
        return 0
