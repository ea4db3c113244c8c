"""horsies_django: background tasks out of your Django project's own database.

from horsies_django import app, TaskResult, TaskError

@app.task("validate_order", queue_name="standard")
def validate_order(order: Order) -> TaskResult[ValidatedOrder, TaskError]: ...
"""

__version__ = "0.1.0"

from .app import Horsies, TaskAttemptInfo, TaskFunction, TaskHandle, TaskInfo, app
from .types.codec import TaskDefinitionError
from .types.codes import (
    BuiltInTaskCode,
    ContractCode,
    OperationalErrorCode,
    OutcomeCode,
    RetrievalCode,
    TaskSendErrorCode,
)
from .types.results import Err, Ok, Result, TaskError, TaskResult, TaskSendError, TaskSendResult
from .types.retry import RetryPolicy
from .worker.execute import TaskContext, current_task

__all__ = [
    "__version__",
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
    "TaskContext",
    "TaskDefinitionError",
    "TaskError",
    "TaskFunction",
    "TaskHandle",
    "TaskInfo",
    "TaskResult",
    "TaskSendError",
    "TaskSendErrorCode",
    "TaskSendResult",
    "app",
    "current_task",
]
