"""The workflows page: each workflow's status and progress, its graph drawn as SVG with nodes coloured
by status and linked to their tasks, and Pause / Resume / Cancel behind the operate permission and
a confirmation. Read-only otherwise: workflows change only through their handle's operations."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from django.contrib import admin
from django.contrib.admin.utils import unquote
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.urls import NoReverseMatch, reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from ..app import app
from ..models import Task
from ..workflows.enums import WorkflowStatus, WorkflowTaskStatus
from ..workflows.models import Workflow, WorkflowNode
from . import display
from .actions import Confirmed, back_to_detail, confirm_listed, report
from .attempts import Operated

if TYPE_CHECKING:
    WorkflowAdminBase = admin.ModelAdmin[Workflow]
else:  # The admin classes are generic only in the type stubs.
    WorkflowAdminBase = admin.ModelAdmin

# Task-status colours for workflow and node statuses.
BADGES: dict[str, str] = {
    WorkflowStatus.PENDING: "pending",
    WorkflowStatus.RUNNING: "running",
    WorkflowStatus.COMPLETED: "completed",
    WorkflowStatus.FAILED: "failed",
    WorkflowStatus.PAUSED: "claimed",
    WorkflowStatus.CANCELLED: "cancelled",
    WorkflowStatus.EXPIRED: "expired",
}
NODE_COLOURS: dict[str, str] = {
    WorkflowTaskStatus.PENDING: "pending",
    WorkflowTaskStatus.READY: "claimed",
    WorkflowTaskStatus.ENQUEUED: "scheduled",
    WorkflowTaskStatus.RUNNING: "running",
    WorkflowTaskStatus.COMPLETED: "completed",
    WorkflowTaskStatus.FAILED: "failed",
    WorkflowTaskStatus.SKIPPED: "cancelled",
}
# Beyond this many nodes the graph is not drawn (it would be taller than anyone scrolls); the
# table below it still lists the first TABLE_ROWS nodes.
MAX_DRAWN = 200
TABLE_ROWS = 500
BOX_W, BOX_H, GAP_X, GAP_Y = 150, 30, 60, 14


@dataclass(frozen=True)
class WorkflowOperation(Confirmed):
    short: str
    statuses: frozenset[str]
    apply: Callable[[str], bool]


def _handle_op(name: str) -> Callable[[str], bool]:
    def apply(workflow_id: str) -> bool:
        result = getattr(app.get_workflow_handle(workflow_id), name)()
        return bool(result.is_ok() and result.unwrap())

    return apply


OPERATIONS = {
    op.action: op
    for op in [
        WorkflowOperation(
            action="pause_workflows",
            title="Pause workflows",
            short="Pause",
            explanation="Nodes already sent run on; no other node starts until the workflow is resumed.",
            button="Yes, pause",
            done="paused",
            statuses=frozenset({WorkflowStatus.RUNNING}),
            apply=_handle_op("pause"),
        ),
        WorkflowOperation(
            action="resume_workflows",
            title="Resume workflows",
            short="Resume",
            explanation="Nodes that became ready while the workflow was paused start now.",
            button="Yes, resume",
            done="resumed",
            statuses=frozenset({WorkflowStatus.PAUSED}),
            apply=_handle_op("resume"),
        ),
        WorkflowOperation(
            action="cancel_workflows",
            title="Cancel workflows",
            short="Cancel",
            explanation="Nodes that have not ended are skipped and their tasks cancelled; the workflow ends "
            "CANCELLED. This cannot be undone.",
            button="Yes, cancel",
            done="cancelled",
            statuses=frozenset({WorkflowStatus.RUNNING, WorkflowStatus.PAUSED}),
            apply=_handle_op("cancel"),
        ),
    ]
}


def _task_url(admin_site: str, task_id: object) -> str | None:
    try:
        return reverse(f"{admin_site}:horsies_django_task_change", args=[task_id])
    except NoReverseMatch:
        return None


def _edge_end(box: tuple[int, int]) -> tuple[int, int]:
    return box[0] - 2, box[1] + BOX_H // 2


def dag_svg(nodes: list[WorkflowNode], admin_site: str) -> SafeString:
    """The graph: one column per depth (a node sits right of everything it waits for), edges for
    `waits_for`, each box coloured by its node's status and linked to its task."""
    if len(nodes) > MAX_DRAWN:
        return format_html('<p class="hz-sub">{} nodes: too many to draw; see the table.</p>', len(nodes))
    depth: dict[int, int] = {}
    by_index = {node.node_index: node for node in nodes}
    for node in sorted(nodes, key=lambda n: n.node_index):
        pending = [node.node_index]
        while pending:  # iterative: a deep chain must not hit the recursion limit
            current = by_index[pending[-1]]
            deps = [d for d in current.waits_for if d in by_index and d not in depth]
            if deps:
                pending.extend(deps)
                continue
            pending.pop()
            depth[current.node_index] = 1 + max((depth[d] for d in current.waits_for if d in depth), default=-1)
    columns: dict[int, list[WorkflowNode]] = {}
    for node in sorted(nodes, key=lambda n: n.node_index):
        columns.setdefault(depth[node.node_index], []).append(node)
    place = {
        node.node_index: (col * (BOX_W + GAP_X) + 4, row * (BOX_H + GAP_Y) + 4)
        for col, members in columns.items()
        for row, node in enumerate(members)
    }
    width = (max(columns, default=0) + 1) * (BOX_W + GAP_X)
    height = max((len(members) for members in columns.values()), default=1) * (BOX_H + GAP_Y) + 8
    edges = format_html_join(
        "",
        '<line class="hz-dag-edge" x1="{}" y1="{}" x2="{}" y2="{}" marker-end="url(#hz-arrow)"/>',
        (
            (place[d][0] + BOX_W, place[d][1] + BOX_H // 2, *_edge_end(place[n.node_index]))
            for n in nodes
            for d in n.waits_for
            if d in place
        ),
    )  # fmt: skip
    boxes = []
    for node in nodes:
        x, y = place[node.node_index]
        label = node.node_id if len(node.node_id) <= 20 else node.node_id[:19] + "…"
        box = format_html(
            '<g class="hz-dag-node hz-dag-node--{}"><title>{} ({}): {}</title>'
            '<rect x="{}" y="{}" width="{}" height="{}" rx="6"/>'
            '<text x="{}" y="{}">{}</text></g>',
            NODE_COLOURS.get(node.status, "pending"), node.node_id, node.task_name, node.status,
            x, y, BOX_W, BOX_H, x + 8, y + BOX_H // 2 + 4, label,
        )  # fmt: skip
        url = _task_url(admin_site, node.task_id) if node.task_id else None
        boxes.append(format_html('<a href="{}">{}</a>', url, box) if url else box)
    return format_html(
        '<svg class="hz-dag" width="{}" height="{}" viewBox="0 0 {} {}" role="img" aria-label="workflow graph">'
        '<defs><marker id="hz-arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="6" markerHeight="6" '
        'orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z"/></marker></defs>{}{}</svg>',
        width, height, width, height, edges, SafeString("".join(boxes)),
    )  # fmt: skip


@admin.register(Workflow)
class WorkflowAdmin(Operated, WorkflowAdminBase):
    change_form_template = "horsies_django/admin/workflow_change_form.html"
    list_display = ["workflow", "status_badge", "progress", "started", "took"]
    list_filter = ["status"]
    search_fields = ["name"]
    search_help_text = "Search by workflow id or name."
    show_facets = admin.ShowFacets.NEVER
    list_per_page = 50
    actions = list(OPERATIONS)
    fieldsets = [
        (None, {"fields": ["id", "name", "definition_key", "status_badge", "progress", "error", "started", "took"]}),
        ("Graph", {"fields": ["graph"]}),
        ("Nodes", {"fields": ["node_table"]}),
    ]
    readonly_fields = [
        *[f.name for f in Workflow._meta.fields],
        *["workflow", "status_badge", "progress", "error", "started", "took", "graph", "node_table"],
    ]

    class Media:
        css = {"all": ["horsies_django/admin.css"]}

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Workflow], search_term: str
    ) -> tuple[QuerySet[Workflow], bool]:
        term = search_term.strip()
        try:
            return queryset.filter(pk=uuid.UUID(term)), False
        except ValueError:
            return super().get_search_results(request, queryset, search_term)

    @admin.display(description="workflow", ordering="name")
    def workflow(self, obj: Workflow) -> SafeString:
        return format_html('<span class="hz-name">{}</span>{}', obj.name, display.short_id(obj.pk))

    @admin.display(description="status", ordering="status")
    def status_badge(self, obj: Workflow) -> SafeString:
        return display.badge(BADGES.get(obj.status, "pending"), obj.status)

    @admin.display(description="progress")
    def progress(self, obj: Workflow) -> SafeString:
        return format_html(
            '<span class="hz-progress" title="nodes completed, failed or skipped">{}/{}</span>',
            obj.nodes_done,
            obj.nodes_total,
        )

    @admin.display(description="started", ordering="created_at")
    def started(self, obj: Workflow) -> SafeString | str:
        return display.when(obj.created_at)

    @admin.display(description="took")
    def took(self, obj: Workflow) -> str:
        return display.duration(obj.created_at, obj.finished_at)

    @admin.display(description="error")
    def error(self, obj: Workflow) -> SafeString | str:
        if not obj.error_code:
            return display.EMPTY
        return format_html('<span class="hz-code">{}</span> {}', obj.error_code, obj.error_message)

    def _nodes(self, obj: Workflow, limit: int | None = None) -> list[WorkflowNode]:
        nodes = WorkflowNode.objects.filter(workflow=obj).order_by("node_index").defer("result", "kwargs")
        return list(nodes[:limit] if limit else nodes)

    @admin.display(description="graph")
    def graph(self, obj: Workflow) -> SafeString:
        nodes = self._nodes(obj, MAX_DRAWN + 1)
        running = set(
            Task.objects.filter(pk__in=[n.task_id for n in nodes if n.task_id], status="RUNNING").values_list(
                "pk", flat=True
            )
        )
        for node in nodes:  # a node stays ENQUEUED until its task ends; show RUNNING from the task
            if node.status == WorkflowTaskStatus.ENQUEUED and node.task_id in running:
                node.status = WorkflowTaskStatus.RUNNING
        return dag_svg(nodes, self.admin_site.name)

    @admin.display(description="nodes")
    def node_table(self, obj: Workflow) -> SafeString:
        nodes = self._nodes(obj, TABLE_ROWS)
        rows = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            (
                (
                    node.node_index,
                    node.node_id,
                    self._task_cell(node),
                    display.badge(NODE_COLOURS.get(node.status, "pending"), node.status),
                    ", ".join(str(d) for d in node.waits_for) or display.EMPTY,
                    node.error_code or display.EMPTY,
                )
                for node in nodes
            ),
        )
        more = (
            format_html('<p class="hz-sub">The first {} of {} nodes.</p>', TABLE_ROWS, obj.nodes_total)
            if obj.nodes_total > TABLE_ROWS
            else ""
        )
        return format_html(
            '<table class="hz-table"><thead><tr><th>#</th><th>node</th><th>task</th><th>status</th>'
            "<th>waits for</th><th>error</th></tr></thead><tbody>{}</tbody></table>{}",
            rows,
            more,
        )

    def _task_cell(self, node: WorkflowNode) -> SafeString | str:
        url = _task_url(self.admin_site.name, node.task_id) if node.task_id else None
        if url is None:
            return node.task_name
        return format_html('<a href="{}">{}</a> {}', url, node.task_name, display.short_id(node.task_id))

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        workflow = self.get_object(request, unquote(object_id)) if self.has_operate_permission(request) else None
        operations = [op for op in OPERATIONS.values() if workflow is not None and workflow.status in op.statuses]
        return super().change_view(request, object_id, form_url, {"operations": operations, **(extra_context or {})})

    # -- actions ----------------------------------------------------------------------------

    @admin.action(description="Pause selected workflows", permissions=["operate"])
    def pause_workflows(self, request: HttpRequest, queryset: QuerySet[Workflow]) -> HttpResponse | None:
        return self._operate(request, queryset, "pause_workflows")

    @admin.action(description="Resume selected workflows", permissions=["operate"])
    def resume_workflows(self, request: HttpRequest, queryset: QuerySet[Workflow]) -> HttpResponse | None:
        return self._operate(request, queryset, "resume_workflows")

    @admin.action(description="Cancel selected workflows", permissions=["operate"])
    def cancel_workflows(self, request: HttpRequest, queryset: QuerySet[Workflow]) -> HttpResponse | None:
        return self._operate(request, queryset, "cancel_workflows")

    def _operate(self, request: HttpRequest, queryset: QuerySet[Workflow], action: str) -> HttpResponse | None:
        """Show the confirmation page; once confirmed (`post=yes`), apply the operation and report it."""
        op = OPERATIONS[action]
        eligible = list(queryset.filter(status__in=op.statuses).order_by("-created_at")[:500])
        if request.POST.get("post") == "yes":
            changed = [str(w.pk) for w in eligible if op.apply(str(w.pk))]
            report(self, request, len(changed), "workflow", op.done)
            return back_to_detail(self, request, len(changed), changed[0] if changed else "")
        return confirm_listed(self, request, "horsies_django/admin/confirm_workflows.html", op, eligible, queryset)


def workflow_link(task: Task, admin_site: str = "admin") -> SafeString | str:
    """For the task page: the workflow and node this task runs, linked."""
    node = WorkflowNode.objects.filter(task_id=task.pk).select_related("workflow").first()
    if node is None:
        return display.EMPTY
    url = reverse(f"{admin_site}:horsies_django_workflow_change", args=[node.workflow_id])
    return format_html(
        '<a href="{}">{}</a> {} <small class="hz-sub">node {}</small>',
        url,
        node.workflow.name,
        display.short_id(node.workflow_id),
        node.node_id,
    )
