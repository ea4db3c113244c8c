"""Workflow SQL: start a workflow, move it on when its nodes' tasks end, pause, resume, cancel, prune.

Lock order, everywhere: task rows (the finish statement that ended them locks them), then workflow
rows in id order, then node rows. A node's dependents are moved under its workflow's row lock, in
the transaction that finished the node's task, so two dependencies ending at once on two workers
are counted one after the other and their fan-in node is sent exactly once. SQLite has one writer
at a time, so there the write lock every one of these transactions holds is the whole story.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from ..models import TERMINAL_STATUSES, TaskStatus
from ..types.codec import dumps, loads
from ..types.codes import RetrievalCode, WorkflowCode
from ..types.ids import new_task_id
from ..workflows.enums import Join, OnError, WorkflowStatus, WorkflowTaskStatus
from .base import INSERT_CHUNK, TASK_TABLE, NewTask

if TYPE_CHECKING:
    from .base import Broker

WORKFLOW_TABLE = "horsies_workflow"
NODE_TABLE = "horsies_workflow_node"

# The parameters a node's function may declare to be given its workflow's context and ids.
CTX_PARAM = "workflow_ctx"
META_PARAM = "workflow_meta"

NODE_COLUMNS = (
    "workflow_id, node_index, node_id, task_name, queue_name, priority, good_until, max_retries, kwargs, args_from, "
    "ctx_from, wants_meta, waits_for, dependents, join_rule, min_success, allow_failed_deps, status, deps_total, "
    "deps_ended, deps_succeeded, task_id, result, error_code, finished_at"
)
_ENQUEUE_COLUMNS = (
    "id, node_index, node_id, task_name, queue_name, priority, good_until, max_retries, kwargs, args_from, ctx_from, "
    "wants_meta"
)


@dataclass(frozen=True, slots=True)
class NewNode:
    """A node as `start()` stores it: everything checked and encoded already."""

    index: int
    node_id: str
    task_name: str
    queue_name: str
    priority: int
    good_until: datetime | None
    max_retries: int
    kwargs: dict[str, Any]
    args_from: dict[str, int]
    ctx_from: list[int] | None
    wants_meta: bool
    waits_for: list[int]
    dependents: list[int]
    join: str
    min_success: int | None
    allow_failed_deps: bool


@dataclass(frozen=True, slots=True)
class NewWorkflow:
    id: uuid.UUID
    name: str
    definition_key: str | None
    on_error: str
    output_index: int | None
    success_policy: dict[str, Any] | None
    created_at: datetime
    nodes: Sequence[NewNode]


@dataclass(slots=True)
class _Locked:
    """A workflow row held under lock while its nodes move."""

    id: Any
    name: str
    status: str
    on_error: str
    nodes_total: int
    nodes_done: int
    output_index: int | None
    success_policy: dict[str, Any] | None


def _chunks(values: Sequence[Any], size: int = INSERT_CHUNK) -> Iterator[Sequence[Any]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


def _marks(count: int) -> str:
    return ", ".join(["%s"] * count)


def _err(code: WorkflowCode | RetrievalCode, message: str) -> dict[str, Any]:
    return {"err": {"error_code": str(code), "message": message, "data": None, "exception": None}}


class WorkflowSql:
    """The workflow statements for one broker (and so one database vendor)."""

    def __init__(self, broker: Broker) -> None:
        self.broker = broker
        postgres = broker.vendor == "postgresql"
        # SQLite's write lock, taken by every transaction here, already serialises them.
        self.for_update = " FOR UPDATE" if postgres else ""
        self.uuid_cast = "::uuid" if postgres else ""
        self.json = broker.json_placeholder

    def _uuid(self, value: Any) -> Any:
        return self.broker.db_uuid(value if isinstance(value, uuid.UUID) else uuid.UUID(str(value)))

    def _at(self, value: datetime | None) -> Any:
        return self.broker.db_datetime(value)

    # -- start ------------------------------------------------------------------------------

    def start(self, workflow: NewWorkflow) -> None:
        """Insert the workflow, its nodes, and the tasks of the nodes that wait for nothing, in one
        transaction (the caller's, if one is open)."""
        broker = self.broker
        roots = [node for node in workflow.nodes if not node.waits_for]
        task_ids = {node.index: new_task_id() for node in roots}
        with broker.write_transaction() as cursor:
            cursor.execute(
                f"INSERT INTO {WORKFLOW_TABLE} (id, name, definition_key, status, on_error, output_index, "
                f"success_policy, nodes_total, nodes_done, error_code, error_message, created_at, finished_at) "
                f"VALUES (%s, %s, %s, %s, %s, %s, {self.json}, %s, 0, NULL, '', %s, NULL)",
                [
                    self._uuid(workflow.id),
                    workflow.name,
                    workflow.definition_key,
                    WorkflowStatus.RUNNING.value,
                    workflow.on_error,
                    workflow.output_index,
                    None if workflow.success_policy is None else dumps(workflow.success_policy),
                    len(workflow.nodes),
                    self._at(workflow.created_at),
                ],
            )
            one = f"(%s, %s, %s, %s, %s, %s, %s, %s, {self.json}, {self.json}, {self.json}, %s, {self.json}, "
            one += f"{self.json}, %s, %s, %s, %s, %s, 0, 0, %s, NULL, NULL, NULL)"
            for chunk in _chunks(workflow.nodes, 500):
                params: list[Any] = []
                for node in chunk:
                    task_id = task_ids.get(node.index)
                    params += [
                        self._uuid(workflow.id), node.index, node.node_id, node.task_name, node.queue_name,
                        node.priority, self._at(node.good_until), node.max_retries, dumps(node.kwargs),
                        dumps(node.args_from), None if node.ctx_from is None else dumps(node.ctx_from),
                        node.wants_meta, dumps(node.waits_for), dumps(node.dependents), node.join, node.min_success,
                        node.allow_failed_deps,
                        (WorkflowTaskStatus.ENQUEUED if task_id else WorkflowTaskStatus.PENDING).value,
                        len(node.waits_for), None if task_id is None else self._uuid(task_id),
                    ]  # fmt: skip
                cursor.execute(
                    f"INSERT INTO {NODE_TABLE} ({NODE_COLUMNS}) VALUES {_marks_rows(one, len(chunk))}", params
                )
            broker.enqueue_many(
                [
                    _new_task(
                        task_ids[node.index], str(workflow.id), workflow.name, node.index, node.node_id,
                        node.task_name, node.queue_name, node.priority, node.good_until, node.max_retries,
                        node.kwargs, {}, [] if node.ctx_from is not None else None, node.wants_meta, {},
                        workflow.created_at,
                    )
                    for node in roots
                ]
            )  # fmt: skip

    # -- advancing --------------------------------------------------------------------------

    def any_active(self) -> bool:
        """Whether a workflow is RUNNING or PAUSED: only their nodes' tasks move anything."""
        with self.broker.connection.cursor() as cursor:
            cursor.execute(
                f"SELECT EXISTS (SELECT 1 FROM {WORKFLOW_TABLE} WHERE status IN (%s, %s))",
                [WorkflowStatus.RUNNING.value, WorkflowStatus.PAUSED.value],
            )
            row = cursor.fetchone()
        return bool(row and row[0])

    def advance(self, task_ids: Collection[Any], now: datetime) -> None:
        """Move the workflows whose node tasks are among `task_ids` (tasks that just changed state):
        record each ended node, count it for its dependents, skip or send those whose join rule
        is now decided, and end a workflow whose nodes have all ended. Tasks of no workflow, and
        tasks that did not end (a retry, a crash re-run), cost one indexed read."""
        if not task_ids:
            return
        ids = [self._uuid(task_id) for task_id in task_ids]
        with self.broker.connection.cursor() as cursor:
            if len(ids) <= INSERT_CHUNK:  # a finish batch: find and lock the workflows in one statement
                workflows = self._lock_where(
                    cursor,
                    f"id IN (SELECT workflow_id FROM {NODE_TABLE} WHERE status = %s "
                    f"AND task_id IN ({_marks(len(ids))}))",
                    [WorkflowTaskStatus.ENQUEUED.value, *ids],
                )
            else:
                workflow_ids: set[Any] = set()
                for chunk in _chunks(ids):
                    cursor.execute(
                        f"SELECT DISTINCT workflow_id FROM {NODE_TABLE} WHERE status = %s "
                        f"AND task_id IN ({_marks(len(chunk))})",
                        [WorkflowTaskStatus.ENQUEUED.value, *chunk],
                    )
                    workflow_ids.update(row[0] for row in cursor.fetchall())
                workflows = self._lock(cursor, sorted(workflow_ids, key=str)) if workflow_ids else []
            if not workflows:
                return
            ended = self._record_ended(cursor, ids)
            for workflow in workflows:
                if ended.get(workflow.id):
                    self._advance_one(cursor, workflow, ended[workflow.id], now)

    def _lock(self, cursor: Any, workflow_ids: Sequence[Any]) -> list[_Locked]:
        return self._lock_where(cursor, f"id IN ({_marks(len(workflow_ids))})", list(workflow_ids))

    def _lock_where(self, cursor: Any, condition: str, params: list[Any]) -> list[_Locked]:
        """Read and lock workflow rows, in id order so that two transactions never wait on each other."""
        cursor.execute(
            f"SELECT id, name, status, on_error, nodes_total, nodes_done, output_index, success_policy "
            f"FROM {WORKFLOW_TABLE} WHERE {condition} ORDER BY id{self.for_update}",
            params,
        )
        return [
            _Locked(row[0], row[1], row[2], row[3], row[4], row[5], row[6], None if row[7] is None else loads(row[7]))
            for row in cursor.fetchall()
        ]

    def _record_ended(self, cursor: Any, task_ids: Sequence[Any]) -> dict[Any, list[tuple[int, bool, list[int]]]]:
        """Copy the outcome of each ended task onto its node (its workflow is locked already);
        return, by workflow, each ended node's index, whether it succeeded, and its dependents.
        The nodes are found through their unique `task_id`, whatever the planner's statistics say."""
        terminal = [status.value for status in TERMINAL_STATUSES]
        node = NODE_TABLE
        ended: dict[Any, list[tuple[int, bool, list[int]]]] = {}
        for chunk in _chunks(task_ids):
            cursor.execute(
                f"UPDATE {node} SET status = CASE WHEN t.status = %s THEN %s ELSE %s END, result = t.result, "
                f"error_code = t.error_code, finished_at = t.finished_at FROM {TASK_TABLE} AS t "
                f"WHERE {node}.task_id IN ({_marks(len(chunk))}) AND t.id = {node}.task_id AND {node}.status = %s "
                f"AND t.status IN ({_marks(len(terminal))}) "
                f"RETURNING {node}.workflow_id, {node}.node_index, {node}.status, {node}.dependents",
                [
                    TaskStatus.COMPLETED.value, WorkflowTaskStatus.COMPLETED.value, WorkflowTaskStatus.FAILED.value,
                    *chunk, WorkflowTaskStatus.ENQUEUED.value, *terminal,
                ],
            )  # fmt: skip
            for workflow_id, index, status, dependents in cursor.fetchall():
                ok = status == WorkflowTaskStatus.COMPLETED
                ended.setdefault(workflow_id, []).append((index, ok, loads(dependents)))
        return ended

    def _advance_one(
        self, cursor: Any, workflow: _Locked, ended: list[tuple[int, bool, list[int]]], now: datetime
    ) -> None:
        failed = any(not ok for _, ok, _ in ended)
        if failed and workflow.on_error == OnError.PAUSE and workflow.status == WorkflowStatus.RUNNING:
            workflow.status = WorkflowStatus.PAUSED.value
            self.broker.notify_done(cursor, [str(uuid.UUID(str(workflow.id)))])  # get() answers WORKFLOW_PAUSED
        done = len(ended) + self._propagate(cursor, workflow, ended, now)
        cursor.execute(
            f"UPDATE {WORKFLOW_TABLE} SET nodes_done = nodes_done + %s, status = %s WHERE id = %s",
            [done, workflow.status, workflow.id],
        )
        workflow.nodes_done += done
        if workflow.status == WorkflowStatus.RUNNING and workflow.nodes_done >= workflow.nodes_total:
            self._finalize(cursor, workflow, now)

    def _propagate(
        self, cursor: Any, workflow: _Locked, ended: list[tuple[int, bool, list[int]]], now: datetime
    ) -> int:
        """Count `ended` nodes for their dependents, then settle every dependent whose join rule is
        decided: skipped ones are counted for theirs in turn. Returns how many nodes were skipped."""
        skipped_total = 0
        ready: list[Any] = []
        node = NODE_TABLE
        while ended:
            counts: dict[int, list[int]] = {}
            for _, ok, dependents in ended:
                for index in dependents:
                    count = counts.setdefault(index, [0, 0])
                    count[0] += 1
                    count[1] += int(ok)
            if not counts:
                break
            rows: list[Sequence[Any]] = []
            items = sorted(counts.items())
            for chunk in _chunks(items, 500):
                cursor.execute(
                    f"WITH v(node_index, ended, ok) AS (VALUES {_marks_rows('(%s, %s, %s)', len(chunk))}) "
                    f"UPDATE {node} SET deps_ended = deps_ended + v.ended, deps_succeeded = deps_succeeded + v.ok "
                    f"FROM v WHERE {node}.workflow_id = %s AND {node}.node_index = v.node_index AND {node}.status = %s "
                    f"RETURNING {node}.id, {node}.node_index, {node}.join_rule, {node}.min_success, "
                    f"{node}.allow_failed_deps, {node}.deps_total, {node}.deps_ended, {node}.deps_succeeded, "
                    f"{node}.dependents",
                    [v for index, (e, s) in chunk for v in (index, e, s)]
                    + [workflow.id, WorkflowTaskStatus.PENDING.value],
                )
                rows += cursor.fetchall()
            skipped: list[tuple[Any, int, list[int]]] = []
            for db_id, index, join, min_success, allow_failed, total, ended_count, succeeded, dependents in rows:
                verdict = _verdict(join, min_success, bool(allow_failed), total, ended_count, succeeded)
                if verdict is True:
                    ready.append(db_id)
                elif verdict is False:
                    skipped.append((db_id, index, loads(dependents)))
            if skipped:
                envelope = _err(WorkflowCode.UPSTREAM_SKIPPED, "a node this one waits for failed or was skipped")
                for chunk in _chunks([db_id for db_id, _, _ in skipped]):
                    cursor.execute(
                        f"UPDATE {node} SET status = %s, result = {self.json}, error_code = %s, finished_at = %s "
                        f"WHERE id IN ({_marks(len(chunk))})",
                        [
                            WorkflowTaskStatus.SKIPPED.value, dumps(envelope), WorkflowCode.UPSTREAM_SKIPPED.value,
                            self._at(now), *chunk,
                        ],
                    )  # fmt: skip
            skipped_total += len(skipped)
            ended = [(index, False, dependents) for _, index, dependents in skipped]
        if ready:
            if workflow.status == WorkflowStatus.RUNNING:
                self._send_nodes(cursor, workflow, ready, now)
            else:  # paused: they start on resume()
                for chunk in _chunks(ready):
                    cursor.execute(
                        f"UPDATE {node} SET status = %s WHERE id IN ({_marks(len(chunk))})",
                        [WorkflowTaskStatus.READY.value, *chunk],
                    )
        return skipped_total

    def _send_nodes(self, cursor: Any, workflow: _Locked, node_ids: Sequence[Any], now: datetime) -> None:
        """Send the tasks of these (ready) nodes, with their upstream results as arguments."""
        node = NODE_TABLE
        rows: list[Sequence[Any]] = []
        for chunk in _chunks(node_ids):
            cursor.execute(f"SELECT {_ENQUEUE_COLUMNS} FROM {node} WHERE id IN ({_marks(len(chunk))})", list(chunk))
            rows += cursor.fetchall()
        upstream: set[int] = set()
        for row in rows:
            upstream.update(loads(row[9]).values())
            upstream.update(loads(row[10]) or [])
        results: dict[int, tuple[str, Any]] = {}
        for chunk in _chunks(sorted(upstream)):
            cursor.execute(
                f"SELECT node_index, node_id, result FROM {node} WHERE workflow_id = %s "
                f"AND node_index IN ({_marks(len(chunk))})",
                [workflow.id, *chunk],
            )
            results.update({r[0]: (r[1], None if r[2] is None else loads(r[2])) for r in cursor.fetchall()})
        tasks: list[NewTask] = []
        assigned: list[tuple[Any, str]] = []
        for db_id, index, node_id, name, queue, priority, good_until, retries, kwargs, args_from, ctx, meta in rows:
            task_id = new_task_id()
            ctx_from = None if ctx is None else loads(ctx)
            tasks.append(
                _new_task(
                    task_id, str(uuid.UUID(str(workflow.id))), workflow.name, index, node_id, name, queue, priority,
                    self.broker.py_datetime(good_until), retries, loads(kwargs), loads(args_from), ctx_from,
                    bool(meta), results, now,
                )
            )  # fmt: skip
            assigned.append((db_id, str(task_id)))
        self.broker.enqueue_many(tasks)
        for chunk in _chunks(assigned, 500):
            cursor.execute(
                f"WITH v(id, task_id) AS (VALUES {_marks_rows('(%s, %s)', len(chunk))}) "
                f"UPDATE {node} SET status = %s, task_id = v.task_id{self.uuid_cast} FROM v WHERE {node}.id = v.id",
                [v for db_id, task_id in chunk for v in (db_id, self._uuid(task_id))]
                + [WorkflowTaskStatus.ENQUEUED.value],
            )

    def _finalize(self, cursor: Any, workflow: _Locked, now: datetime) -> None:
        """Every node has ended: the workflow COMPLETED, or FAILED with why."""
        cursor.execute(
            f"SELECT node_index, node_id, status, error_code FROM {NODE_TABLE} WHERE workflow_id = %s "
            "ORDER BY node_index",
            [workflow.id],
        )
        nodes = cursor.fetchall()
        status_of = {row[0]: row[2] for row in nodes}
        code: WorkflowCode | None = None
        message = ""
        policy = workflow.success_policy
        if policy is not None:
            if not any(all(status_of.get(i) == WorkflowTaskStatus.COMPLETED for i in case) for case in policy["cases"]):
                code = WorkflowCode.WORKFLOW_SUCCESS_CASE_NOT_MET
                message = "no success case had all its required nodes completed"
        else:
            failed = [row for row in nodes if row[2] == WorkflowTaskStatus.FAILED]
            if failed:
                code = WorkflowCode.WORKFLOW_FAILED
                message = f"{len(failed)} node(s) failed; the first, {failed[0][1]!r}, with {failed[0][3]}"
        status = WorkflowStatus.COMPLETED if code is None else WorkflowStatus.FAILED
        cursor.execute(
            f"UPDATE {WORKFLOW_TABLE} SET status = %s, error_code = %s, error_message = %s, finished_at = %s "
            "WHERE id = %s",
            [status.value, None if code is None else code.value, message, self._at(now), workflow.id],
        )
        workflow.status = status.value
        self.broker.notify_done(cursor, [str(uuid.UUID(str(workflow.id)))])

    # -- operations ---------------------------------------------------------------------------

    def pause(self, workflow_id: uuid.UUID) -> bool:
        """RUNNING -> PAUSED: nodes already sent run on; no other node is sent until resume()."""
        with self.broker.write_transaction() as cursor:
            cursor.execute(
                f"UPDATE {WORKFLOW_TABLE} SET status = %s WHERE id = %s AND status = %s RETURNING id",
                [WorkflowStatus.PAUSED.value, self._uuid(workflow_id), WorkflowStatus.RUNNING.value],
            )
            paused = cursor.fetchone() is not None
            if paused:
                self.broker.notify_done(cursor, [str(workflow_id)])  # get() answers WORKFLOW_PAUSED
            return paused

    def resume(self, workflow_id: uuid.UUID, now: datetime) -> bool:
        """PAUSED -> RUNNING: send the nodes that became ready meanwhile; end the workflow if
        every node has ended."""
        with self.broker.write_transaction() as cursor:
            locked = self._lock(cursor, [self._uuid(workflow_id)])
            if not locked or locked[0].status != WorkflowStatus.PAUSED:
                return False
            workflow = locked[0]
            workflow.status = WorkflowStatus.RUNNING.value
            cursor.execute(f"UPDATE {WORKFLOW_TABLE} SET status = %s WHERE id = %s", [workflow.status, workflow.id])
            cursor.execute(
                f"SELECT id FROM {NODE_TABLE} WHERE workflow_id = %s AND status = %s",
                [workflow.id, WorkflowTaskStatus.READY.value],
            )
            ready = [row[0] for row in cursor.fetchall()]
            if ready:
                self._send_nodes(cursor, workflow, ready, now)
            if workflow.nodes_done >= workflow.nodes_total:
                self._finalize(cursor, workflow, now)
            return True

    def cancel(self, workflow_id: uuid.UUID, now: datetime, cancelled_task_result: dict[str, Any]) -> bool:
        """End the workflow CANCELLED: nodes not ended are skipped, and their tasks cancelled (a
        task another worker is finishing at this moment is left to finish; its result is kept)."""
        node = NODE_TABLE
        with self.broker.write_transaction() as cursor:
            locked = self._lock(cursor, [self._uuid(workflow_id)])
            if not locked or locked[0].status not in (WorkflowStatus.RUNNING, WorkflowStatus.PAUSED):
                return False
            workflow = locked[0]
            envelope = _err(WorkflowCode.WORKFLOW_CANCELLED, "the workflow was cancelled")
            open_statuses = [WorkflowTaskStatus.PENDING.value, WorkflowTaskStatus.READY.value]
            open_statuses.append(WorkflowTaskStatus.ENQUEUED.value)
            cursor.execute(
                f"UPDATE {node} SET status = %s, result = {self.json}, error_code = %s, finished_at = %s "
                f"WHERE workflow_id = %s AND status IN ({_marks(len(open_statuses))}) RETURNING task_id",
                [
                    WorkflowTaskStatus.SKIPPED.value, dumps(envelope), WorkflowCode.WORKFLOW_CANCELLED.value,
                    self._at(now), workflow.id, *open_statuses,
                ],
            )  # fmt: skip
            task_ids = [uuid.UUID(str(row[0])) for row in cursor.fetchall() if row[0] is not None]
            cursor.execute(
                f"UPDATE {WORKFLOW_TABLE} SET status = %s, error_code = %s, error_message = %s, finished_at = %s, "
                "nodes_done = nodes_total WHERE id = %s",
                [
                    WorkflowStatus.CANCELLED.value, WorkflowCode.WORKFLOW_CANCELLED.value, "cancelled",
                    self._at(now), workflow.id,
                ],
            )  # fmt: skip
            if task_ids:
                self.broker.cancel(task_ids, now=now, result=cancelled_task_result, message="workflow cancelled")
            self.broker.notify_done(cursor, [str(uuid.UUID(str(workflow.id)))])
            return True

    # -- retention ----------------------------------------------------------------------------

    def prune(self, cursor: Any, *, completed_before: datetime, failed_before: datetime, limit: int) -> int:
        """Delete up to `limit` ended workflows, with their nodes, finished before the cutoffs."""
        cursor.execute(
            f"SELECT id FROM {WORKFLOW_TABLE} WHERE (status = %s AND finished_at < %s) "
            f"OR (status IN (%s, %s, %s) AND finished_at < %s) LIMIT %s{self.broker.lock_rows}",
            [
                WorkflowStatus.COMPLETED.value, self._at(completed_before), WorkflowStatus.FAILED.value,
                WorkflowStatus.CANCELLED.value, WorkflowStatus.EXPIRED.value, self._at(failed_before), limit,
            ],
        )  # fmt: skip
        ids = [row[0] for row in cursor.fetchall()]
        if ids:
            cursor.execute(f"DELETE FROM {NODE_TABLE} WHERE workflow_id IN ({_marks(len(ids))})", ids)
            cursor.execute(f"DELETE FROM {WORKFLOW_TABLE} WHERE id IN ({_marks(len(ids))})", ids)
        return len(ids)


def _marks_rows(row: str, count: int) -> str:
    return ", ".join([row] * count)


def _verdict(
    join: str, min_success: int | None, allow_failed: bool, total: int, ended: int, succeeded: int
) -> bool | None:
    """True: run now; False: skip (UPSTREAM_SKIPPED); None: wait for more dependencies."""
    if join == Join.ANY:
        if succeeded >= 1:
            return True
        return None if ended < total else allow_failed
    if join == Join.QUORUM:
        needed = min_success or total
        if succeeded >= needed:
            return True
        if succeeded + (total - ended) < needed:
            return None if allow_failed and ended < total else allow_failed
        return None
    if ended < total:
        return None
    return succeeded == total or allow_failed


def _new_task(
    task_id: uuid.UUID,
    workflow_id: str,
    workflow_name: str,
    index: int,
    node_id: str,
    task_name: str,
    queue_name: str,
    priority: int,
    good_until: datetime | None,
    max_retries: int,
    kwargs: dict[str, Any],
    args_from: dict[str, int],
    ctx_from: list[int] | None,
    wants_meta: bool,
    results: dict[int, tuple[str, Any]],
    now: datetime,
) -> NewTask:
    """A node's task row: its static arguments, each `args_from` parameter given the upstream
    node's stored TaskResult envelope (which a `TaskResult[T, TaskError]` parameter decodes), and
    the workflow's context and ids for the parameters that ask for them."""
    arguments = dict(kwargs)
    for param, upstream in args_from.items():
        envelope = results.get(upstream, ("", None))[1]
        arguments[param] = envelope or _err(RetrievalCode.RESULT_NOT_AVAILABLE, "the upstream node had not ended")
    meta = {"workflow_id": workflow_id, "workflow_name": workflow_name, "node_id": node_id, "node_index": index}
    if ctx_from is not None:
        ctx_results = {results[i][0]: results[i][1] for i in ctx_from if i in results and results[i][1] is not None}
        arguments[CTX_PARAM] = {**meta, "results": ctx_results}
    if wants_meta:
        arguments[META_PARAM] = {**meta, "task_id": str(task_id)}
    return NewTask(
        id=task_id,
        name=task_name,
        queue_name=queue_name,
        priority=priority,
        arguments_json=dumps(arguments),
        run_at=now,
        enqueued_at=now,
        good_until=good_until,
        max_retries=max_retries,
    )


def advance_workflows(broker: Broker, task_ids: Collection[Any], now: datetime | None = None) -> None:
    """The hook the broker calls inside the transaction that ended (or re-queued) `task_ids`."""
    from django.utils import timezone

    WorkflowSql(broker).advance(task_ids, now or timezone.now())
