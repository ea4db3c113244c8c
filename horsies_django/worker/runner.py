"""The worker: claim what it has room for, run it, store the outcomes, keep its leases alive."""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db import close_old_connections, connections
from django.utils import timezone

from ..app import Horsies
from ..app import app as default_app
from ..broker import Broker, ClaimedTask, Finish, get_broker
from ..conf import get_settings
from ..types.codec import encode_error
from ..types.codes import OperationalErrorCode, OutcomeCode
from ..types.results import TaskError
from .execute import Outcome, execute

logger = logging.getLogger("horsies_django.worker")

MAX_BACKOFF_S = 5.0


@dataclass
class WorkerStats:
    claimed: int = 0
    completed: int = 0
    failed: int = 0
    stale_finishes: int = 0
    started_monotonic: float = field(default_factory=time.monotonic)
    first_claim_monotonic: float | None = None
    last_finish_monotonic: float | None = None

    @property
    def finished(self) -> int:
        return self.completed + self.failed

    def throughput(self) -> float:
        """Finished tasks per second from the first claim to the last finish."""
        if self.first_claim_monotonic is None or self.last_finish_monotonic is None:
            return 0.0
        elapsed = self.last_finish_monotonic - self.first_claim_monotonic
        return self.finished / elapsed if elapsed > 0 else float(self.finished)


@dataclass(frozen=True, slots=True)
class _Running:
    task: ClaimedTask
    started_at: datetime


def _default_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


class Worker:
    """Processes tasks until stopped (or, with `burst`, until nothing is ready).

    Tests drive it directly: `Worker(burst=True).run()` drains the queue in this process.
    """

    def __init__(
        self,
        *,
        app: Horsies | None = None,
        queues: Sequence[str] | None = None,
        concurrency: int | None = None,
        burst: bool = False,
        poll_interval_s: float | None = None,
        worker_id: str | None = None,
    ) -> None:
        settings = get_settings()
        self.app = app or default_app
        self.queues = list(queues) if queues else None
        self.concurrency = concurrency or settings.worker.concurrency
        if self.concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, got {self.concurrency}")
        self.burst = burst
        self.poll_interval_s = poll_interval_s if poll_interval_s is not None else settings.worker.poll_interval_s
        self.heartbeat_s = settings.worker.heartbeat_s
        self.lease_s = settings.worker.lease_s
        self.max_crash_reruns = settings.worker.max_crash_reruns
        self.worker_id = worker_id or _default_worker_id()
        self.stats = WorkerStats()
        self._stopping = threading.Event()
        self._running: dict[Future[Outcome], _Running] = {}
        self._unsaved: list[Finish] = []
        self._broker: Broker = get_broker()
        self._db_failures = 0
        self._db_retry_at = 0.0

    def stop(self) -> None:
        """Stop claiming; `run()` returns once the tasks in hand have finished and been stored."""
        self._stopping.set()

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def run(self) -> WorkerStats:
        logger.info(
            "worker starting id=%s queues=%s concurrency=%d burst=%s",
            self.worker_id,
            ",".join(self.queues or ["*"]),
            self.concurrency,
            self.burst,
        )
        executor = ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="horsies-task")
        self._register()
        next_maintenance = 0.0
        try:
            while True:
                if time.monotonic() >= next_maintenance:
                    self._maintain()
                    next_maintenance = time.monotonic() + self.heartbeat_s
                claimed = self._claim_and_start(executor)
                if self._running:
                    timeout = max(min(self.poll_interval_s, next_maintenance - time.monotonic()), 0)
                    done, _ = wait(self._running, timeout=timeout, return_when=FIRST_COMPLETED)
                    self._collect(done)
                self._save()
                if not self._database_ready():
                    self._idle(min(next_maintenance, self._db_retry_at))
                    continue
                if self._running or claimed:
                    continue
                if self.stopping or self.burst:
                    break
                self._idle(next_maintenance)
        finally:
            executor.shutdown(wait=True)
            self._collect([f for f in self._running if f.done()])
            self._save()
            self._unregister()
        logger.info(
            "worker stopped id=%s claimed=%d completed=%d failed=%d throughput=%.1f/s",
            self.worker_id,
            self.stats.claimed,
            self.stats.completed,
            self.stats.failed,
            self.stats.throughput(),
        )
        return self.stats

    # -- steps of the loop ----------------------------------------------------------------

    def _claim_and_start(self, executor: ThreadPoolExecutor) -> int:
        free = self.concurrency - len(self._running)
        if self.stopping or free <= 0 or not self._database_ready():
            return 0
        now = timezone.now()
        try:
            claimed = self._broker.claim(
                worker_id=self.worker_id,
                queues=self.queues,
                limit=free,
                now=now,
                lease_until=now + timedelta(seconds=self.lease_s),
            )
        except Exception as exc:
            self._database_error("claim", exc)
            return 0
        self._db_failures = 0
        if claimed and self.stats.first_claim_monotonic is None:
            self.stats.first_claim_monotonic = time.monotonic()
        self.stats.claimed += len(claimed)
        for task in claimed:
            logger.debug("task claimed id=%s name=%s attempt=%d", task.id, task.name, task.attempt)
            future = executor.submit(self._run_in_thread, task)
            self._running[future] = _Running(task=task, started_at=now)
        return len(claimed)

    def _run_in_thread(self, task: ClaimedTask) -> Outcome:
        try:
            return execute(self.app, task)
        finally:
            # A task may have used the ORM in this thread; do not keep a broken or stale connection.
            close_old_connections()

    def _collect(self, done: Sequence[Future[Outcome]] | set[Future[Outcome]]) -> None:
        finished_at = timezone.now()
        for future in done:
            running = self._running.pop(future)
            outcome = future.result()  # execute() never raises
            self._unsaved.append(self._finish_for(running, outcome, finished_at))

    def _finish_for(self, running: _Running, outcome: Outcome, finished_at: datetime) -> Finish:
        return Finish(
            task_id=running.task.id,
            claim_token=running.task.claim_token,
            attempt=running.task.attempt,
            status="COMPLETED" if outcome.ok else "FAILED",
            result=outcome.result,
            error_code=outcome.error_code,
            error_message=outcome.error_message,
            error_traceback=outcome.error_traceback,
            worker_id=self.worker_id,
            started_at=running.started_at,
            finished_at=finished_at,
            attempt_outcome="COMPLETED" if outcome.ok else "FAILED",
        )

    def _save(self) -> None:
        if not self._unsaved or not self._database_ready():
            return
        batch, self._unsaved = self._unsaved, []
        try:
            applied = self._broker.finish_many(batch)
        except Exception as exc:
            # Keep the outcomes and try again; if the lease runs out first, the claim token
            # makes this worker's late write a no-op and the task simply runs again.
            self._unsaved = batch + self._unsaved
            self._database_error("finish", exc)
            return
        self._db_failures = 0
        self.stats.last_finish_monotonic = time.monotonic()
        for finish in batch:
            if finish.task_id not in applied:
                self.stats.stale_finishes += 1
                logger.warning(
                    "result discarded id=%s claim_token=%d: the task is no longer held by this worker",
                    finish.task_id,
                    finish.claim_token,
                )
            elif finish.status == "COMPLETED":
                self.stats.completed += 1
            else:
                self.stats.failed += 1
            logger.debug("task finished id=%s status=%s", finish.task_id, finish.status)

    def _maintain(self) -> None:
        """Renew the leases of tasks in hand, expire stale sends, re-run tasks of lost workers."""
        now = timezone.now()
        try:
            self._broker.worker_heartbeat(worker_id=self.worker_id, now=now)
            held = [(r.task.id, r.task.claim_token) for r in self._running.values()]
            self._broker.renew_leases(
                worker_id=self.worker_id, held=held, lease_until=now + timedelta(seconds=self.lease_s)
            )
            expired = TaskError(error_code=OutcomeCode.TASK_EXPIRED, message="not started before good_until")
            self._broker.expire_pending(
                now=now,
                result={"err": encode_error(expired)},
                error_code=OutcomeCode.TASK_EXPIRED.value,
                message=expired.message or "",
            )
            crashed = TaskError(
                error_code=OperationalErrorCode.WORKER_CRASHED,
                message=f"the worker running it was lost {self.max_crash_reruns + 1} time(s)",
            )
            lost = self._broker.recover_lost(
                now=now,
                max_crash_reruns=self.max_crash_reruns,
                crashed_result={"err": encode_error(crashed)},
                message=crashed.message or "",
            )
        except Exception as exc:
            self._database_error("maintenance", exc)
            return
        for task_id in lost.requeued:
            logger.warning("task requeued id=%s: its worker's lease expired", task_id)
        for task_id in lost.failed:
            logger.error("task failed id=%s: WORKER_CRASHED after %d re-runs", task_id, self.max_crash_reruns)

    def _register(self) -> None:
        try:
            self._broker.register_worker(
                worker_id=self.worker_id,
                hostname=socket.gethostname(),
                pid=os.getpid(),
                queues=self.queues or [],
                concurrency=self.concurrency,
                pool="threads",
                now=timezone.now(),
            )
        except Exception as exc:
            self._database_error("register", exc)

    def _unregister(self) -> None:
        try:
            self._broker.worker_heartbeat(worker_id=self.worker_id, now=timezone.now(), stopped=True)
        except Exception as exc:  # The record then just looks silent, which is what it is.
            logger.warning("could not record the worker's stop id=%s: %s", self.worker_id, exc)

    def _idle(self, until: float) -> None:
        """Sleep until `until` (monotonic) or one poll interval, whichever is first; stop() wakes it."""
        pause = max(min(self.poll_interval_s, until - time.monotonic()), 0)
        if self.stopping:
            time.sleep(min(pause, 0.05))  # the stop event no longer blocks; still do not spin
        else:
            self._stopping.wait(pause)
        close_old_connections()

    def _database_ready(self) -> bool:
        return time.monotonic() >= self._db_retry_at

    def _database_error(self, step: str, exc: Exception) -> None:
        self._db_failures += 1
        backoff = min(0.1 * 2 ** (self._db_failures - 1), MAX_BACKOFF_S)
        self._db_retry_at = time.monotonic() + backoff
        logger.warning("database error during %s, retrying in %.1fs: %s", step, backoff, exc)
        try:
            connections[self._broker.alias].close()
        except Exception:  # The connection is already gone; the next query reconnects.
            logger.debug("closing the broken connection failed", exc_info=True)
