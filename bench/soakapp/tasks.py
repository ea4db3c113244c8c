"""Benchmark tasks. `soak` writes one line per run so that double runs can be counted;
`latency` records when it started and ended, for bench/run.py's latency measures."""

import os
import time
from typing import Any

from bench.peers.record import record
from horsies_django import TaskError, TaskResult, app, current_task


@app.task("bench.noop")
def noop(n: int) -> TaskResult[int, TaskError]:
    return TaskResult(ok=n)


@app.task("bench.soak")
def soak(n: int, sleep_ms: int) -> TaskResult[int, TaskError]:
    if sleep_ms:
        time.sleep(sleep_ms / 1000)
    context = current_task()
    assert context is not None
    log_dir = os.environ["HORSIES_SOAK_LOG_DIR"]
    with open(os.path.join(log_dir, f"{os.getpid()}.log"), "a") as log:
        log.write(f"{context.task_id} {context.claim_token}\n")
    return TaskResult(ok=n)


@app.task("bench.latency")
def latency(sample: int) -> TaskResult[int, TaskError]:
    started = time.time()
    record(sample, started)
    return TaskResult(ok=sample)


class _UnprintableError(Exception):
    def __str__(self) -> str:
        raise RuntimeError("__str__ raised")


# Each kind of hostile outcome bench/soak.py --poison-rate sends, and the code it must end with.
POISON_CODES = {
    "long_code": "WORKER_SERIALIZATION_ERROR",
    "nul_code": "WORKER_SERIALIZATION_ERROR",
    "nul_message": "POISON",
    "surrogate_message": "POISON",
    "nul_ok": "WORKER_SERIALIZATION_ERROR",
    "surrogate_ok": "WORKER_SERIALIZATION_ERROR",
    "nan_ok": "WORKER_SERIALIZATION_ERROR",
    "unprintable": "UNHANDLED_EXCEPTION",
}


@app.task("bench.poison")
def poison(n: int, kind: str, sleep_ms: int) -> TaskResult[Any, TaskError]:
    """Like `soak`, but its outcome is hostile to the database or to the worker."""
    soak(n, sleep_ms)  # the same run log, so double runs are counted for poison tasks too
    if kind == "long_code":
        return TaskResult(err=TaskError(error_code="C" * 150, message="code too long"))
    if kind == "nul_code":
        return TaskResult(err=TaskError(error_code="NUL\x00", message="NUL in the code"))
    if kind == "nul_message":
        return TaskResult(err=TaskError(error_code="POISON", message="a\x00b", data={"x": "\x00"}))
    if kind == "surrogate_message":
        return TaskResult(err=TaskError(error_code="POISON", message="\ud800", data=["\udfff"]))
    if kind == "nul_ok":
        return TaskResult(ok={"text": "a\x00b"})
    if kind == "surrogate_ok":
        return TaskResult(ok=["\ud800"])
    if kind == "nan_ok":
        return TaskResult(ok={"x": float("nan")})
    raise _UnprintableError()
