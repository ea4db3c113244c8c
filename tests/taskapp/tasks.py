"""Tasks that produce every outcome the worker can store. Loaded by autodiscovery, like any app's."""

import os
import time
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

from horsies_django import Horsies, OutcomeCode, RetryPolicy, TaskError, TaskResult, app, current_task

from .models import Run


@dataclass
class Invoice:
    number: UUID
    issued: date
    due: datetime
    total: Decimal
    lines: list[str]


@app.task("tests.add")
def add(a: int, b: int = 0) -> TaskResult[int, TaskError]:
    return TaskResult(ok=a + b)


@app.task("tests.echo_invoice", queue_name="standard")
def echo_invoice(invoice: Invoice, extra_days: int) -> TaskResult[Invoice, TaskError]:
    return TaskResult(ok=Invoice(invoice.number, invoice.issued, invoice.due, invoice.total * 2, invoice.lines))


@app.task("tests.boom")
def boom(message: str) -> TaskResult[None, TaskError]:
    raise ValueError(message)


@app.task("tests.not_a_result")
def not_a_result() -> TaskResult[int, TaskError]:
    return 42  # type: ignore[return-value]


@app.task("tests.wrong_ok_type")
def wrong_ok_type() -> TaskResult[int, TaskError]:
    return TaskResult(ok="forty-two")  # type: ignore[arg-type]


@app.task("tests.unencodable")
def unencodable() -> TaskResult[Any, TaskError]:
    return TaskResult(ok=object())


@app.task("tests.user_error")
def user_error(code: str) -> TaskResult[int, TaskError]:
    return TaskResult(err=TaskError(error_code=code, message="refused", data={"why": code}))


@app.task("tests.record")
def record(key: str, sleep_ms: int = 0) -> TaskResult[str, TaskError]:
    if sleep_ms:
        time.sleep(sleep_ms / 1000)
    Run.objects.create(key=key, worker_pid=os.getpid())
    return TaskResult(ok=key)


@app.task("tests.sleep")
def sleep(ms: int) -> TaskResult[int, TaskError]:
    time.sleep(ms / 1000)
    return TaskResult(ok=ms)


@app.task(
    "tests.flaky",
    retry_policy=RetryPolicy.fixed([0.3, 0.6, 0.9], auto_retry_for=["FLAKY", "UNHANDLED_EXCEPTION"], jitter=False),
)
def flaky(key: str, fail_times: int, raise_instead: bool = False) -> TaskResult[int, TaskError]:
    """Fail the first `fail_times` runs for `key`, then succeed with the number of runs."""
    Run.objects.create(key=key, worker_pid=os.getpid())
    runs = Run.objects.filter(key=key).count()
    if runs <= fail_times:
        if raise_instead:
            raise RuntimeError(f"run {runs} fails")
        return TaskResult(err=TaskError(error_code="FLAKY", message=f"run {runs} fails"))
    return TaskResult(ok=runs)


@app.task(
    "tests.exponential",
    retry_policy=RetryPolicy.exponential(0.2, max_retries=2, auto_retry_for=["FLAKY"], jitter=False),
)
def exponential(key: str) -> TaskResult[int, TaskError]:
    Run.objects.create(key=key, worker_pid=os.getpid())
    return TaskResult(err=TaskError(error_code="FLAKY", message="always"))


@app.task("tests.mapped", exception_mapper={LookupError: "MISSING_KEY"})
def mapped(key: str) -> TaskResult[int, TaskError]:
    return TaskResult(ok={}[key])


@app.task("tests.timeout", timeout_ms=400)
def times_out(ms: int, key: str = "") -> TaskResult[int, TaskError]:
    time.sleep(ms / 1000)
    if key:
        Run.objects.create(key=key, worker_pid=os.getpid())
    return TaskResult(ok=ms)


@app.task(
    "tests.timeout_retried",
    timeout_ms=300,
    retry_policy=RetryPolicy.fixed([0.1], auto_retry_for=[OutcomeCode.TASK_TIMEOUT], jitter=False),
)
def timeout_retried(ms: int) -> TaskResult[int, TaskError]:
    time.sleep(ms / 1000)
    return TaskResult(ok=ms)


@app.task(
    "tests.timeout_retried_logged",
    timeout_ms=300,
    retry_policy=RetryPolicy.fixed([0.1], auto_retry_for=[OutcomeCode.TASK_TIMEOUT], jitter=False),
)
def timeout_retried_logged(ms: int, key: str) -> TaskResult[int, TaskError]:
    """`timeout_retried`, writing a Run row as each run starts and as it ends."""
    Run.objects.create(key=f"{key}:start", worker_pid=os.getpid())
    time.sleep(ms / 1000)
    Run.objects.create(key=f"{key}:end", worker_pid=os.getpid())
    return TaskResult(ok=ms)


@app.task("tests.async_add")
async def async_add(a: int, b: int) -> TaskResult[int, TaskError]:
    import asyncio

    await asyncio.sleep(0.01)
    return TaskResult(ok=a + b)


@app.task("tests.crash")
def crash(code: int) -> TaskResult[int, TaskError]:
    """End the process running it at once, as a segfault or the OOM killer would."""
    os._exit(code)


@app.task("tests.divide")
def divide(a: int, b: int) -> TaskResult[float, TaskError]:
    return TaskResult(ok=a / b)


@app.task("tests.limited", rate_limit="3/2s")
def limited(n: int) -> TaskResult[int, TaskError]:
    return TaskResult(ok=n)


@app.task(
    "tests.limited_retrying",
    rate_limit="2/1m",
    retry_policy=RetryPolicy.fixed([0.01] * 5, auto_retry_for=["FLAKY"], jitter=False),
)
def limited_retrying(n: int) -> TaskResult[int, TaskError]:
    """Always fails with a retryable code: each retry is a start the rate limit counts."""
    return TaskResult(err=TaskError(error_code="FLAKY", message=f"run of {n} fails"))


@app.task("tests.bulk_sleep", queue_name="bulk")
def bulk_sleep(ms: int) -> TaskResult[int, TaskError]:
    time.sleep(ms / 1000)
    return TaskResult(ok=ms)


@app.task("tests.exits")
def exits() -> TaskResult[int, TaskError]:
    import sys

    sys.exit(3)


@app.task("tests.whoami")
def whoami() -> TaskResult[dict[str, Any], TaskError]:
    context = current_task()
    assert context is not None
    return TaskResult(ok={"id": context.task_id, "attempt": context.attempt, "token": context.claim_token})


# A separate registry: its tasks can be sent, but no worker (which uses `app`) knows them.
elsewhere = Horsies()


@elsewhere.task("tests.known_nowhere")
def known_nowhere() -> TaskResult[int, TaskError]:
    return TaskResult(ok=1)


@app.task("tests.scheduled_probe")
def scheduled_probe(scheduled_at: datetime, label: str = "") -> TaskResult[str, TaskError]:
    """Sent by the schedules in tests/integration/test_schedules.py; the scheduler fills `scheduled_at`."""
    return TaskResult(ok=f"{label} {scheduled_at.isoformat()}")


from . import hostile  # noqa: E402, F401  (registers the tasks of the hostile-outcome tests)


# horsies' "Don't call .send() at module level": autodiscovery imports this module with sends
# suppressed, so this is Err(SEND_SUPPRESSED) and writes nothing, in the test process and in every
# worker process and child (tests/integration/test_horsies_compat.py checks both).
@app.task("tests.import_time")
def import_time() -> TaskResult[None, TaskError]:
    return TaskResult(ok=None)


SENT_AT_IMPORT = import_time.send()
from . import workflow_tasks  # noqa: E402, F401  (registers the workflow tests' tasks)
