"""The worker: claim what it has room for, run it, store the outcomes, keep its leases alive."""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Literal

from django.db import DatabaseError, connections
from django.utils import timezone

from .. import signals
from ..app import Horsies
from ..app import app as default_app
from ..broker import Broker, BrokerError, ClaimedTask, Finish, get_broker
from ..conf import get_settings
from ..scheduler import run_schedules
from ..statuses import AttemptOutcome, TaskStatus
from ..types.codec import encode_error
from ..types.codes import OperationalErrorCode, OutcomeCode
from ..types.results import TaskError
from .execute import Outcome, failure
from .outcomes import log_outcome, save_finishes
from .pools import Completion, TaskPool, ThreadTaskPool
from .procpool import DEFAULT_PREFETCH, ProcessTaskPool

logger = logging.getLogger("horsies_django.worker")

MAX_BACKOFF_S = 5.0
PRUNE_EVERY_S = 60.0
PRUNE_BATCH = 1000
# A slot still due after the scheduler ran (its send failed) is tried again after this long.
SCHEDULE_RETRY_S = 1.0
PoolKind = Literal["processes", "threads"]


@dataclass
class WorkerStats:
    claimed: int = 0
    completed: int = 0
    failed: int = 0
    retried: int = 0
    released: int = 0
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
    started_at: datetime  # claimed at, until the pool reports when the task began running
    timeout_ms: int | None


def prune_finished(broker: Broker, *, now: datetime, limit: int | None = None) -> int:
    """Delete ended tasks older than HORSIES['RETENTION'] allows, in batches; `limit` caps the
    rows deleted this call (a worker prunes a little at a time between tasks)."""
    retention = get_settings().retention
    deleted = 0
    while limit is None or deleted < limit:
        batch = PRUNE_BATCH if limit is None else min(PRUNE_BATCH, limit - deleted)
        count = broker.prune(
            completed_before=now - timedelta(days=retention.completed_days),
            failed_before=now - timedelta(days=retention.failed_days),
            limit=batch,
        )
        deleted += count
        if count < batch:
            break
    return deleted


def _default_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


class Worker:
    """Processes tasks until stopped (or, with `burst`, until nothing is ready).

    Tests drive it directly: `Worker(burst=True, pool="threads").run()` drains the queue in this
    process. `stop()` (the first Ctrl+C) stops claiming and lets running tasks finish for up to
    `shutdown_timeout_s`; tasks still running then are stopped and put back to run again.
    """

    def __init__(
        self,
        *,
        app: Horsies | None = None,
        queues: Sequence[str] | None = None,
        concurrency: int | None = None,
        pool: PoolKind = "threads",
        max_tasks_per_child: int = 0,
        prefetch: int = DEFAULT_PREFETCH,
        burst: bool = False,
        poll_interval_s: float | None = None,
        shutdown_timeout_s: float = 30.0,
        worker_id: str | None = None,
        run_scheduler: bool = True,
    ) -> None:
        settings = get_settings()
        self.app = app or default_app
        self.queues = list(queues) if queues else None
        self.concurrency = concurrency or settings.worker.concurrency
        if self.concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, got {self.concurrency}")
        if pool not in ("processes", "threads"):
            raise ValueError(f"pool must be 'processes' or 'threads', got {pool!r}")
        if pool == "processes" and self.app is not default_app:
            raise ValueError("the process pool runs tasks from horsies_django.app; use pool='threads' for another app")
        self.pool_kind: PoolKind = pool
        self.max_tasks_per_child = max_tasks_per_child
        if prefetch < 0:
            raise ValueError(f"prefetch must be 0 or more, got {prefetch}")
        self.prefetch = prefetch
        self.burst = burst
        self.run_scheduler = run_scheduler
        self._broker: Broker = get_broker()
        self.poll_interval_s = (
            poll_interval_s
            if poll_interval_s is not None
            else settings.worker.poll_interval_s or self._broker.default_poll_interval_s
        )
        self.shutdown_timeout_s = shutdown_timeout_s
        self.heartbeat_s = settings.worker.heartbeat_s
        self.lease_s = settings.worker.lease_s
        self.max_crash_reruns = settings.worker.max_crash_reruns
        self.worker_id = worker_id or _default_worker_id()
        self.stats = WorkerStats()
        self.pool: TaskPool | None = None
        self._stopping = threading.Event()
        self._stop_deadline: float | None = None
        self._give_up_saving_at: float | None = None
        self._gave_back_unstarted = False
        self._running: dict[str, _Running] = {}
        self._unsaved: list[Finish] = []
        self._db_failures = 0
        self._db_retry_at = 0.0
        self._told_to_migrate = False
        self._held_threads: set[str] = set()  # running in threads past the shutdown timeout
        # Timed out in a thread that cannot be stopped, with a retry due: the retry, saved once the
        # thread returns (until then the task stays held, its lease renewed, so no worker runs it twice).
        self._overran: dict[str, Finish] = {}
        self._next_prune = time.monotonic() + PRUNE_EVERY_S
        # When to run the scheduler next (monotonic): the earliest slot, at most a heartbeat away.
        self._next_schedules = 0.0
        for queue_name in self.queues or []:
            unknown = settings.unknown_queue(queue_name)
            if unknown:
                logger.warning("worker will find no tasks in it: %s", unknown)
        self._rate_limits = {
            name: task.rate_limit
            for name in self.app.list_tasks()
            if (task := self.app.get_task(name)) is not None and task.rate_limit is not None
        }

    def stop(self) -> None:
        """Stop claiming; `run()` returns once the tasks in hand have finished (or were released)."""
        if not self._stopping.is_set():
            self._stop_deadline = self._give_up_saving_at = time.monotonic() + self.shutdown_timeout_s
        self._stopping.set()

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def kill_children(self) -> None:
        """Kill child processes at once (the second Ctrl+C); their tasks re-run after the lease."""
        if isinstance(self.pool, ProcessTaskPool):
            self.pool.kill_all()

    def _make_pool(self) -> TaskPool:
        if self.pool_kind == "processes":
            return ProcessTaskPool(
                self.concurrency, max_tasks_per_child=self.max_tasks_per_child, prefetch=self.prefetch
            )
        return ThreadTaskPool(self.app, self.concurrency)

    def run(self) -> WorkerStats:
        logger.info(
            "worker starting id=%s queues=%s concurrency=%d pool=%s burst=%s",
            self.worker_id,
            ",".join(self.queues or ["*"]),
            self.concurrency,
            self.pool_kind,
            self.burst,
        )
        pool = self.pool = self._make_pool()
        self._register()
        signals.send(signals.worker_started, self, worker_id=self.worker_id)
        next_maintenance = 0.0
        try:
            while True:
                if time.monotonic() >= next_maintenance:
                    self._maintain(pool)
                    next_maintenance = time.monotonic() + self.heartbeat_s
                if self.run_scheduler and time.monotonic() >= self._next_schedules and self._database_ready():
                    self._run_schedules()
                wake = min(next_maintenance, self._next_schedules) if self.run_scheduler else next_maintenance
                claimed = self._claim_and_start(pool)
                if self._running:
                    self._collect(pool.wait(self._wait_timeout(wake)))
                    self._enforce_deadlines(pool)
                self._save()
                if self.stopping and not self._running and not self._still_saving():
                    break
                if not self._database_ready():
                    self._idle(min(wake, self._db_retry_at))
                    continue
                if self._running:
                    continue
                if self.stopping:
                    break
                if self.burst and claimed == 0:
                    # Look once more: the finishes just saved may have sent tasks (a workflow's next nodes).
                    if not self._claim_and_start(pool):
                        break
                    continue
                if claimed:
                    continue  # found work: look for more at once
                self._idle(wake)
                if self._broker.take_schedule_change():
                    self._next_schedules = 0.0  # paused or resumed: read the schedules again now
        finally:
            self._release_running(pool)
            pool.close(kill=True)
            self._save()
            self._unregister()
            signals.send(signals.worker_stopped, self, worker_id=self.worker_id, stats=self.stats)
        logger.info(
            "worker stopped id=%s claimed=%d completed=%d failed=%d retried=%d throughput=%.1f/s",
            self.worker_id,
            self.stats.claimed,
            self.stats.completed,
            self.stats.failed,
            self.stats.retried,
            self.stats.throughput(),
        )
        return self.stats

    # -- steps of the loop ----------------------------------------------------------------

    def _wait_timeout(self, next_maintenance: float) -> float:
        now = time.monotonic()
        until = min(now + self.poll_interval_s, next_maintenance)
        deadlines = [d for r in self._running.values() if (d := self._deadline(r)) is not None]
        if self._stop_deadline is not None:
            deadlines.append(self._stop_deadline)
        if deadlines:
            until = min(until, min(deadlines))
        # While there is room, come back soon to claim more instead of sleeping a full poll.
        if not self.stopping and self.pool is not None and self.pool.free_slots() > 0:
            until = min(until, now + 0.005)
        return max(until - now, 0)

    def _claim_and_start(self, pool: TaskPool) -> int | None:
        """Claim and start up to the free slots; the number claimed, or None if it did not look."""
        free = pool.free_slots()  # the pool's room, with the tasks it may queue in its children
        if self.stopping or free <= 0 or not self._database_ready():
            return None
        now = timezone.now()
        lease_until = now + timedelta(seconds=self.lease_s)
        try:
            if self._limits_apply():
                settings = get_settings()
                claimed = self._broker.claim_capped(
                    worker_id=self.worker_id,
                    queues=self.queues,
                    limit=free,
                    now=now,
                    lease_until=lease_until,
                    queue_caps=settings.queue_caps(),
                    cluster_cap=settings.cluster_max_concurrency,
                    rate_limits=self._rate_limits,
                )
            else:
                claimed = self._broker.claim(
                    worker_id=self.worker_id, queues=self.queues, limit=free, now=now, lease_until=lease_until
                )
        except BrokerError as exc:
            self._database_error("claim", exc)
            return None
        self._db_failures = 0
        if claimed and self.stats.first_claim_monotonic is None:
            self.stats.first_claim_monotonic = time.monotonic()
        self.stats.claimed += len(claimed)
        for task in claimed:
            logger.debug("task claimed id=%s name=%s attempt=%d", task.id, task.name, task.attempt)
            definition = self.app.get_task(task.name)
            timeout_ms = definition.timeout_ms if definition else None
            self._running[task.id] = _Running(task=task, started_at=now, timeout_ms=timeout_ms)
            pool.submit(task)
        signals.claimed(self, claimed)
        return len(claimed)

    def _limits_apply(self) -> bool:
        settings = get_settings()
        return bool(settings.queue_caps() or settings.cluster_max_concurrency is not None or self._rate_limits)

    def _deadline(self, running: _Running) -> float | None:
        """When the task times out (monotonic): its timeout from the moment it began running."""
        if not running.timeout_ms or self.pool is None or running.task.id in self._overran:
            return None
        start = self.pool.start_of(running.task.id)
        return None if start is None else start.monotonic + running.timeout_ms / 1000

    def _collect(self, completions: Sequence[Completion]) -> None:
        finished_at = timezone.now()
        for completion in completions:
            running = self._running.pop(completion.task_id, None)
            retry = self._overran.pop(completion.task_id, None)
            if retry is not None:
                self._unsaved.append(retry)  # its thread has returned: the timeout's retry may run now
                continue
            if running is None:
                continue  # timed out or cancelled earlier; its late result is not wanted
            if completion.started_at is not None:
                running = replace(running, started_at=completion.started_at)
            if completion.released:
                # Stopped through no fault of its own (its process was killed for another task).
                logger.warning("task released id=%s: its process was stopped for another task", completion.task_id)
                released = self._finish(
                    running, TaskStatus.PENDING, finished_at, attempt_outcome=None, run_at=finished_at, release=True
                )
                self._unsaved.append(released)
            elif completion.outcome is None:
                # The child process died under the task (a crash, out of memory): a crash re-run.
                self._unsaved.append(self._crashed(running, finished_at))
            else:
                self._unsaved.append(self._finish_for(running, completion.outcome, finished_at))

    def _enforce_deadlines(self, pool: TaskPool) -> None:
        now = time.monotonic()
        for task_id, running in list(self._running.items()):
            deadline = self._deadline(running)
            if deadline is not None and now >= deadline:
                start = pool.start_of(task_id)
                if start is not None:
                    running = replace(running, started_at=start.at)
                stopped = pool.stop(task_id)
                outcome = failure(
                    OutcomeCode.TASK_TIMEOUT, f"task {running.task.name!r} ran longer than {running.timeout_ms} ms"
                )
                finish = self._finish_for(running, outcome, timezone.now())
                held = not stopped and finish.status == TaskStatus.PENDING
                logger.warning(
                    "task timed out id=%s name=%s (%s)",
                    task_id,
                    running.task.name,
                    "process killed"
                    if stopped
                    else "its thread cannot be stopped: the task is held until it returns, then retried"
                    if held
                    else "thread left to finish; its result is discarded",
                )
                if held:
                    self._overran[task_id] = finish
                    continue
                del self._running[task_id]
                self._unsaved.append(finish)
        if self.stopping and not self._gave_back_unstarted:
            # Tasks queued in a child but not started: give them back now, for other workers.
            self._gave_back_unstarted = True
            self._release_running(pool, unstarted_only=True)
        if self._stop_deadline is not None and now >= self._stop_deadline and self._running:
            self._stop_deadline = None  # once: what cannot be stopped is waited for, not polled for
            self._release_running(pool)

    def _release_running(self, pool: TaskPool, *, unstarted_only: bool = False) -> None:
        """Stop what still runs and put it back to PENDING without counting the attempt.

        `unstarted_only`: only the tasks queued in a child that have not started. A task the pool
        cannot stop (a thread) stays held, its lease renewed, until it returns: releasing it would
        let another worker run it while this thread still does."""
        for task_id, running in list(self._running.items()):
            if unstarted_only:
                if pool.start_of(task_id) is not None or not pool.stop(task_id):
                    continue
            elif not pool.stop(task_id):
                if task_id not in self._held_threads:
                    self._held_threads.add(task_id)
                    logger.warning(
                        "task id=%s name=%s is still running in a thread, which cannot be stopped; the worker "
                        "holds it until it returns (stop at once with a second Ctrl+C: it then runs again "
                        "after its lease)",
                        task_id,
                        running.task.name,
                    )
                continue
            del self._running[task_id]
            logger.warning("task released id=%s: the worker is stopping", task_id)
            now = timezone.now()
            self._unsaved.append(
                self._finish(running, TaskStatus.PENDING, now, attempt_outcome=None, run_at=now, release=True)
            )

    def _crashed(self, running: _Running, finished_at: datetime) -> Finish:
        if running.task.crash_reruns < self.max_crash_reruns:
            finish = self._finish(
                running,
                TaskStatus.PENDING,
                finished_at,
                error_code=OperationalErrorCode.WORKER_CRASHED.value,
                error_message="the process running it died",
                attempt_outcome=AttemptOutcome.WORKER_LOST,
                run_at=finished_at,
                crash=True,
            )
            log_outcome(running.task, finish)
            return finish
        outcome = failure(
            OperationalErrorCode.WORKER_CRASHED, f"the process running it died {self.max_crash_reruns + 1} time(s)"
        )
        return self._finish_for(running, outcome, finished_at)

    def _finish_for(self, running: _Running, outcome: Outcome, finished_at: datetime) -> Finish:
        """The finish for a run that produced an outcome: ended, or back to PENDING for a retry."""
        retry_at = None if outcome.ok else self._retry_at(running.task, outcome.error_code, finished_at)
        finish = self._finish(
            running,
            TaskStatus.COMPLETED if outcome.ok else TaskStatus.FAILED if retry_at is None else TaskStatus.PENDING,
            finished_at,
            result_json=outcome.result_json if retry_at is None else None,
            error_code=outcome.error_code,
            error_message=outcome.error_message,
            error_traceback=outcome.error_traceback,
            attempt_outcome=AttemptOutcome.COMPLETED if outcome.ok else AttemptOutcome.FAILED,
            run_at=retry_at,
        )
        log_outcome(running.task, finish, outcome)
        return finish

    def _finish(
        self,
        running: _Running,
        status: str,
        finished_at: datetime,
        *,
        attempt_outcome: str | None,
        result_json: str | None = None,
        error_code: str | None = None,
        error_message: str = "",
        error_traceback: str = "",
        run_at: datetime | None = None,
        release: bool = False,
        crash: bool = False,
    ) -> Finish:
        task = running.task
        return Finish(
            task_id=task.id,
            claim_token=task.claim_token,
            attempt=task.attempt,
            status=status,
            result_json=result_json,
            error_code=error_code,
            error_message=error_message,
            error_traceback=error_traceback,
            worker_id=self.worker_id,
            started_at=running.started_at,
            finished_at=finished_at,
            attempt_outcome=attempt_outcome,
            run_at=run_at,
            release=release,
            crash=crash,
        )

    def _retry_at(self, task: ClaimedTask, error_code: str | None, now: datetime) -> datetime | None:
        """When to run a failed task again under its RetryPolicy, or None to let it fail."""
        definition = self.app.get_task(task.name)
        policy = definition.retry_policy if definition else None
        if policy is None or not policy.retries(error_code) or task.retries_used >= policy.max_retries:
            return None
        retry_at = now + timedelta(seconds=policy.delay_seconds(task.retries_used + 1))
        if task.good_until is not None and retry_at >= task.good_until:
            return None  # the retry would land after the task expires
        return retry_at

    def _save(self) -> None:
        if not self._unsaved or not self._database_ready():
            return
        batch, self._unsaved = self._unsaved, []
        # A row the database refuses is split off and stored as a failure; the rest are written.
        saved = save_finishes(self._broker, batch)
        if saved.error is not None:
            # Keep the outcomes and try again; if the lease runs out first, the claim token
            # makes this worker's late write a no-op and the task simply runs again.
            self._unsaved = saved.unsaved + self._unsaved
            self._database_error("finish", saved.error)
        else:
            self._db_failures = 0
        if saved.written:
            self.stats.last_finish_monotonic = time.monotonic()
        applied = saved.applied
        for finish in saved.written:
            if finish.task_id not in applied:
                self.stats.stale_finishes += 1
                logger.warning(
                    "result discarded id=%s claim_token=%d: the task is no longer held by this worker",
                    finish.task_id,
                    finish.claim_token,
                )
            elif finish.status == TaskStatus.COMPLETED:
                self.stats.completed += 1
            elif finish.status == TaskStatus.FAILED:
                self.stats.failed += 1
            elif finish.release:
                self.stats.released += 1
            else:
                self.stats.retried += 1
        signals.finished(self, saved.written, applied)

    def _maintain(self, pool: TaskPool) -> None:
        """Heartbeat; renew leases (stopping tasks cancelled meanwhile); expire stale sends; re-run
        tasks whose worker was lost."""
        now = timezone.now()
        try:
            self._broker.worker_heartbeat(worker_id=self.worker_id, now=now)
            held = [(r.task.id, r.task.claim_token) for r in self._running.values()]
            renewed = self._broker.renew_leases(
                worker_id=self.worker_id, held=held, lease_until=now + timedelta(seconds=self.lease_s)
            )
            for task_id, _ in held:
                if task_id not in renewed and task_id in self._running:
                    stopped = pool.stop(task_id)
                    del self._running[task_id]
                    self._overran.pop(task_id, None)  # no retry for a task cancelled or taken over
                    logger.warning(
                        "task id=%s was cancelled or taken over; %s",
                        task_id,
                        "its process was killed" if stopped else "its result will be discarded",
                    )
            expired = TaskError(error_code=OutcomeCode.TASK_EXPIRED, message="not started before good_until")
            expired_ids = self._broker.expire_pending(
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
            if time.monotonic() >= self._next_prune:
                self._next_prune = time.monotonic() + PRUNE_EVERY_S
                prune_finished(self._broker, now=now, limit=PRUNE_BATCH)
        except (BrokerError, DatabaseError) as exc:  # the scheduler's hook reads through the ORM
            self._database_error("maintenance", exc)
            return
        signals.ended_in_maintenance(self, [*expired_ids, *lost.failed])
        for task_id in lost.requeued:
            logger.warning("task requeued id=%s: its worker's lease expired", task_id)
        for task_id in lost.failed:
            logger.error("task failed id=%s: WORKER_CRASHED after %d re-runs", task_id, self.max_crash_reruns)

    def _run_schedules(self) -> None:
        """Send the due schedule slots, then sleep until the next one (or a heartbeat, if sooner)."""
        self._next_schedules = time.monotonic() + self.heartbeat_s
        try:
            tick = run_schedules(timezone.now(), app=self.app)
        except (BrokerError, DatabaseError) as exc:
            self._database_error("schedules", exc)
            return
        if tick.next_at is not None:
            delay = (tick.next_at - timezone.now()).total_seconds()
            if delay <= 0:
                delay = SCHEDULE_RETRY_S  # still due after this run: its send failed
            self._next_schedules = min(self._next_schedules, time.monotonic() + delay)

    def _register(self) -> None:
        try:
            self._broker.register_worker(
                worker_id=self.worker_id,
                hostname=socket.gethostname(),
                pid=os.getpid(),
                queues=self.queues or [],
                concurrency=self.concurrency,
                pool=self.pool_kind,
                now=timezone.now(),
            )
        except BrokerError as exc:
            self._database_error("register", exc)

    def _unregister(self) -> None:
        try:
            self._broker.worker_heartbeat(worker_id=self.worker_id, now=timezone.now(), stopped=True)
        except BrokerError as exc:  # The record then just looks silent, which is what it is.
            logger.warning("could not record the worker's stop id=%s: %s", self.worker_id, exc)

    def _idle(self, until: float) -> None:
        """Wait until `until` (monotonic), one poll interval, or word of new work, whichever is first."""
        pause = max(min(self.poll_interval_s, until - time.monotonic()), 0)
        if self.stopping:
            time.sleep(min(pause, 0.05))  # the stop event no longer blocks; still do not spin
        elif not self._database_ready():
            self._stopping.wait(pause)
        else:
            try:
                self._broker.wait_for_new_work(pause, self._stopping)
            except BrokerError as exc:
                self._database_error("listen", exc)

    def _still_saving(self) -> bool:
        """Whether a stopping worker should keep trying to store outcomes the database refused
        for a while (it stops trying at the shutdown timeout: those tasks run again after their lease)."""
        return bool(self._unsaved) and time.monotonic() < (self._give_up_saving_at or 0)

    def _database_ready(self) -> bool:
        return time.monotonic() >= self._db_retry_at

    def _database_error(self, step: str, exc: Exception) -> None:
        self._db_failures += 1
        backoff = min(0.1 * 2 ** (self._db_failures - 1), MAX_BACKOFF_S)
        self._db_retry_at = time.monotonic() + backoff
        if isinstance(exc, BrokerError) and exc.missing_table and not self._told_to_migrate:
            self._told_to_migrate = True
            logger.error(
                "the horsies_django tables are missing in database %r: run `manage.py migrate` "
                "(the worker keeps trying)",
                self._broker.alias,
            )
        logger.warning("database error during %s, retrying in %.1fs: %s", step, backoff, exc)
        try:
            connections[self._broker.alias].close()
        except DatabaseError:  # The connection is already gone; the next query reconnects.
            logger.debug("closing the broken connection failed", exc_info=True)
