"""horsies_django: background tasks out of your Django project's own database.

from horsies_django import app, TaskResult, TaskError

@app.task("validate_order", queue_name="standard")
def validate_order(order: Order) -> TaskResult[ValidatedOrder, TaskError]: ...
"""

from typing import TYPE_CHECKING, Any

from .app import Horsies, TaskAttemptInfo, TaskFunction, TaskHandle, TaskInfo, app, suppress_sends
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

if TYPE_CHECKING:  # at run time these come from __getattr__ below, once Django has loaded the apps
    from .models import TERMINAL_STATUSES as TASK_TERMINAL_STATES
    from .models import TaskStatus

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


def __getattr__(name: str) -> Any:
    # The status enum is the model's (one source of truth), and models cannot be imported while
    # Django loads this package, so these two are looked up on first use.
    if name == "TaskStatus":
        from .models import TaskStatus

        return TaskStatus
    if name == "TASK_TERMINAL_STATES":
        from .models import TERMINAL_STATUSES

        return TERMINAL_STATUSES
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
