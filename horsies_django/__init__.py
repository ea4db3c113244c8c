"""horsies_django: background tasks out of your Django project's own database.

from horsies_django import app, TaskResult, TaskError

@app.task("validate_order", queue_name="standard")
def validate_order(order: Order) -> TaskResult[ValidatedOrder, TaskError]: ...
"""

__version__ = "0.1.0"

from .app import Horsies, TaskAttemptInfo, TaskFunction, TaskHandle, TaskInfo, app, suppress_sends
from .statuses import ENDED as TASK_TERMINAL_STATES
from .statuses import TaskStatus
from .types.codec import TaskDefinitionError
from .types.codes import (
    BuiltInTaskCode,
    ContractCode,
    OperationalErrorCode,
    OutcomeCode,
    RetrievalCode,
    TaskSendErrorCode,
    WorkflowCode,
)
from .types.results import (
    Err,
    Ok,
    Result,
    TaskError,
    TaskResult,
    TaskSendError,
    TaskSendPayload,
    TaskSendResult,
    is_err,
    is_ok,
)
from .types.retry import RetryPolicy
from .types.status import TaskAttemptOutcome
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
    "BuiltInTaskCode",
    "ContractCode",
    "Err",
    "HandleErrorCode",
    "HandleOperationError",
    "Horsies",
    "Ok",
    "OnError",
    "OperationalErrorCode",
    "OutcomeCode",
    "Result",
    "RetrievalCode",
    "RetryPolicy",
    "SuccessCase",
    "SuccessPolicy",
    "TaskAttemptInfo",
    "TaskAttemptOutcome",
    "TaskContext",
    "TaskDefinitionError",
    "TaskError",
    "TaskFunction",
    "TaskHandle",
    "TaskInfo",
    "TaskNode",
    "FromNode",
    "from_node",
    "TaskResult",
    "TaskSendError",
    "TaskSendErrorCode",
    "TaskSendPayload",
    "TaskSendResult",
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
    "is_err",
    "is_ok",
    "suppress_sends",
]
