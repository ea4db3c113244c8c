"""The dashboard: a page, and the fragment its script fetches every few seconds to refresh itself."""

from __future__ import annotations

import math
from datetime import datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from django.core.exceptions import PermissionDenied
from django.http import HttpRequest
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone

from .. import stats
from ..conf import get_settings
from ..models import Schedule, TaskStatus
from .schedules import state_of, with_outcomes

if TYPE_CHECKING:
    from django.contrib.admin import ModelAdmin

REFRESH_S = 5
CHART = {"width": 720, "height": 220, "left": 44, "right": 12, "top": 14, "bottom": 28}


def nice_ceiling(value: float) -> int:
    """The smallest of 4, 6, 8, 10, 20, 40, 60, 80, 100, ... that is at least `value`."""
    if value <= 4:
        return 4
    scale = 10 ** math.floor(math.log10(value))
    return next(int(step * scale) for step in (1, 2, 4, 6, 8, 10) if step * scale >= value)


def chart(buckets: list[stats.MinuteStats]) -> dict[str, Any]:
    """Stacked bars per minute (completed below, failed on top), in SVG user units."""
    c = CHART
    plot_w = c["width"] - c["left"] - c["right"]
    plot_h = c["height"] - c["top"] - c["bottom"]
    base = c["top"] + plot_h
    top = nice_ceiling(max((b.completed + b.failed for b in buckets), default=0))
    slot = plot_w / max(len(buckets), 1)
    bars = []
    for i, b in enumerate(buckets):
        h_ok, h_err = b.completed / top * plot_h, b.failed / top * plot_h
        local = timezone.localtime(b.start)
        bars.append(
            {
                "x": round(c["left"] + i * slot + slot * 0.14, 2),
                "width": round(slot * 0.72, 2),
                "ok_y": round(base - h_ok, 2),
                "ok_h": round(h_ok, 2),
                "err_y": round(base - h_ok - h_err, 2),
                "err_h": round(h_err, 2),
                "slot_x": round(c["left"] + i * slot, 2),
                "slot_w": round(slot, 2),
                "title": f"{local:%H:%M}: {b.completed} completed, {b.failed} failed",
            }
        )
    grid = [{"y": round(base - v / top * plot_h, 2), "label": v} for v in (0, top // 2, top)]
    ticks = [i for i in range(0, len(buckets), 15)] + ([len(buckets) - 1] if buckets else [])
    xlabels = [
        {
            "x": round(c["left"] + (i + 0.5) * slot, 2),
            "label": "now" if i == len(buckets) - 1 else f"{timezone.localtime(buckets[i].start):%H:%M}",
        }
        for i in ticks
    ]
    return {
        **c,
        "plot_right": c["width"] - c["right"],
        "plot_h": plot_h,
        "ylabel_x": c["left"] - 8,
        "xlabel_y": c["height"] - 8,
        "bars": bars,
        "grid": grid,
        "xlabels": xlabels,
    }


def dashboard_context(snapshot: stats.Snapshot, site: str = "admin") -> dict[str, Any]:
    changelist = reverse(f"{site}:horsies_django_task_changelist")

    def tasks_url(**params: str) -> str:
        return f"{changelist}?{urlencode(params)}" if params else changelist

    statuses = stats.STATUSES
    totals = snapshot.totals()
    queues = [
        {
            "name": q.name,
            "url": tasks_url(queue=q.name),
            "cells": [
                {"status": s, "count": q.counts[s], "url": tasks_url(queue=q.name, status__exact=s)} for s in statuses
            ],
            "scheduled": q.scheduled,
            "oldest": stats.human_duration(q.oldest_pending_s),
        }
        for q in snapshot.queues
    ]
    errors_top = max((e.count for e in snapshot.top_errors), default=1)
    errors_page = reverse(f"{site}:horsies_django_task_errors")
    errors = [
        {
            "code": e.code,
            "name": e.name,
            "message": e.message,
            "count": e.count,
            # The group's row on the Errors page, which has its counts, sparkline and actions.
            "url": f"{errors_page}?{urlencode({'since': '24h', 'name': e.name})}#group-{e.group}",
            "share": round(100 * e.count / errors_top),
        }
        for e in snapshot.top_errors
    ]
    workers = [
        {
            "w": w,
            "queues": ", ".join(w.queues) or "all",
            "heartbeat": stats.human_duration(w.heartbeat_age_s),
            "running": [
                {"task": t, "url": reverse(f"{site}:horsies_django_task_change", args=[t.id])} for t in w.running
            ],
        }
        for w in snapshot.workers
    ]
    scheduled = sum(q.scheduled for q in snapshot.queues)
    alive = sum(1 for w in snapshot.workers if w.state == "alive")
    kpis = [
        (
            "Ready to run",
            totals[TaskStatus.PENDING] - scheduled,
            "pending",
            tasks_url(status__exact=TaskStatus.PENDING.value),
        ),
        (
            "Running",
            totals[TaskStatus.RUNNING] + totals[TaskStatus.CLAIMED],
            "running",
            tasks_url(status__exact=TaskStatus.RUNNING.value),
        ),
        ("Completed, last hour", sum(b.completed for b in snapshot.throughput), "completed", ""),
        (
            "Failed, last hour",
            sum(b.failed for b in snapshot.throughput),
            "failed",
            tasks_url(status__exact=TaskStatus.FAILED.value),
        ),
        (
            "Workers alive",
            alive,
            "alive" if alive else "silent",
            reverse(f"{site}:horsies_django_workerprocess_changelist"),
        ),
    ]
    return {
        "snapshot": snapshot,
        "statuses": statuses,
        "totals": [totals[s] for s in statuses],
        "queues": queues,
        "errors": errors,
        "workers": workers,
        "kpis": [{"label": k[0], "value": k[1], "kind": k[2], "url": k[3]} for k in kpis],
        "chart": chart(snapshot.throughput),
        "refresh_s": REFRESH_S,
        "errors_url": errors_page,
        "schedules": schedule_rows(snapshot.at, site),
        "grace_s": stats.human_duration(stats.heartbeat_grace_s()),
    }


def schedule_rows(now: datetime, site: str) -> list[dict[str, Any]]:
    """The schedules that are failing (their last task failed), for the dashboard's red card."""
    rows = with_outcomes(Schedule.objects.using(get_settings().database).order_by("name"), now)
    return [
        {
            "s": s,
            "url": reverse(f"{site}:horsies_django_schedule_change", args=[s.pk]),
            "task_url": reverse(f"{site}:horsies_django_task_change", args=[s.last_task_id]),
        }
        for s in rows[:200]
        if state_of(s) == "failing"
    ]


def dashboard_view(model_admin: ModelAdmin[Any], request: HttpRequest, *, fragment: bool = False) -> TemplateResponse:
    if not model_admin.has_view_permission(request):
        raise PermissionDenied
    site = model_admin.admin_site.name
    context = dashboard_context(stats.snapshot(), site)
    if fragment:
        response = TemplateResponse(request, "horsies_django/admin/dashboard_body.html", context)
        response["X-Horsies-Fragment"] = "1"  # the script refuses anything else, e.g. a login page
        return response
    context.update(model_admin.admin_site.each_context(request), title="Task dashboard", opts=model_admin.opts)
    context["fragment_url"] = reverse(f"{site}:horsies_django_task_dashboard_fragment")
    request.current_app = site
    return TemplateResponse(request, "horsies_django/admin/dashboard.html", context)
