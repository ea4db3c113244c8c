"""Tasks for the workflow tests (tests/integration/test_workflows*.py). Imported by tasks.py, so
that worker processes register them too."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

from horsies_django import TaskError, TaskResult, WorkflowContext, WorkflowMeta, app

from .models import Run


@dataclass
class Saved:
    key: str
    size: int


@app.task("wf.fetch")
def fetch(url: str) -> TaskResult[str, TaskError]:
    return TaskResult(ok=f"<html>{url}</html>")


@app.task("wf.measure")
def measure(raw: TaskResult[str, TaskError]) -> TaskResult[int, TaskError]:
    if raw.is_err():
        return TaskResult(err=TaskError(error_code="NO_INPUT", message="upstream failed"))
    return TaskResult(ok=len(raw.unwrap()))


@app.task("wf.save")
def save(size: TaskResult[int, TaskError], key: str) -> TaskResult[Saved, TaskError]:
    return TaskResult(ok=Saved(key=key, size=size.unwrap()))


@app.task("wf.square")
def square(n: int) -> TaskResult[int, TaskError]:
    return TaskResult(ok=n * n)


@app.task("wf.fail")
def fail(code: str) -> TaskResult[int, TaskError]:
    return TaskResult(err=TaskError(error_code=code, message=f"failed with {code}"))


@app.task("wf.sum_ctx")
def sum_ctx(workflow_ctx: WorkflowContext | None = None) -> TaskResult[int, TaskError]:
    """Adds the ok results of the nodes in its workflow context."""
    assert workflow_ctx is not None
    return TaskResult(ok=sum(r["ok"] for r in workflow_ctx.results.values() if "ok" in r))


@app.task("wf.first_ok")
def first_ok(a: TaskResult[int, TaskError], b: TaskResult[int, TaskError]) -> TaskResult[int, TaskError]:
    """For join='any'/'quorum': whichever upstream succeeded."""
    for result in (a, b):
        if result.is_ok():
            return TaskResult(ok=result.unwrap())
    return TaskResult(err=TaskError(error_code="NONE_OK", message="no upstream succeeded"))


@app.task("wf.describe")
def describe(
    upstream: TaskResult[int, TaskError], workflow_meta: WorkflowMeta | None = None
) -> TaskResult[str, TaskError]:
    """Reports what it received, to check failed upstreams and the meta reach a node."""
    code = None if upstream.is_ok() else upstream.unwrap_err().error_code
    where = f"{workflow_meta.workflow_name}/{workflow_meta.node_id}" if workflow_meta else "-"
    return TaskResult(ok=f"{where} ok={upstream.ok} err={code}")


@app.task("wf.noop")
def noop() -> TaskResult[None, TaskError]:
    return TaskResult(ok=None)


@app.task("wf.recorded")
def recorded(key: str, sleep_ms: int = 0, gate: str = "") -> TaskResult[str, TaskError]:
    """Records each run; waits for the file `gate` to exist first (when given) and then `sleep_ms`."""
    if gate:
        deadline = time.monotonic() + 60
        while not Path(gate).exists() and time.monotonic() < deadline:
            time.sleep(0.005)
    if sleep_ms:
        time.sleep(sleep_ms / 1000)
    Run.objects.create(key=key, worker_pid=os.getpid())
    return TaskResult(ok=key)
