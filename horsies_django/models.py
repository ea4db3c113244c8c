"""The tables: one `Task` row per send, one `TaskAttempt` row per try."""

from __future__ import annotations

import uuid

from django.db import models
from django.db.models import Q

from .conf import DEFAULT_PRIORITY, DEFAULT_QUEUE
from .statuses import (
    ACTIVE,
    ENDED,
    ENDED_UNSUCCESSFULLY,
    ERROR_CODE_MAX_LENGTH,
    READY,
    AttemptOutcome,
    TaskStatus,
)

MIN_PRIORITY = 1
MAX_PRIORITY = 1000

__all__ = [
    "ACTIVE", "ENDED", "ENDED_UNSUCCESSFULLY", "READY", "HELD_STATUSES", "TERMINAL_STATUSES", "TaskStatus",
    "Task", "TaskAttempt", "AttemptOutcome", "WorkerProcess", "Schedule",
]  # fmt: skip


# The one definition lives in `statuses` (importable before the app registry is ready).
TERMINAL_STATUSES = ENDED
HELD_STATUSES = ACTIVE


class Task(models.Model):
    """A sent task. Rows are written by the broker's SQL; the ORM reads them for the admin."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    name = models.CharField(max_length=255, db_index=True)
    queue_name = models.CharField(max_length=100, default=DEFAULT_QUEUE)
    priority = models.IntegerField(default=DEFAULT_PRIORITY, help_text="Smaller runs first.")
    status = models.CharField(max_length=10, choices=TaskStatus.choices, default=TaskStatus.PENDING)
    arguments = models.JSONField(default=dict, help_text="Arguments bound by parameter name, encoded as JSON.")
    result = models.JSONField(null=True, blank=True, help_text="The encoded TaskResult once the task has ended.")
    error_code = models.CharField(max_length=ERROR_CODE_MAX_LENGTH, null=True, blank=True)
    error_message = models.TextField(blank=True, default="")
    error_traceback = models.TextField(blank=True, default="")
    error_group = models.CharField(
        max_length=16,
        null=True,
        blank=True,
        help_text="The error code and normalised message, digested: failures alike share it (the Errors page).",
    )
    attempt = models.PositiveIntegerField(default=0, help_text="Tries started so far.")
    max_retries = models.PositiveIntegerField(default=0)
    # db_default: the broker inserts rows with raw SQL that names only the columns it sets.
    retry_count = models.PositiveIntegerField(
        default=0, db_default=0, help_text="Times it was put back to run again by its RetryPolicy."
    )
    crash_reruns = models.PositiveIntegerField(default=0, help_text="Re-runs after a worker was lost.")
    manual_retries = models.PositiveIntegerField(default=0, db_default=0, help_text="Retries an operator asked for.")
    run_at = models.DateTimeField(help_text="Not claimed before this time.")
    enqueued_at = models.DateTimeField(db_index=True)
    claimed_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    good_until = models.DateTimeField(null=True, blank=True, help_text="Expires if not started by then.")
    worker_id = models.CharField(max_length=255, null=True, blank=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    idempotency_key = models.CharField(
        max_length=255, null=True, blank=True, help_text="Sends with the same task name and key share one task."
    )
    claim_token = models.PositiveIntegerField(
        default=0, help_text="Bumped on every claim; only the holder of the current token may finish the task."
    )

    class Meta:
        db_table = "horsies_task"
        ordering = ["-enqueued_at"]
        permissions = [("operate_task", "Can retry, cancel and requeue tasks")]
        indexes = [
            # The claim query's order; partial, so it holds only the ready rows and stays small.
            models.Index(
                fields=["priority", "run_at"], name="horsies_task_ready_idx", condition=Q(status=TaskStatus.PENDING)
            ),
            # The reaper looks for held tasks whose lease ran out.
            models.Index(
                fields=["lease_expires_at"],
                name="horsies_task_lease_idx",
                condition=Q(status__in=sorted(ACTIVE)),
            ),
            # The admin: the status filter, dashboard counts, and the queue filter's choices (one loose
            # scan per status, so queue_name needs no index of its own for a send to write).
            models.Index(fields=["status", "queue_name"], name="horsies_task_status_idx"),
            # The admin's error-code filter. Partial: a send writes no entry here (a new task has no
            # code), and every index entry a send writes is part of its cost.
            models.Index(
                fields=["error_code"], name="horsies_task_error_code_idx", condition=Q(error_code__isnull=False)
            ),
            # Pruning finished rows and the dashboard's per-minute chart read by finish time.
            models.Index(fields=["finished_at"], name="horsies_task_finished_idx"),
            # The Errors page: one grouped scan of this index (failed and retrying rows only) gives
            # every group's counts and first/last seen; a group's tasks are one range of it.
            models.Index(
                fields=["name", "error_group", "status", "finished_at"],
                name="horsies_task_error_group_idx",
                condition=Q(error_group__isnull=False),
            ),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(priority__gte=MIN_PRIORITY, priority__lte=MAX_PRIORITY),
                name="horsies_task_priority_range",
            ),
            # Concurrent sends with one key insert one row; the losers read the winner's id.
            models.UniqueConstraint(
                fields=["name", "idempotency_key"],
                condition=Q(idempotency_key__isnull=False),
                name="horsies_task_idempotency_key",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} {self.id} ({self.status})"


class TaskAttempt(models.Model):
    """One try of a task, kept after the task ends so every failure stays visible."""

    task = models.ForeignKey(Task, on_delete=models.CASCADE, related_name="attempts")
    number = models.PositiveIntegerField()
    worker_id = models.CharField(max_length=255, blank=True, default="")
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    outcome = models.CharField(max_length=12, choices=AttemptOutcome.choices)
    error_code = models.CharField(max_length=ERROR_CODE_MAX_LENGTH, null=True, blank=True)
    error_message = models.TextField(blank=True, default="")
    error_traceback = models.TextField(blank=True, default="")

    class Meta:
        db_table = "horsies_task_attempt"
        ordering = ["task", "number"]
        constraints = [models.UniqueConstraint(fields=["task", "number"], name="horsies_attempt_unique_number")]

    def __str__(self) -> str:
        return f"attempt {self.number} of {self.task_id}: {self.outcome}"


class WorkerProcess(models.Model):
    """A running (or stopped) `horsies_worker`, so operators can see who is alive and what it holds."""

    id = models.CharField(primary_key=True, max_length=255)
    hostname = models.CharField(max_length=255)
    pid = models.PositiveIntegerField()
    queues = models.JSONField(default=list, help_text="Queues it takes tasks from; empty means all.")
    concurrency = models.PositiveIntegerField()
    pool = models.CharField(max_length=20, default="threads")
    started_at = models.DateTimeField()
    last_heartbeat_at = models.DateTimeField(db_index=True)
    stopped_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "horsies_worker"
        verbose_name = "worker"
        ordering = ["-last_heartbeat_at"]

    def __str__(self) -> str:
        return self.id


class Schedule(models.Model):
    """A periodic task from HORSIES['SCHEDULES'] or @app.periodic, and where it stands.

    Workers enqueue each due slot by moving `last_slot_at` forward with a compare-and-set in the
    same transaction as the send, so a slot is sent once however many workers look at it.
    """

    name = models.CharField(primary_key=True, max_length=200)
    task_name = models.CharField(max_length=255)
    spec = models.CharField(max_length=200, help_text="The cron expression or interval, as written.")
    paused = models.BooleanField(default=False, help_text="A paused schedule sends nothing until resumed.")
    last_slot_at = models.DateTimeField(null=True, blank=True, help_text="The newest slot sent.")
    last_run_at = models.DateTimeField(null=True, blank=True, help_text="When that slot was sent.")
    last_task_id = models.UUIDField(null=True, blank=True)
    next_run_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "horsies_schedule"
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Dashboard(Task):
    """No table: an entry in the admin's app list (and sidebar) that opens the task dashboard."""

    class Meta:
        proxy = True
        verbose_name = verbose_name_plural = "dashboard"


class ErrorGroupEntry(Task):
    """No table: an entry in the admin's app list (and sidebar) that opens the Errors page."""

    class Meta:
        proxy = True
        verbose_name = "error"
        verbose_name_plural = "errors"


# The workflow tables live with the workflow code; importing them here registers them with the app.
from .workflows.models import Workflow, WorkflowNode  # noqa: E402, F401


class RateLimitStart(models.Model):
    """One start of a rate-limited task. A task's `rate_limit` counts these rows within its period,
    so every attempt counts, retries and re-runs included; rows older than the period are deleted
    by the claims that count them."""

    task_name = models.CharField(max_length=255)
    started_at = models.DateTimeField()

    class Meta:
        db_table = "horsies_rate_start"
        indexes = [models.Index(fields=["task_name", "started_at"], name="horsies_rate_start_idx")]

    def __str__(self) -> str:
        return f"{self.task_name} at {self.started_at}"
