"""horsies_django: background tasks out of your Django project's own database.

from horsies_django import app, TaskResult, TaskError

@app.task("validate_order", queue_name="standard")
def validate_order(order: Order) -> TaskResult[ValidatedOrder, TaskError]: ...
"""

__version__ = "0.1.0"

from . import types
from .app import Horsies, TaskAttemptInfo, TaskFunction, TaskHandle, TaskInfo, app, suppress_sends
from .statuses import ENDED as TASK_TERMINAL_STATES
from .statuses import TaskStatus
from .types import *  # noqa: F403  (the result types and codes; their list is types.__all__)
from .types.codec import TaskDefinitionError
from .types.codes import WorkflowCode
from .types.retry import RetryPolicy
from .worker.execute import TaskContext, current_task
from .workflows.context import WorkflowContext, WorkflowMeta
from .workflows.enums import OnError, WorkflowStatus, WorkflowTaskStatus
from .workflows.handle import HandleErrorCode, HandleOperationError, WorkflowHandle, WorkflowTaskInfo
from .workflows.spec import (
    FromNode,
    SuccessCase,
    SuccessPolicy,
    TaskNode,
    WorkflowDefinition,
    WorkflowSpec,
    WorkflowStartError,
    WorkflowStartErrorCode,
    from_node,
)

__all__ = [
    "TASK_TERMINAL_STATES",
    "__version__",
    "HandleErrorCode",
    "HandleOperationError",
    "Horsies",
    "OnError",
    "RetryPolicy",
    "SuccessCase",
    "SuccessPolicy",
    "TaskAttemptInfo",
    "TaskContext",
    "TaskDefinitionError",
    "TaskFunction",
    "TaskHandle",
    "TaskInfo",
    "TaskNode",
    "FromNode",
    "from_node",
    "TaskStatus",
    "WorkflowCode",
    "WorkflowContext",
    "WorkflowDefinition",
    "WorkflowHandle",
    "WorkflowMeta",
    "WorkflowSpec",
    "WorkflowStartError",
    "WorkflowStartErrorCode",
    "WorkflowStatus",
    "WorkflowTaskInfo",
    "WorkflowTaskStatus",
    "app",
    "current_task",
    "suppress_sends",
]
# Re-exported as they are: types/ stays importable without Django, and its list is the one to extend.
__all__ += types.__all__
