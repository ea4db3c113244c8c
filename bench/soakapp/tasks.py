"""Benchmark tasks. `soak` writes one line per run so that double runs can be counted;
`latency` records when it started and ended, for bench/run.py's latency measures."""

import os
import time

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
