"""Small HTML pieces for the admin pages: badges, times, JSON, the timeline. Everything is escaped."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from ..models import HELD_STATUSES, Task, TaskAttempt, TaskStatus
from ..stats import human_duration

EMPTY = "–"


def badge(value: str, label: str | None = None) -> SafeString:
    """A coloured pill for a task status, an attempt outcome or a worker state."""
    return format_html('<span class="hz-badge hz-badge--{}">{}</span>', value.lower(), label or value)


def pretty_json(value: Any) -> SafeString:
    text = json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False)
    return format_html('<pre class="hz-pre hz-json">{}</pre>', text)


def pre(text: str) -> SafeString | str:
    return format_html('<pre class="hz-pre">{}</pre>', text) if text else EMPTY


def when(value: datetime | None) -> SafeString | str:
    """A compact local time (`14:03:07` today, `Nov 28 14:03` otherwise); the full time on hover."""
    if value is None:
        return EMPTY
    local = timezone.localtime(value)
    today = timezone.localtime().date()
    short = local.strftime("%H:%M:%S") if local.date() == today else local.strftime("%b %d %H:%M")
    return format_html('<time datetime="{}" title="{}">{}</time>', value.isoformat(), local.isoformat(" "), short)


def duration(start: datetime | None, end: datetime | None) -> str:
    if start is None:
        return EMPTY
    if end is None:
        return f"{human_duration((timezone.now() - start).total_seconds())} so far"
    return human_duration((end - start).total_seconds())


def queue_wait(task: Task) -> str:
    """From when the current attempt could run (`run_at`) to when it started in its worker."""
    if task.started_at is None:
        if task.status == TaskStatus.PENDING and task.run_at <= timezone.now():
            return duration(task.run_at, None)
        return EMPTY
    return human_duration(max((task.started_at - task.run_at).total_seconds(), 0.0))


def run_time(task: Task) -> str:
    """From the start of the current attempt to its end (or now, while it runs)."""
    if task.started_at is None:
        return EMPTY
    return duration(task.started_at, task.finished_at if task.status not in HELD_STATUSES else None)


def attempts(task: Task) -> SafeString:
    """`2 of 3`: the task's tries under its retry policy, out of the `max_retries + 1` it allows;
    an operator's retries and the re-runs after a lost worker are shown apart."""
    by_policy = max(task.attempt - task.manual_retries - task.crash_reruns, 0)
    extra = []
    if task.manual_retries:
        extra.append(f"+{task.manual_retries} manual")
    if task.crash_reruns:
        extra.append(f"+{task.crash_reruns} after crash")
    return format_html(
        "{} of {}{}",
        by_policy,
        task.max_retries + 1,
        format_html('<small class="hz-sub">{}</small>', ", ".join(extra)) if extra else "",
    )


def short_id(value: object, length: int = 8) -> SafeString:
    text = str(value)
    return format_html('<code class="hz-id" title="{}">{}</code>', text, text[:length])


def worker(worker_id: str | None) -> SafeString | str:
    """`host:pid` of a `host:pid:random` worker id; the whole id on hover."""
    if not worker_id:
        return EMPTY
    short = ":".join(worker_id.split(":")[:2])
    if len(short) > 24:
        short = short[:23] + "…"
    return format_html('<span title="{}">{}</span>', worker_id, short)


@dataclass(frozen=True)
class Event:
    at: datetime
    kind: str
    label: str
    detail: str = ""


def task_events(task: Task, attempts: list[TaskAttempt]) -> list[Event]:
    """What happened to a task, in order: sent, scheduled, each try, and how it ended."""
    events = [Event(task.enqueued_at, "pending", "Sent", f"to queue {task.queue_name}")]
    if (task.run_at - task.enqueued_at).total_seconds() >= 1:
        events.append(Event(task.run_at, "scheduled", "Due to run"))
    for a in attempts:
        if a.started_at:
            events.append(Event(a.started_at, "running", f"Attempt {a.number} started", f"on {a.worker_id}"))
        if a.finished_at:
            detail = f"{a.error_code}: {a.error_message}" if a.error_code else ""
            outcome = a.outcome.replace("_", " ").lower()
            events.append(Event(a.finished_at, a.outcome.lower(), f"Attempt {a.number} {outcome}", detail))
    if task.status in (TaskStatus.CLAIMED, TaskStatus.RUNNING) and task.started_at:
        events.append(Event(task.started_at, "running", f"Attempt {task.attempt} running", f"on {task.worker_id}"))
    ended_by_attempt = any(a.finished_at == task.finished_at for a in attempts)
    if task.finished_at and not ended_by_attempt:
        detail = f"{task.error_code}: {task.error_message}" if task.error_code else ""
        events.append(Event(task.finished_at, task.status.lower(), task.status.capitalize(), detail))
    if task.status == TaskStatus.PENDING and task.good_until:
        events.append(Event(task.good_until, "expired", "Expires if not started by then"))
    return sorted(events, key=lambda e: e.at)


def timeline(task: Task, attempts: list[TaskAttempt]) -> SafeString:
    events = task_events(task, attempts)
    rows = format_html_join(
        "",
        '<li class="hz-event hz-event--{}"><span class="hz-event-at">{}</span>'
        '<span class="hz-event-offset">{}</span><span class="hz-event-label">{}</span>'
        '<span class="hz-event-detail">{}</span></li>',
        (
            (
                e.kind,
                when(e.at),
                "+" + human_duration((e.at - task.enqueued_at).total_seconds()) if e.at > task.enqueued_at else "",
                e.label,
                e.detail,
            )
            for e in events
        ),
    )
    return format_html('<ol class="hz-timeline">{}</ol>', rows)
