"""The latency tasks of every library call `record()`: one line per run in a shared file.

Pure Python on purpose (no Django, no queue import), so that horsies' task and the peers' tasks
record the same way. The line is `sample started ended` with `time.time()` stamps; `started` is
taken by the caller as the first thing the task does, `ended` here, just before the task returns.
"""

from __future__ import annotations

import os
import time

LATENCY_FILE_ENV = "HORSIES_BENCH_LATENCY_FILE"


def record(sample: int, started: float) -> None:
    ended = time.time()
    path = os.environ.get(LATENCY_FILE_ENV)
    if path:
        # One write of one short line in append mode: lines from concurrent workers never interleave.
        with open(path, "a") as log:
            log.write(f"{sample} {started!r} {ended!r}\n")
