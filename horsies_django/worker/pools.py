"""Where tasks run: child processes (the default: isolated, and stoppable at any moment; see
`procpool.py`) or threads.

Both pools take claimed tasks and hand back a `Completion` for each: its outcome, or word that the
process running it died (a crash), or that it never started and goes back uncounted.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import ALL_COMPLETED, FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from django.db import close_old_connections
from django.utils import timezone

from ..app import Horsies
from ..broker import ClaimedTask
from .execute import Outcome, execute

logger = logging.getLogger("horsies_django.worker")


@dataclass(frozen=True, slots=True)
class TaskStart:
    """When a task began running: `at` to store, `monotonic` to time it out from."""

    at: datetime
    monotonic: float


@dataclass(frozen=True, slots=True)
class Completion:
    """How a task handed to a pool ended. `outcome` None: the process running it died (a crash),
    or, with `released`, it was stopped through no fault of its own and goes back uncounted."""

    task_id: str
    outcome: Outcome | None
    started_at: datetime | None = None
    released: bool = False


# After the first task of a wait ends, how long to wait for others, so that their outcomes are
# stored in one statement; short enough not to matter for latency.
BATCH_WINDOW_S = 0.002


class TaskPool(Protocol):
    kind: str
    size: int

    def free_slots(self) -> int: ...

    def submit(self, task: ClaimedTask) -> None: ...

    def wait(self, timeout: float) -> list[Completion]:
        """Wait up to `timeout` seconds for at least one task to end; return those that ended."""
        ...

    def start_of(self, task_id: str) -> TaskStart | None:
        """When the task began running, or None while it waits (its timeout runs from its start)."""
        ...

    def stop(self, task_id: str) -> bool:
        """Stop a task now if this pool can; True if it was stopped (its result will never come)."""
        ...

    def close(self, *, kill: bool) -> None: ...


def run_task(app: Horsies, task: ClaimedTask) -> Outcome:
    try:
        return execute(app, task)
    finally:
        # The task may have used the ORM here; do not keep a broken or stale connection around.
        close_old_connections()


def _run_in_thread(app: Horsies, task: ClaimedTask, starts: dict[str, TaskStart]) -> Outcome:
    starts[task.id] = TaskStart(at=timezone.now(), monotonic=time.monotonic())
    return run_task(app, task)


class ThreadTaskPool:
    """Tasks run in threads of the worker process: light, for I/O-bound work. A thread cannot be
    killed, so a timed-out or cancelled task keeps its slot until its function returns."""

    kind = "threads"

    def __init__(self, app: Horsies, size: int) -> None:
        self.app = app
        self.size = size
        self._executor = ThreadPoolExecutor(max_workers=size, thread_name_prefix="horsies-task")
        self._futures: dict[Future[Outcome], str] = {}
        self._starts: dict[str, TaskStart] = {}

    def free_slots(self) -> int:
        return self.size - len(self._futures)

    def submit(self, task: ClaimedTask) -> None:
        self._futures[self._executor.submit(_run_in_thread, self.app, task, self._starts)] = task.id

    def start_of(self, task_id: str) -> TaskStart | None:
        return self._starts.get(task_id)

    def wait(self, timeout: float) -> list[Completion]:
        if not self._futures:
            time.sleep(timeout)
            return []
        done, pending = wait(self._futures, timeout=timeout, return_when=FIRST_COMPLETED)
        if done and pending:
            done |= wait(pending, timeout=BATCH_WINDOW_S, return_when=ALL_COMPLETED)[0]
        completions = []
        for future in done:
            task_id = self._futures.pop(future)
            start = self._starts.pop(task_id, None)
            completions.append(Completion(task_id, future.result(), started_at=start.at if start else None))
        return completions

    def stop(self, task_id: str) -> bool:
        return False

    def close(self, *, kill: bool) -> None:
        self._executor.shutdown(wait=not kill, cancel_futures=True)
