"""The tables: one `Task` row per send, one `TaskAttempt` row per try."""

from __future__ import annotations

import uuid

from django.db import models
from django.db.models import Q

from .conf import DEFAULT_PRIORITY, DEFAULT_QUEUE

MIN_PRIORITY = 1
MAX_PRIORITY = 1000


class TaskStatus(models.TextChoices):
    PENDING = "PENDING"
    CLAIMED = "CLAIMED"
    RUNNING = "RUNNING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
    EXPIRED = "EXPIRED"


TERMINAL_STATUSES = frozenset({TaskStatus.COMPLETED, TaskStatus.FAILED, TaskStatus.CANCELLED, TaskStatus.EXPIRED})
HELD_STATUSES = frozenset({TaskStatus.CLAIMED, TaskStatus.RUNNING})


class Task(models.Model):
    """A sent task. Rows are written by the broker's SQL; the ORM reads them for the admin."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    name = models.CharField(max_length=255, db_index=True)
    queue_name = models.CharField(max_length=100, default=DEFAULT_QUEUE)
    priority = models.IntegerField(default=DEFAULT_PRIORITY, help_text="Smaller runs first.")
    status = models.CharField(max_length=10, choices=TaskStatus.choices, default=TaskStatus.PENDING)
    arguments = models.JSONField(default=dict, help_text="Arguments bound by parameter name, encoded as JSON.")
    result = models.JSONField(null=True, blank=True, help_text="The encoded TaskResult once the task has ended.")
    error_code = models.CharField(max_length=100, null=True, blank=True, db_index=True)
    error_message = models.TextField(blank=True, default="")
    error_traceback = models.TextField(blank=True, default="")
    attempt = models.PositiveIntegerField(default=0, help_text="Tries started so far.")
    max_retries = models.PositiveIntegerField(default=0)
    crash_reruns = models.PositiveIntegerField(default=0, help_text="Re-runs after a worker was lost.")
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
            models.Index(fields=["priority", "run_at"], name="horsies_task_ready_idx", condition=Q(status="PENDING")),
            # The reaper looks for held tasks whose lease ran out.
            models.Index(
                fields=["lease_expires_at"],
                name="horsies_task_lease_idx",
                condition=Q(status__in=["CLAIMED", "RUNNING"]),
            ),
            # The admin: the status filter and dashboard counts; the queue filter's choices.
            models.Index(fields=["status", "queue_name"], name="horsies_task_status_idx"),
            models.Index(fields=["queue_name", "status"], name="horsies_task_queue_idx"),
            # Pruning finished rows and the dashboard's per-minute chart read by finish time.
            models.Index(fields=["finished_at"], name="horsies_task_finished_idx"),
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


class AttemptOutcome(models.TextChoices):
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    WORKER_LOST = "WORKER_LOST"


class TaskAttempt(models.Model):
    """One try of a task, kept after the task ends so every failure stays visible."""

    task = models.ForeignKey(Task, on_delete=models.CASCADE, related_name="attempts")
    number = models.PositiveIntegerField()
    worker_id = models.CharField(max_length=255, blank=True, default="")
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    outcome = models.CharField(max_length=12, choices=AttemptOutcome.choices)
    error_code = models.CharField(max_length=100, null=True, blank=True)
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
