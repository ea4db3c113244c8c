"""`WorkflowHandle`: a started workflow's status, results, and pause / resume / cancel.

Reads go through the ORM; every write is a `broker.workflows` statement. Nothing here raises for
an expected failure: operations return `Err(HandleOperationError)`, and `get()` / `result_for()`
fold errors into a `TaskResult(err=TaskError(...))`, as `TaskHandle.get()` does.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from asgiref.sync import sync_to_async
from django.utils import timezone

from ..conf import get_settings
from ..types.codec import CodecError, decode_result, encode_error
from ..types.codes import OperationalErrorCode, OutcomeCode, RetrievalCode, WorkflowCode
from ..types.results import Err, Ok, TaskError, TaskResult
from .enums import NODE_TERMINAL_STATUSES, WORKFLOW_TERMINAL_STATUSES, WorkflowStatus

if TYPE_CHECKING:
    from ..app import Horsies
    from .models import Workflow, WorkflowNode
    from .spec import TaskNode, WorkflowSpec

logger = logging.getLogger("horsies_django")

T = TypeVar("T")


class HandleErrorCode(StrEnum):
    WORKFLOW_NOT_FOUND = "WORKFLOW_NOT_FOUND"
    DB_OPERATION_FAILED = "DB_OPERATION_FAILED"
    INTERNAL_FAILED = "INTERNAL_FAILED"


@dataclass(frozen=True, slots=True)
class HandleOperationError:
    code: HandleErrorCode
    message: str
    workflow_id: str


HandleResult = Ok[T] | Err[HandleOperationError]


@dataclass(frozen=True, slots=True)
class WorkflowTaskInfo:
    """One node of a workflow, as `handle.tasks()` reports it."""

    node_id: str
    index: int
    task_name: str
    status: str
    task_id: str | None
    error_code: str | None


class _NotFoundError(Exception):
    pass


class WorkflowHandle(Generic[T]):
    """A started workflow. `get()` waits for its result: the output node's `TaskResult`, or
    `TaskResult(ok={node_id: TaskResult | None})` for a workflow without `output`."""

    __slots__ = ("workflow_id", "_app", "_spec")

    def __init__(self, workflow_id: str, *, app: Horsies | None = None, spec: WorkflowSpec[T] | None = None) -> None:
        self.workflow_id = str(workflow_id)
        self._app = app
        self._spec = spec

    def __repr__(self) -> str:
        return f"WorkflowHandle(workflow_id={self.workflow_id!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, WorkflowHandle) and other.workflow_id == self.workflow_id

    def __hash__(self) -> int:
        return hash(self.workflow_id)

    # -- reading ----------------------------------------------------------------------------

    def _uuid(self) -> uuid.UUID:
        try:
            return uuid.UUID(self.workflow_id)
        except (ValueError, TypeError, AttributeError):
            raise _NotFoundError(f"{self.workflow_id!r} is not a workflow id") from None

    def _row(self) -> Workflow:
        from .models import Workflow

        row = Workflow.objects.using(get_settings().database).filter(pk=self._uuid()).first()
        if row is None:
            raise _NotFoundError(f"no workflow with id {self.workflow_id}")
        return row

    def _nodes(self) -> list[WorkflowNode]:
        from .models import WorkflowNode

        return list(
            WorkflowNode.objects.using(get_settings().database).filter(workflow_id=self._uuid()).order_by("node_index")
        )

    def _operation(self, fn: Any) -> HandleResult[Any]:
        try:
            return Ok(fn())
        except _NotFoundError as exc:
            return Err(HandleOperationError(HandleErrorCode.WORKFLOW_NOT_FOUND, str(exc), self.workflow_id))
        except Exception as exc:
            logger.warning("workflow operation failed id=%s: %s", self.workflow_id, exc)
            return Err(
                HandleOperationError(HandleErrorCode.DB_OPERATION_FAILED, f"database error: {exc}", self.workflow_id)
            )

    def status(self) -> HandleResult[WorkflowStatus]:
        return self._operation(lambda: WorkflowStatus(self._row().status))

    def _decode(self, node: WorkflowNode) -> TaskResult[Any, TaskError] | None:
        if node.result is None:
            return None
        task = self._app.get_task(node.task_name) if self._app is not None else None
        try:
            return decode_result(node.result, task.signature.ok_adapter if task else None)
        except CodecError as exc:
            return _error(OperationalErrorCode.RESULT_DESERIALIZATION_ERROR, str(exc))

    def results(self) -> HandleResult[dict[str, TaskResult[Any, TaskError] | None]]:
        """Each node's `TaskResult` by node id; None for a node that has not ended."""
        return self._operation(lambda: {node.node_id: self._decode(node) for node in self._nodes_checked()})

    def _nodes_checked(self) -> list[WorkflowNode]:
        nodes = self._nodes()
        if not nodes:
            self._row()  # raises _NotFoundError for an unknown id
        return nodes

    def tasks(self) -> HandleResult[list[WorkflowTaskInfo]]:
        """Every node with its status and the id of its task once sent."""
        return self._operation(
            lambda: [
                WorkflowTaskInfo(
                    node_id=node.node_id,
                    index=node.node_index,
                    task_name=node.task_name,
                    status=node.status,
                    task_id=None if node.task_id is None else str(node.task_id),
                    error_code=node.error_code,
                )
                for node in self._nodes_checked()
            ]
        )

    def result_for(self, node: TaskNode[Any] | str) -> TaskResult[Any, TaskError]:
        """One node's `TaskResult` (a TaskNode of the spec, or its node id); RESULT_NOT_AVAILABLE
        while it has not ended. Never raises."""
        from .spec import TaskNode, _safe

        try:
            nodes = self._nodes_checked()
        except _NotFoundError as exc:
            return _error(WorkflowCode.WORKFLOW_NOT_FOUND, str(exc))
        except Exception as exc:
            return _error(OperationalErrorCode.BROKER_ERROR, f"database error: {exc}")
        match: list[WorkflowNode]
        if isinstance(node, TaskNode):
            wanted = node.node_id or self._spec_id(node)
            match = [n for n in nodes if n.node_id == wanted] if wanted else []
            if not match:
                match = [n for n in nodes if n.task_name == getattr(node.fn, "name", None)]
        elif isinstance(node, str):
            match = [n for n in nodes if n.node_id == node]
        else:
            match = []
        if len(match) != 1:
            return _error(RetrievalCode.RESULT_NOT_AVAILABLE, f"no single node of this workflow is {_safe(node)}")
        decoded = self._decode(match[0])
        if decoded is None or match[0].status not in NODE_TERMINAL_STATUSES:
            return _error(RetrievalCode.RESULT_NOT_AVAILABLE, f"node {match[0].node_id!r} has not ended")
        return decoded

    def _spec_id(self, node: TaskNode[Any]) -> str | None:
        if self._spec is None or not isinstance(self._spec.tasks, list):
            return None
        for index, candidate in enumerate(self._spec.tasks):
            if candidate is node:
                return self._spec.node_ids().get(index)
        return None

    def _poll(self) -> TaskResult[T, TaskError] | None:
        """One look: the workflow's result once it has ended (or is paused), else None."""
        try:
            row = self._row()
            if row.status not in WORKFLOW_TERMINAL_STATUSES and row.status != WorkflowStatus.PAUSED:
                return None
            return self._final(row)
        except _NotFoundError as exc:
            return _error(WorkflowCode.WORKFLOW_NOT_FOUND, str(exc))
        except Exception as exc:
            logger.warning("workflow lookup failed id=%s: %s", self.workflow_id, exc)
            return _error(OperationalErrorCode.BROKER_ERROR, f"database error: {exc}")

    def _final(self, row: Workflow) -> TaskResult[Any, TaskError]:
        if row.status == WorkflowStatus.PAUSED:
            return _error(WorkflowCode.WORKFLOW_PAUSED, f"workflow {row.id} is paused; resume() or cancel() it")
        if row.status == WorkflowStatus.CANCELLED:
            return _error(WorkflowCode.WORKFLOW_CANCELLED, f"workflow {row.id} was cancelled")
        if row.status != WorkflowStatus.COMPLETED:
            code = WorkflowCode.WORKFLOW_SUCCESS_CASE_NOT_MET
            if row.error_code != code:
                code = WorkflowCode.WORKFLOW_FAILED
            return _error(code, row.error_message or f"workflow {row.id} {row.status.lower()}")
        nodes = self._nodes()
        if row.output_index is not None:
            output = [node for node in nodes if node.node_index == row.output_index]
            decoded = self._decode(output[0]) if output else None
            if decoded is None:
                return _error(RetrievalCode.RESULT_NOT_AVAILABLE, "the output node has no result")
            return decoded
        return TaskResult(ok={node.node_id: self._decode(node) for node in nodes})

    def get(self, timeout_ms: int | None = None) -> TaskResult[T, TaskError]:
        """Wait up to `timeout_ms` (None: no limit) for the workflow to end; its result, or
        WAIT_TIMEOUT (the workflow may still run), or WORKFLOW_PAUSED while it is paused. On
        PostgreSQL the wait listens for the NOTIFY of the transaction that ended it."""
        from ..app import wait_for_result

        return wait_for_result(
            self.workflow_id,
            self._poll,
            timeout_ms,
            timed_out=lambda: self._timed_out(timeout_ms),
            failed=lambda exc: _error(OperationalErrorCode.BROKER_ERROR, f"database error: {exc}"),
        )

    def _timed_out(self, timeout_ms: int | None) -> TaskResult[T, TaskError]:
        return _error(
            RetrievalCode.WAIT_TIMEOUT,
            f"workflow {self.workflow_id} did not finish within {timeout_ms} ms; it may still run",
        )

    # -- operating --------------------------------------------------------------------------

    def _sql(self) -> Any:
        from ..broker import get_broker
        from ..broker.workflows import WorkflowSql

        return WorkflowSql(get_broker())

    def _changed(self, changed: bool) -> bool:
        if not changed:
            self._row()  # an unknown id is WORKFLOW_NOT_FOUND, not "nothing to do"
        return changed

    def pause(self) -> HandleResult[bool]:
        """Hold a RUNNING workflow: nodes already sent run on, no other node starts. Ok(True) if
        this call paused it; Ok(False) if it was not running."""
        return self._operation(lambda: self._changed(self._sql().pause(self._uuid())))

    def resume(self) -> HandleResult[bool]:
        """Carry on with a PAUSED workflow: nodes that became ready meanwhile start now."""
        return self._operation(lambda: self._changed(self._sql().resume(self._uuid(), timezone.now())))

    def cancel(self) -> HandleResult[bool]:
        """End a running or paused workflow CANCELLED: nodes not ended are skipped and their tasks
        cancelled. Ok(False) if it had already ended."""
        result = {"err": encode_error(TaskError(error_code=OutcomeCode.TASK_CANCELLED, message="workflow cancelled"))}
        return self._operation(lambda: self._changed(self._sql().cancel(self._uuid(), timezone.now(), result)))

    # -- async twins ----------------------------------------------------------------------------

    async def status_async(self) -> HandleResult[WorkflowStatus]:
        return await sync_to_async(self.status, thread_sensitive=True)()

    async def results_async(self) -> HandleResult[dict[str, TaskResult[Any, TaskError] | None]]:
        return await sync_to_async(self.results, thread_sensitive=True)()

    async def tasks_async(self) -> HandleResult[list[WorkflowTaskInfo]]:
        return await sync_to_async(self.tasks, thread_sensitive=True)()

    async def result_for_async(self, node: TaskNode[Any] | str) -> TaskResult[Any, TaskError]:
        return await sync_to_async(self.result_for, thread_sensitive=True)(node)

    async def pause_async(self) -> HandleResult[bool]:
        return await sync_to_async(self.pause, thread_sensitive=True)()

    async def resume_async(self) -> HandleResult[bool]:
        return await sync_to_async(self.resume, thread_sensitive=True)()

    async def cancel_async(self) -> HandleResult[bool]:
        return await sync_to_async(self.cancel, thread_sensitive=True)()

    async def get_async(self, timeout_ms: int | None = None) -> TaskResult[T, TaskError]:
        """`get()` for an event loop: polls without holding a thread."""
        from ..app import wait_for_result_async

        return await wait_for_result_async(self._poll, timeout_ms, timed_out=lambda: self._timed_out(timeout_ms))


def _error(code: Any, message: str) -> TaskResult[Any, TaskError]:
    return TaskResult(err=TaskError(error_code=code, message=message))
