"""Failed tasks as Sentry events: one event per failure, tagged with the task.

    import sentry_sdk
    from horsies_django.contrib.sentry import HorsiesIntegration

    sentry_sdk.init(dsn=..., integrations=[HorsiesIntegration(ignore_codes=["OUT_OF_STOCK"])])

Call `sentry_sdk.init` in settings (or wherever the web process and `horsies_worker` both run it).
The worker sends `task_failed` after storing the failure; this integration turns it into an event
with the tags `task_name`, `task_id`, `queue`, `error_code`, and the task's traceback as the stack.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, cast

import sentry_sdk
from sentry_sdk.integrations import Integration

from .. import signals
from ..types.codes import BUILTIN_CODES
from ..types.results import TaskError

if TYPE_CHECKING:
    from sentry_sdk._types import Event

# One frame of a formatted Python traceback, with the source line when there is one.
_FRAME = re.compile(r'^  File "(?P<file>[^"]+)", line (?P<line>\d+), in (?P<func>.+)\n(?:    (?P<code>.+)\n)?', re.M)


class HorsiesIntegration(Integration):
    """Report each task that ends FAILED; `ignore_codes` leaves out expected failures.

    `report_returned_errors=False` reports only failures nothing returned: raised exceptions and
    operational errors (timeouts, crashes), not the `TaskError`s tasks return on purpose."""

    identifier = "horsies_django"

    def __init__(self, ignore_codes: Iterable[str] = (), *, report_returned_errors: bool = True) -> None:
        self.ignore_codes = frozenset(str(code) for code in ignore_codes)
        self.report_returned_errors = report_returned_errors

    @staticmethod
    def setup_once() -> None:
        signals.task_failed.connect(_report, weak=False, dispatch_uid="horsies_django.contrib.sentry")


def _report(sender: Any, *, task_id: str, task_name: str, queue_name: str, error: TaskError, **kwargs: Any) -> None:
    integration = sentry_sdk.get_client().get_integration(HorsiesIntegration)
    if integration is None:
        return  # sentry_sdk.init() was called without this integration
    code = "" if error.error_code is None else str(error.error_code)
    raised = error.exception if isinstance(error.exception, dict) else {}
    returned = not raised and code not in BUILTIN_CODES
    if code in integration.ignore_codes or (returned and not integration.report_returned_errors):
        return
    traceback = str(kwargs.get("traceback") or raised.get("traceback") or "")
    exception_type = raised.get("type") or code or "TaskFailed"
    value = raised.get("message") or error.message or code
    event: dict[str, Any] = {
        "level": "error",
        "logger": "horsies_django.worker",
        "exception": {
            "values": [
                {
                    "type": exception_type,
                    "value": value,
                    "module": raised.get("module"),
                    "mechanism": {"type": "horsies_django", "handled": False},
                    "stacktrace": {"frames": _frames(traceback)},
                }
            ]
        },
        "tags": {"task_name": task_name, "task_id": task_id, "queue": queue_name, "error_code": code},
        "extra": {
            "attempt": kwargs.get("attempt"),
            "worker_id": kwargs.get("worker_id"),
            "message": error.message,
            "traceback": traceback,
        },
        # One issue per task and failure kind, not one per task id.
        "fingerprint": ["horsies_django", task_name, code, exception_type],
    }
    sentry_sdk.capture_event(cast("Event", event))


def _frames(traceback: str) -> list[dict[str, Any]]:
    """Frames parsed from a formatted traceback, oldest first as Sentry wants them."""
    return [
        {
            "filename": m["file"],
            "abs_path": m["file"],
            "lineno": int(m["line"]),
            "function": m["func"].strip(),
            "context_line": m["code"].strip() if m["code"] else None,
            "in_app": "site-packages" not in m["file"] and "/lib/python" not in m["file"],
        }
        for m in _FRAME.finditer(traceback)
    ]


__all__ = ["HorsiesIntegration"]
