"""The workflow tables: one `Workflow` row per start, one `WorkflowNode` row per node.

Rows are written by the SQL in `horsies_django.broker.workflows`; the ORM reads them for the admin.
A node keeps its dependents' indexes and counters of its own dependencies, so a node ending moves
its dependents with one statement, however many dependencies they have.
"""

from __future__ import annotations

import uuid

from django.db import models

from .enums import (  # noqa: F401  (re-exported)
    NODE_TERMINAL_STATUSES,
    WORKFLOW_TERMINAL_STATUSES,
    Join,
    OnError,
    WorkflowStatus,
    WorkflowTaskStatus,
)


class Workflow(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    name = models.CharField(max_length=255, db_index=True)
    definition_key = models.CharField(max_length=255, null=True, blank=True)
    status = models.CharField(max_length=10, choices=WorkflowStatus.choices, default=WorkflowStatus.RUNNING)
    on_error = models.CharField(max_length=5, choices=OnError.choices, default=OnError.FAIL)
    output_index = models.IntegerField(null=True, blank=True, help_text="The node whose result is the workflow's.")
    success_policy = models.JSONField(null=True, blank=True, help_text="Cases of required node indexes.")
    nodes_total = models.PositiveIntegerField()
    nodes_done = models.PositiveIntegerField(default=0, help_text="Nodes that completed, failed or were skipped.")
    error_code = models.CharField(max_length=100, null=True, blank=True)
    error_message = models.TextField(blank=True, default="")
    created_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        app_label = "horsies_django"
        db_table = "horsies_workflow"
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["status"], name="horsies_workflow_status_idx"),
            models.Index(fields=["created_at"], name="horsies_workflow_created_idx"),
            # Retention deletes finished workflows by finish time.
            models.Index(fields=["finished_at"], name="horsies_workflow_finished_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.name} {self.id} ({self.status})"


class WorkflowNode(models.Model):
    id = models.BigAutoField(primary_key=True)
    # No index of its own: the unique (workflow, node_index) index starts with it.
    workflow = models.ForeignKey(Workflow, on_delete=models.CASCADE, related_name="nodes", db_index=False)
    node_index = models.PositiveIntegerField(help_text="Position in the workflow's task list.")
    node_id = models.CharField(max_length=255)
    task_name = models.CharField(max_length=255)
    queue_name = models.CharField(max_length=100)
    priority = models.IntegerField()
    good_until = models.DateTimeField(null=True, blank=True)
    max_retries = models.PositiveIntegerField(default=0)
    kwargs = models.JSONField(default=dict, help_text="Static arguments, encoded when the workflow started.")
    args_from = models.JSONField(default=dict, help_text="Parameter name to the index of the upstream node.")
    ctx_from = models.JSONField(null=True, blank=True, help_text="Indexes whose results the WorkflowContext holds.")
    wants_meta = models.BooleanField(default=False)
    waits_for = models.JSONField(default=list)
    dependents = models.JSONField(default=list, help_text="Indexes of the nodes that wait for this one.")
    join_rule = models.CharField(max_length=6, choices=Join.choices, default=Join.ALL)
    min_success = models.PositiveIntegerField(null=True, blank=True)
    allow_failed_deps = models.BooleanField(default=False)
    status = models.CharField(max_length=10, choices=WorkflowTaskStatus.choices, default=WorkflowTaskStatus.PENDING)
    deps_total = models.PositiveIntegerField(default=0)
    deps_ended = models.PositiveIntegerField(default=0)
    deps_succeeded = models.PositiveIntegerField(default=0)
    task_id = models.UUIDField(null=True, blank=True, unique=True, help_text="Set once the node's task is sent.")
    result = models.JSONField(null=True, blank=True, help_text="The node's TaskResult, kept after its task is pruned.")
    error_code = models.CharField(max_length=100, null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        app_label = "horsies_django"
        db_table = "horsies_workflow_node"
        ordering = ["workflow", "node_index"]
        constraints = [
            models.UniqueConstraint(fields=["workflow", "node_index"], name="horsies_wf_node_index"),
            models.UniqueConstraint(fields=["workflow", "node_id"], name="horsies_wf_node_id"),
        ]

    def __str__(self) -> str:
        return f"{self.node_id} of {self.workflow_id} ({self.status})"
