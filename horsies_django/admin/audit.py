"""The audit trail: a `LogEntry` on every task or schedule an admin action changed, so the History
button and the task page say who retried, cancelled, ran now, paused or resumed it, and when."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.contrib.admin.models import CHANGE, LogEntry
from django.contrib.contenttypes.models import ContentType
from django.db.models import Model
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from . import display


def record(user: Any, model: type[Model], objects: Sequence[tuple[str, str]], message: str) -> None:
    """One CHANGE entry per `(pk, label)`, all saying `message`, in one INSERT."""
    if not objects or not getattr(user, "pk", None):
        return
    content_type = ContentType.objects.get_for_model(model)
    LogEntry.objects.bulk_create(
        [
            LogEntry(
                user_id=user.pk,
                content_type_id=content_type.pk,
                object_id=pk,
                object_repr=label[:200],
                action_flag=CHANGE,
                change_message=message,
            )
            for pk, label in objects
        ]
    )


def action_message(done: str, count: int) -> str:
    """`Retried (one of 1,234 tasks retried by this action).` for each task's history."""
    if count <= 1:
        return f"{done.capitalize()}."
    return f"{done.capitalize()} (one of {count:,} changed by this action)."


def history(obj: Model, limit: int = 20) -> SafeString | str:
    """The latest entries for `obj`: when, who, what."""
    entries = list(
        LogEntry.objects.filter(content_type=ContentType.objects.get_for_model(type(obj)), object_id=str(obj.pk))
        .select_related("user")
        .order_by("-action_time")[:limit]
    )
    if not entries:
        return display.EMPTY
    return format_html(
        '<ul class="hz-plain hz-audit">{}</ul>',
        format_html_join(
            "",
            "<li>{} <strong>{}</strong> {}</li>",
            ((display.when(e.action_time), e.user.get_username(), e.get_change_message()) for e in entries),
        ),
    )
