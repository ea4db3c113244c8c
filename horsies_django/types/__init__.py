"""Pure-Python types of horsies_django: results, codes and the JSON codec. Imports no Django."""

from .codes import (
    BuiltInTaskCode,
    ContractCode,
    OperationalErrorCode,
    OutcomeCode,
    RetrievalCode,
    TaskSendErrorCode,
)
from .results import (
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
from .status import TaskAttemptOutcome

__all__ = [
    "BuiltInTaskCode",
    "ContractCode",
    "Err",
    "Ok",
    "OperationalErrorCode",
    "OutcomeCode",
    "Result",
    "RetrievalCode",
    "TaskAttemptOutcome",
    "TaskError",
    "TaskResult",
    "TaskSendError",
    "TaskSendErrorCode",
    "TaskSendPayload",
    "TaskSendResult",
    "is_err",
    "is_ok",
]
