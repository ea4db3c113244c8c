"""What a node's task may ask for: `workflow_ctx: WorkflowContext` and `workflow_meta: WorkflowMeta`.

Both are plain pydantic models, so they travel in the task's stored arguments like any other
argument, and a task that declares them with a default of None still works when sent on its own.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import BaseModel, ConfigDict

from ..types.codec import CodecError, decode_result
from ..types.codes import RetrievalCode
from ..types.results import TaskError, TaskResult

if TYPE_CHECKING:
    from .spec import TaskNode

T = TypeVar("T")


class WorkflowMeta(BaseModel):
    """Where a node's task runs: its workflow and its place in it."""

    model_config = ConfigDict(frozen=True)

    workflow_id: str
    workflow_name: str
    node_id: str
    node_index: int
    task_id: str | None = None


class WorkflowContext(BaseModel):
    """The results of the nodes named in the node's `workflow_ctx_from`, by node id."""

    model_config = ConfigDict(frozen=True)

    workflow_id: str
    workflow_name: str
    node_id: str
    node_index: int
    results: dict[str, Any] = {}

    def result_for(self, node: TaskNode[T] | str) -> TaskResult[T, TaskError]:
        """The `TaskResult` of an upstream node listed in `workflow_ctx_from`, decoded into its
        task's type; `RESULT_NOT_AVAILABLE` for a node the context does not hold. Never raises."""
        from .spec import TaskNode

        if isinstance(node, TaskNode):
            key = node.node_id or node.task.name
            adapter = node.task.signature.ok_adapter
        elif isinstance(node, str):
            key, adapter = node, None
        else:
            return TaskResult(
                err=TaskError(
                    error_code=RetrievalCode.RESULT_NOT_AVAILABLE,
                    message=f"result_for() takes a TaskNode or a node id, not {type(node).__name__}",
                )
            )
        envelope = self.results.get(key)
        if envelope is None:
            return TaskResult(
                err=TaskError(
                    error_code=RetrievalCode.RESULT_NOT_AVAILABLE,
                    message=f"the workflow context holds no result for node {key!r} (is it in workflow_ctx_from?)",
                )
            )
        try:
            return decode_result(envelope, adapter)
        except CodecError as exc:
            return TaskResult(err=TaskError(error_code=RetrievalCode.RESULT_NOT_AVAILABLE, message=str(exc)))
