"""horsies_django: background tasks out of your Django project's own database.

from horsies_django import app, TaskResult, TaskError

@app.task("validate_order", queue_name="standard")
def validate_order(order: Order) -> TaskResult[ValidatedOrder, TaskError]: ...
"""

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

__all__ = [
    "TASK_TERMINAL_STATES",
    "BuiltInTaskCode",
    "ContractCode",
    "Err",
    "Horsies",
    "Ok",
    "OperationalErrorCode",
    "OutcomeCode",
    "Result",
    "RetrievalCode",
    "RetryPolicy",
    "TaskAttemptInfo",
    "TaskAttemptOutcome",
    "TaskContext",
    "TaskDefinitionError",
    "TaskError",
    "TaskFunction",
    "TaskHandle",
    "TaskInfo",
    "TaskResult",
    "TaskSendError",
    "TaskSendErrorCode",
    "TaskSendPayload",
    "TaskSendResult",
    "TaskStatus",
    "app",
    "current_task",
    "is_err",
    "is_ok",
    "suppress_sends",
]
