"""Where tasks run: child processes (the default: isolated, and stoppable at any moment) or threads.

Both pools take claimed tasks and hand back `(task_id, Outcome | None)`; None means the
process running the task died without reporting, which the supervisor treats as a crash.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import time
from concurrent.futures import ALL_COMPLETED, FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.connection import wait as wait_for_connections
from multiprocessing.process import BaseProcess
from typing import Protocol

from django.db import close_old_connections

from ..app import Horsies
from ..broker import ClaimedTask
from .execute import Outcome, execute

logger = logging.getLogger("horsies_django.worker")

Completion = tuple[str, Outcome | None]

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


class ThreadTaskPool:
    """Tasks run in threads of the worker process: light, for I/O-bound work. A thread cannot be
    killed, so a timed-out or cancelled task keeps its slot until its function returns."""

    kind = "threads"

    def __init__(self, app: Horsies, size: int) -> None:
        self.app = app
        self.size = size
        self._executor = ThreadPoolExecutor(max_workers=size, thread_name_prefix="horsies-task")
        self._futures: dict[Future[Outcome], str] = {}

    def free_slots(self) -> int:
        return self.size - len(self._futures)

    def submit(self, task: ClaimedTask) -> None:
        self._futures[self._executor.submit(run_task, self.app, task)] = task.id

    def wait(self, timeout: float) -> list[Completion]:
        if not self._futures:
            time.sleep(timeout)
            return []
        done, pending = wait(self._futures, timeout=timeout, return_when=FIRST_COMPLETED)
        if done and pending:
            done |= wait(pending, timeout=BATCH_WINDOW_S, return_when=ALL_COMPLETED)[0]
        return [(self._futures.pop(future), future.result()) for future in done]

    def stop(self, task_id: str) -> bool:
        return False

    def close(self, *, kill: bool) -> None:
        self._executor.shutdown(wait=not kill, cancel_futures=True)


def _child_main(connection: Connection, max_tasks: int) -> None:
    """A child process: set Django up, then run the tasks the supervisor sends until told to stop."""
    # Ctrl+C reaches the whole process group; only the supervisor decides when children stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    import django

    django.setup()
    from ..app import app

    done = 0
    while True:
        try:
            task = connection.recv()
        except (EOFError, OSError):  # The supervisor is gone.
            return
        if task is None:
            return
        connection.send((task.id, run_task(app, task)))
        done += 1
        if max_tasks and done >= max_tasks:
            return


@dataclass
class _Child:
    process: BaseProcess
    connection: Connection
    task_id: str | None = None
    tasks_done: int = 0


class ProcessTaskPool:
    """Each task runs in a child process that can be killed on timeout or cancel and is then
    replaced. Children are started with `spawn`, so they share no database connection with the
    supervisor. Tasks come from the project's registry (`horsies_django.app`)."""

    kind = "processes"

    def __init__(self, size: int, *, max_tasks_per_child: int = 0) -> None:
        self.size = size
        self.max_tasks_per_child = max_tasks_per_child
        self._context = multiprocessing.get_context("spawn")
        self._children = [self._start_child() for _ in range(size)]

    def _start_child(self) -> _Child:
        parent_end, child_end = self._context.Pipe()
        process = self._context.Process(
            target=_child_main, args=(child_end, self.max_tasks_per_child), name="horsies-child", daemon=True
        )
        process.start()
        child_end.close()
        return _Child(process=process, connection=parent_end)

    def _replace(self, child: _Child, *, kill: bool) -> None:
        if kill and child.process.is_alive():
            child.process.kill()
        child.process.join(timeout=5)
        child.connection.close()
        self._children[self._children.index(child)] = self._start_child()

    def free_slots(self) -> int:
        return sum(1 for child in self._children if child.task_id is None)

    def submit(self, task: ClaimedTask) -> None:
        child = next(child for child in self._children if child.task_id is None)
        child.task_id = task.id
        child.connection.send(task)

    def wait(self, timeout: float) -> list[Completion]:
        busy = [child for child in self._children if child.task_id is not None]
        if not busy:
            time.sleep(timeout)
            return []
        handles = [c.connection for c in busy] + [c.process.sentinel for c in busy]
        ready = set(wait_for_connections(handles, timeout))
        if ready and len(ready) < len(busy):
            time.sleep(BATCH_WINDOW_S)
            ready = set(wait_for_connections(handles, 0))
        completions: list[Completion] = []
        for child in busy:
            if child.connection not in ready and child.process.sentinel not in ready:
                continue
            task_id = child.task_id
            assert task_id is not None
            outcome: Outcome | None = None
            try:
                if child.connection.poll():
                    reported_id, outcome = child.connection.recv()
                    assert reported_id == task_id
            except (EOFError, OSError):
                outcome = None
            child.task_id = None
            child.tasks_done += 1
            completions.append((task_id, outcome))
            if outcome is None:
                logger.error("child process died running task id=%s (exit code %s)", task_id, child.process.exitcode)
                self._replace(child, kill=True)
            elif self.max_tasks_per_child and child.tasks_done >= self.max_tasks_per_child:
                self._replace(child, kill=False)  # it exits by itself after its last task
        return completions

    def stop(self, task_id: str) -> bool:
        for child in self._children:
            if child.task_id == task_id:
                child.task_id = None
                self._replace(child, kill=True)
                return True
        return False

    def close(self, *, kill: bool) -> None:
        for child in self._children:
            try:
                if kill or child.task_id is not None:
                    child.process.kill()
                else:
                    child.connection.send(None)
            except (OSError, ValueError):
                pass  # already gone
        for child in self._children:
            child.process.join(timeout=5)
            if child.process.is_alive():
                child.process.kill()
                child.process.join(timeout=5)
            child.connection.close()

    def kill_all(self) -> None:
        """Kill every child at once (from a signal handler: no joins, no database)."""
        for child in self._children:
            try:
                os.kill(child.process.pid or 0, signal.SIGKILL)
            except (OSError, TypeError):
                pass
