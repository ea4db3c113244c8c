"""The Errors page: failures grouped by task, error code and normalised message, with the group
actions (retry all, cancel pending) that open the task list's confirmation page for the group."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone

from .. import failures, stats
from ..bulk import parse_since
from ..models import TaskStatus
from .attempts import NUL_REFUSED, has_nul

if TYPE_CHECKING:
    from django.contrib.admin import ModelAdmin

WINDOWS = [("", "All"), ("1h", "Last hour"), ("24h", "Last 24 hours"), ("7d", "Last 7 days")]
ORDERS = [("last", "Last seen"), ("count", "Most failures")]
SPARK = {"width": 96, "height": 22, "gap": 1}


def sparkline(hourly: list[int]) -> dict[str, Any]:
    """One bar per hour, scaled to the group's busiest hour, in SVG user units."""
    top = max(hourly, default=0) or 1
    slot = SPARK["width"] / max(len(hourly), 1)
    bars = []
    for i, n in enumerate(hourly):
        h = 0 if n == 0 else max(round(n / top * (SPARK["height"] - 2), 2), 1.5)
        bars.append(
            {"x": round(i * slot, 2), "w": round(slot - SPARK["gap"], 2), "y": SPARK["height"] - h, "h": h, "n": n}
        )
    return {**SPARK, "bars": bars, "total": sum(hourly)}


def errors_view(model_admin: ModelAdmin[Any], request: HttpRequest) -> HttpResponse:
    if not model_admin.has_view_permission(request):
        raise PermissionDenied
    if has_nul(request):
        return HttpResponseBadRequest(NUL_REFUSED)
    now = timezone.now()
    window = request.GET.get("since", "")
    if window not in dict(WINDOWS):
        window = ""
    order = request.GET.get("o", "last")
    if order not in dict(ORDERS):
        order = "last"
    name = request.GET.get("name", "")[:255] or None
    since = now - parse_since(window) if window else None
    groups, total = failures.error_groups(now, name=name, since=since, order=order)
    site = model_admin.admin_site.name
    changelist = reverse(f"{site}:horsies_django_task_changelist")
    can_operate = bool(getattr(model_admin, "has_operate_permission", lambda r: False)(request))

    def link(**params: str) -> str:
        kept = {"since": window, "o": order, "name": name or ""}
        return "?" + urlencode({k: v for k, v in {**kept, **params}.items() if v})

    rows = [
        {
            "g": g,
            "failed_url": _tasks_in_group(changelist, g, TaskStatus.FAILED),
            "pending_url": _tasks_in_group(changelist, g, TaskStatus.PENDING),
            "sample_url": reverse(f"{site}:horsies_django_task_change", args=[g.sample_id]) if g.sample_id else "",
            "first": g.first_seen,
            "last": g.last_seen,
            "spark": sparkline(g.hourly),
        }
        for g in groups
    ]
    context = {
        **model_admin.admin_site.each_context(request),
        "title": "Errors",
        "opts": model_admin.opts,
        "rows": rows,
        "total_groups": total,
        "shown_groups": len(rows),
        "windows": [{"label": label, "url": link(since=key), "on": key == window} for key, label in WINDOWS],
        "orders": [{"label": label, "url": link(o=key), "on": key == order} for key, label in ORDERS],
        "name": name,
        "clear_name": link(name=""),
        "can_operate": can_operate,
        "changelist": changelist,
        "failed": TaskStatus.FAILED,
        "pending": TaskStatus.PENDING,
        "age": stats.human_duration,
    }
    request.current_app = site
    return TemplateResponse(request, "horsies_django/admin/errors.html", context)


def _tasks_in_group(changelist: str, group: Any, status: TaskStatus) -> str:
    return f"{changelist}?{urlencode({'name': group.name, 'group': group.group, 'status__exact': status.value})}"
