"""Workflow statuses and choices. Only enums: importable before Django's app registry is ready."""

from __future__ import annotations

from django.db import models


class WorkflowStatus(models.TextChoices):
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    PAUSED = "PAUSED"
    CANCELLED = "CANCELLED"
    EXPIRED = "EXPIRED"


WORKFLOW_TERMINAL_STATUSES = frozenset(
    {WorkflowStatus.COMPLETED, WorkflowStatus.FAILED, WorkflowStatus.CANCELLED, WorkflowStatus.EXPIRED}
)


class WorkflowTaskStatus(models.TextChoices):
    """Where one node stands. A node's task being claimed is not written here: a node stays
    ENQUEUED until its task ends (the admin shows RUNNING from the task's own row)."""

    PENDING = "PENDING"
    READY = "READY"
    ENQUEUED = "ENQUEUED"
    RUNNING = "RUNNING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    SKIPPED = "SKIPPED"


NODE_TERMINAL_STATUSES = frozenset(
    {WorkflowTaskStatus.COMPLETED, WorkflowTaskStatus.FAILED, WorkflowTaskStatus.SKIPPED}
)


class OnError(models.TextChoices):
    """What a failed node does to its workflow: FAIL lets other branches finish, then fails it;
    PAUSE holds every node not yet started until `resume()` or `cancel()`."""

    FAIL = "fail"
    PAUSE = "pause"


class Join(models.TextChoices):
    ALL = "all"
    ANY = "any"
    QUORUM = "quorum"
