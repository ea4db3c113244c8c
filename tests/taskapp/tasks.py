"""Tasks that produce every outcome the worker can store. Loaded by autodiscovery, like any app's."""

import os
import time
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

from horsies_django import Horsies, TaskError, TaskResult, app

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


# A separate registry: its tasks can be sent, but no worker (which uses `app`) knows them.
elsewhere = Horsies()


@elsewhere.task("tests.known_nowhere")
def known_nowhere() -> TaskResult[int, TaskError]:
    return TaskResult(ok=1)
