"""The queue's storage interface. Every statement that touches the queue lives in this package;
one subclass per database vendor supplies what must differ (locking, wakeups, type spellings)."""

from __future__ import annotations

import functools
import threading
import time
import uuid
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

from django.core.exceptions import SynchronousOnlyOperation
from django.db import DatabaseError, InterfaceError, InternalError, OperationalError, connections, transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.backends.utils import CursorWrapper

from ..statuses import ACTIVE, ENDED, ENDED_UNSUCCESSFULLY, READY, AttemptOutcome, TaskStatus, sql_list
from ..types.codec import dumps, loads
from ..types.codes import OperationalErrorCode, OutcomeCode
from ..types.grouping import group_key
from ..types.retry import RateLimit

TASK_TABLE = "horsies_task"
ATTEMPT_TABLE = "horsies_task_attempt"
WORKER_TABLE = "horsies_worker"
RATE_START_TABLE = "horsies_rate_start"
# Names of the claim locks (see `claim_capped`): one per capped queue, one per rate-limited task,
# and one for CLUSTER_MAX_CONCURRENCY, which counts every queue.
CLUSTER_LOCK = "cluster"

# Statuses as SQL literals, from the one enum (fixed words, never user input).
SQL_PENDING = sql_list({TaskStatus.PENDING})
SQL_RUNNING = sql_list({TaskStatus.RUNNING})
SQL_COMPLETED = sql_list({TaskStatus.COMPLETED})
SQL_FAILED = sql_list({TaskStatus.FAILED})
SQL_CANCELLED = sql_list({TaskStatus.CANCELLED})
SQL_EXPIRED = sql_list({TaskStatus.EXPIRED})
SQL_ACTIVE = sql_list(ACTIVE)

# SQLite allows 32,766 bound parameters per statement; this keeps every batch well inside it.
INSERT_CHUNK = 1000


class BrokerError(Exception):
    """A queue statement failed in the database or its driver (the driver's error is `__cause__`).

    Every public method of a broker raises this, and only this, for a database failure, so callers
    catch it and let programming errors surface.

    `transient`: the statement was not refused for what it holds (the connection was lost, the
    server is down, a lock timed out, the tables are missing); it may succeed later as it is.
    Otherwise the database refused the values (too long for a column, a character it cannot
    store), and sending the same values again fails the same way.
    `missing_table`: the queue's tables do not exist: `manage.py migrate` was not run.
    """

    def __init__(self, message: str, *, transient: bool, missing_table: bool = False) -> None:
        super().__init__(message)
        self.transient = transient
        self.missing_table = missing_table


_F = TypeVar("_F", bound=Callable[..., Any])
# PostgreSQL's "undefined_table"; SQLite says it in words.
_UNDEFINED_TABLE = "42P01"


def _translating(method: _F) -> _F:
    """Wrap a broker method so that driver errors leave it as `BrokerError`."""

    @functools.wraps(method)
    def call(self: Broker, *args: Any, **kwargs: Any) -> Any:
        with self.translated_errors():
            return method(self, *args, **kwargs)

    call.__horsies_translated__ = True  # type: ignore[attr-defined]
    return call  # type: ignore[return-value]


def _translating_waiter(method: _F) -> _F:
    """`_translating` for `result_waiter`: the context manager and the wait it yields."""

    @functools.wraps(method)
    @contextmanager
    def call(self: Broker, task_id: str) -> Iterator[Callable[[float], None]]:
        with self.translated_errors():
            manager = method(self, task_id)
            wait = manager.__enter__()

        def translated_wait(timeout: float) -> None:
            with self.translated_errors():
                wait(timeout)

        try:
            yield translated_wait
        finally:
            with self.translated_errors():
                manager.__exit__(None, None, None)

    call.__horsies_translated__ = True  # type: ignore[attr-defined]
    return call  # type: ignore[return-value]


@dataclass(frozen=True, slots=True)
class NewTask:
    """A row to insert: everything `send()` decided, already encoded."""

    id: uuid.UUID
    name: str
    queue_name: str
    priority: int
    arguments_json: str
    run_at: datetime
    enqueued_at: datetime
    good_until: datetime | None
    max_retries: int
    idempotency_key: str | None = None


@dataclass(frozen=True, slots=True)
class ClaimedTask:
    """A task this worker now holds: run it, then finish it with the same `claim_token`."""

    id: str
    name: str
    # As stored: an object of encoded arguments, unless the row was tampered with (`execute()`
    # refuses anything else), or `UNDECODABLE` when the stored text is not JSON at all.
    arguments: Any
    attempt: int
    claim_token: int
    max_retries: int
    priority: int
    crash_reruns: int = 0
    good_until: datetime | None = None

    @property
    def retries_used(self) -> int:
        """Attempts before this one that ended in a retry (crash re-runs are counted apart)."""
        return self.attempt - 1 - self.crash_reruns


@dataclass(frozen=True, slots=True)
class Finish:
    """How one held attempt ended. `status` PENDING with `run_at` set means: run again then.

    `attempt_outcome` None writes no attempt row; `release` also gives the attempt back (a
    shutdown that stopped the task does not count as a try); `crash` counts a crash re-run.
    """

    task_id: str
    claim_token: int
    attempt: int
    status: str
    result_json: str | None
    error_code: str | None
    error_message: str
    error_traceback: str
    worker_id: str
    started_at: datetime
    finished_at: datetime
    attempt_outcome: str | None
    run_at: datetime | None = None
    release: bool = False
    crash: bool = False


@dataclass(frozen=True, slots=True)
class StoredOutcome:
    status: str
    result: Any


@dataclass(frozen=True, slots=True)
class LostTasks:
    """What `recover_lost` did: tasks put back to run again, and tasks ended as crashed."""

    requeued: list[str]
    failed: list[str]


TASK_COLUMNS = (
    "id, name, queue_name, priority, status, arguments, result, error_code, error_message, "
    "error_traceback, attempt, max_retries, crash_reruns, run_at, enqueued_at, good_until, claim_token, "
    "idempotency_key"
)
FINISH_COLUMNS = (
    "id, token, status, result, error_code, error_message, error_traceback, finished_at, run_at, uncount, crash, "
    "attempt, worker_id, started_at, attempt_finished_at, outcome, error_group"
)
ATTEMPT_COLUMNS = (
    "task_id, number, worker_id, started_at, finished_at, outcome, error_code, error_message, error_traceback"
)


# The arguments of a claimed row whose stored text is not JSON (SQLite stores any text).
UNDECODABLE = "<arguments that are not JSON>"


def _stored_arguments(raw: Any) -> Any:
    """A row's arguments, decoded; never raises, so one bad row cannot fail a whole claim."""
    try:
        return loads(raw)
    except (ValueError, RecursionError):
        return UNDECODABLE


class Broker:
    """Queue SQL shared by every vendor; subclasses override what their database spells differently."""

    vendor = ""
    json_placeholder = "%s"
    # How long an idle worker waits before looking for work again, unless settings say otherwise.
    default_poll_interval_s = 0.05
    # Appended to reads of rows about to be updated; PostgreSQL skips rows another worker holds.
    lock_rows = ""
    # Where a claim reads its ready rows from: SQLite names the ready index (see SqliteBroker).
    ready_rows = TASK_TABLE

    # The public operations: each turns driver errors into `BrokerError` (see `__init_subclass__`).
    operations = (
        "enqueue_many", "enqueue_idempotent", "claim", "claim_capped", "finish_many", "renew_leases",
        "expire_pending", "recover_lost", "cancel", "retry", "run_now", "prune", "register_worker",
        "worker_heartbeat", "fetch_outcome", "wait_for_new_work",
    )  # fmt: skip
    # What the driver raises: Django wraps its errors in `DatabaseError`; a value the driver cannot
    # encode (a lone surrogate) is a `UnicodeError`; Django refuses the database inside an event
    # loop with `SynchronousOnlyOperation`. Vendors add their driver's own classes.
    driver_errors: tuple[type[BaseException], ...] = (DatabaseError, UnicodeError, SynchronousOnlyOperation)
    # Of those, the ones that say the connection or the server failed rather than the values.
    transient_errors: tuple[type[BaseException], ...] = (OperationalError, InterfaceError, InternalError)

    def __init__(self, alias: str, *, poll_only: bool = False, listen_alias: str | None = None) -> None:
        self.alias = alias
        self.poll_only = poll_only
        # LISTEN needs a session of its own; behind a transaction pooler, a direct connection.
        self.listen_alias = listen_alias or alias
        self._listening_on: object = None
        self._workflows_seen_until = 0.0
        self._schedule_changed = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for name in cls.operations:
            method = getattr(cls, name)
            if not getattr(method, "__horsies_translated__", False):
                setattr(cls, name, _translating(method))
        if not getattr(cls.result_waiter, "__horsies_translated__", False):
            cls.result_waiter = _translating_waiter(cls.result_waiter)  # type: ignore[method-assign]

    @contextmanager
    def translated_errors(self) -> Iterator[None]:
        """Raise the driver's errors inside the block as `BrokerError`."""
        try:
            yield
        except BrokerError:
            raise
        except self.driver_errors as exc:
            raise self.broker_error(exc) from exc

    def broker_error(self, exc: BaseException) -> BrokerError:
        sqlstate = getattr(exc, "sqlstate", None) or getattr(exc.__cause__, "sqlstate", None)
        missing_table = sqlstate == _UNDEFINED_TABLE or "no such table" in str(exc)
        transient = missing_table or isinstance(exc, self.transient_errors)
        return BrokerError(f"{type(exc).__name__}: {exc}", transient=transient, missing_table=missing_table)

    @property
    def connection(self) -> BaseDatabaseWrapper:
        return connections[self.alias]

    @property
    def listen_connection(self) -> BaseDatabaseWrapper:
        return connections[self.listen_alias]

    @property
    def pooled(self) -> bool:
        """Whether the queue's connection may be behind a transaction pooler (POLL_ONLY, or LISTEN
        kept on another connection): then nothing may rely on, or leave behind, session state."""
        return self.poll_only or self.listen_alias != self.alias

    # -- vendor hooks ---------------------------------------------------------------------

    def db_uuid(self, value: uuid.UUID) -> Any:
        """A UUID as this database stores it."""
        raise NotImplementedError("subclasses of Broker must provide db_uuid()")

    def db_datetime(self, value: datetime | None) -> Any:
        return self.connection.ops.adapt_datetimefield_value(value)

    def plan_claims(self, cursor: Any) -> None:
        """Steer the planner of the claim's transaction to the ready index (a vendor hook)."""

    @contextmanager
    def write_transaction(self) -> Iterator[CursorWrapper]:
        """A short transaction that takes the write lock up front (joins the caller's, if any)."""
        with transaction.atomic(using=self.alias), self.connection.cursor() as cursor:
            yield cursor

    def claim(
        self, *, worker_id: str, queues: Sequence[str] | None, limit: int, now: datetime, lease_until: datetime
    ) -> list[ClaimedTask]:
        """Claim up to `limit` ready tasks, highest priority (smallest number) first, as RUNNING."""
        raise NotImplementedError("subclasses of Broker must provide claim()")

    def wait_for_new_work(self, timeout: float, stop: threading.Event | None = None) -> None:
        """Block until new work may be ready or `timeout` seconds pass. Polling databases sleep;
        PostgreSQL listens for the NOTIFY that sends commit. Either way the caller polls after."""
        if stop is None:
            time.sleep(timeout)
        else:
            stop.wait(timeout)

    @contextmanager
    def result_waiter(self, task_id: str) -> Iterator[Callable[[float], None]]:
        """A function that waits (at most its argument, in seconds) for `task_id` to end."""
        yield time.sleep

    def announce_new_work(self, cursor: Any, queue_names: set[str]) -> None:
        """Wake idle workers once this transaction commits, where the database can."""

    def announce_schedule_change(self) -> None:
        """Wake workers sleeping until a schedule's next slot (once this transaction commits), where
        the database can; elsewhere they read the schedules again within a heartbeat."""

    def take_schedule_change(self) -> bool:
        """Whether `wait_for_new_work` heard of a schedule change since the last call."""
        changed, self._schedule_changed = self._schedule_changed, False
        return changed

    def lock_capped_claims(self, cursor: Any, names: Sequence[str]) -> None:
        """Make claims that count against the same limits take turns, until this transaction ends:
        one lock per name (a capped queue, a rate-limited task, the cluster cap). SQLite's write
        lock, which every claim takes, already does."""

    def notify_done(self, cursor: Any, task_ids: Sequence[Any]) -> None:
        """Tell waiting `get()` calls that these tasks ended, where the database can."""

    # -- shared SQL -----------------------------------------------------------------------

    def enqueue_many(self, tasks: Sequence[NewTask]) -> None:
        """Insert tasks in multi-row statements, all or nothing, inside the caller's transaction if any."""
        if not tasks:
            return
        one_row = (
            f"(%s, %s, %s, %s, {SQL_PENDING}, {self.json_placeholder}, NULL, NULL, '', '', 0, %s, 0, %s, %s, %s, 0, %s)"
        )
        with self.write_transaction() as cursor:
            for start in range(0, len(tasks), INSERT_CHUNK):
                chunk = tasks[start : start + INSERT_CHUNK]
                params: list[Any] = []
                for task in chunk:
                    params += [
                        self.db_uuid(task.id),
                        task.name,
                        task.queue_name,
                        task.priority,
                        task.arguments_json,
                        task.max_retries,
                        self.db_datetime(task.run_at),
                        self.db_datetime(task.enqueued_at),
                        self.db_datetime(task.good_until),
                        task.idempotency_key,
                    ]
                values = ", ".join([one_row] * len(chunk))
                cursor.execute(f"INSERT INTO {TASK_TABLE} ({TASK_COLUMNS}) VALUES {values}", params)

    def enqueue_idempotent(self, task: NewTask, *, ended_after: datetime) -> str:
        """Insert `task` unless a task of its name holds its idempotency key; return the id of the
        task that now answers for the key. A holder that ended before `ended_after` gives the key
        up to the new task. The unique index decides between concurrent senders."""
        insert = (
            f"INSERT INTO {TASK_TABLE} ({TASK_COLUMNS}) VALUES (%s, %s, %s, %s, {SQL_PENDING}, "
            f"{self.json_placeholder}, NULL, NULL, '', '', 0, %s, 0, %s, %s, %s, 0, %s) "
            "ON CONFLICT (name, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING RETURNING id"
        )
        params = [
            self.db_uuid(task.id), task.name, task.queue_name, task.priority, task.arguments_json,
            task.max_retries, self.db_datetime(task.run_at), self.db_datetime(task.enqueued_at),
            self.db_datetime(task.good_until), task.idempotency_key,
        ]  # fmt: skip
        with self.write_transaction() as cursor:
            for _ in range(2):
                cursor.execute(insert, params)
                if cursor.fetchone() is not None:
                    self.announce_new_work(cursor, {task.queue_name})
                    return str(task.id)
                cursor.execute(
                    f"SELECT id, status, finished_at FROM {TASK_TABLE} WHERE name = %s AND idempotency_key = %s",
                    [task.name, task.idempotency_key],
                )
                row = cursor.fetchone()
                if row is None:
                    continue  # the holder was deleted meanwhile: try the insert again
                holder, status, finished_at = row
                finished = self.py_datetime(finished_at)
                if status not in ENDED or (finished is not None and finished >= ended_after):
                    return str(uuid.UUID(str(holder)))
                cursor.execute(
                    f"UPDATE {TASK_TABLE} SET idempotency_key = NULL WHERE id = %s AND idempotency_key = %s",
                    [holder, task.idempotency_key],
                )
        raise BrokerError(f"idempotency key {task.idempotency_key!r} is contended; send again", transient=True)

    def claim_capped(
        self,
        *,
        worker_id: str,
        queues: Sequence[str] | None,
        limit: int,
        now: datetime,
        lease_until: datetime,
        queue_caps: Mapping[str, int],
        cluster_cap: int | None,
        rate_limits: Mapping[str, RateLimit],
    ) -> list[ClaimedTask]:
        """`claim()` under cluster-wide limits: at most `queue_caps[q]` tasks of queue q held at once
        (0 pauses it), at most `cluster_cap` in all, and at most `count` starts of a rate-limited
        task per period.

        A count is only right if nobody claims between the count and the claim, so claims of a
        capped queue take turns on that queue's lock, and claims of a rate-limited task on that
        task's lock. Queues and tasks without a limit take no lock: their claims run side by side.
        Only `cluster_cap`, which counts every queue, makes every claim take one shared lock.
        """
        caps = {name: cap for name, cap in queue_caps.items() if not queues or name in queues}
        if not caps and cluster_cap is None and not rate_limits:
            return self.claim(worker_id=worker_id, queues=queues, limit=limit, now=now, lease_until=lease_until)
        with self.write_transaction() as cursor:
            self.plan_claims(cursor)
            room = limit
            if cluster_cap is not None:
                self.lock_capped_claims(cursor, [CLUSTER_LOCK])
                cursor.execute(f"SELECT count(*) FROM {TASK_TABLE} WHERE status IN ({SQL_ACTIVE})")
                room = min(room, cluster_cap - cursor.fetchone()[0])
                if room <= 0:
                    return []
            # A first look, without locks, leaves out queues that look full and tasks that look
            # spent, so that their rows do not crowd out the others from the candidates.
            queue_room = self._queue_room(cursor, caps)
            name_room = self._name_room(cursor, rate_limits, now)
            candidates = self._candidates(cursor, queues, queue_room, name_room, now, room * 4 + 16)
            chosen = self._choose(candidates, queue_room, name_room, room)
            locked_queues = sorted({queue for _, queue, _ in chosen if queue in caps})
            locked_names = sorted({name for _, _, name in chosen if name in rate_limits})
            if locked_queues or locked_names:
                self.lock_capped_claims(
                    cursor, [f"queue:{q}" for q in locked_queues] + [f"task:{n}" for n in locked_names]
                )
                # Counted again under the locks: these counts are exact until this transaction ends.
                queue_room = self._queue_room(cursor, {q: caps[q] for q in locked_queues})
                name_room = self._name_room(cursor, {n: rate_limits[n] for n in locked_names}, now)
                # A capped queue or limited task not locked here is left for the next claim.
                eligible = [
                    (task_id, queue, name)
                    for task_id, queue, name in candidates
                    if (queue not in caps or queue in queue_room) and (name not in rate_limits or name in name_room)
                ]
                chosen = self._choose(eligible, queue_room, name_room, room)
            if not chosen:
                return []
            at = self.db_datetime(now)
            cursor.execute(
                f"UPDATE {TASK_TABLE} SET status = {SQL_RUNNING}, claim_token = claim_token + 1, "
                "attempt = attempt + 1, worker_id = %s, claimed_at = %s, started_at = %s, lease_expires_at = %s "
                f"WHERE id IN ({', '.join(['%s'] * len(chosen))}) AND status = {SQL_PENDING} "
                + self.claim_returning.format(t=""),
                [worker_id, at, at, self.db_datetime(lease_until), *(task_id for task_id, _, _ in chosen)],
            )
            claimed = self._claimed(cursor.fetchall())
            self._record_starts(cursor, [task.name for task in claimed if task.name in name_room], now, rate_limits)
            return claimed

    def _queue_room(self, cursor: Any, caps: Mapping[str, int]) -> dict[str, int]:
        """How many more tasks each capped queue may hold now."""
        if not caps:
            return {}
        cursor.execute(
            f"SELECT queue_name, count(*) FROM {TASK_TABLE} WHERE status IN ({SQL_ACTIVE}) "
            f"AND queue_name IN ({', '.join(['%s'] * len(caps))}) GROUP BY queue_name",
            list(caps),
        )
        held = dict(cursor.fetchall())
        return {name: cap - held.get(name, 0) for name, cap in caps.items()}

    def _name_room(self, cursor: Any, rate_limits: Mapping[str, RateLimit], now: datetime) -> dict[str, int]:
        """How many more starts each rate-limited task may have now: every start within the period
        counts (retries and re-runs included), not only each task's latest."""
        if not rate_limits:
            return {}
        where = " OR ".join(["(task_name = %s AND started_at > %s)"] * len(rate_limits))
        params: list[Any] = []
        for name, rate in rate_limits.items():
            params += [name, self.db_datetime(now - timedelta(seconds=rate.period_s))]
        cursor.execute(f"SELECT task_name, count(*) FROM {RATE_START_TABLE} WHERE {where} GROUP BY task_name", params)
        started = dict(cursor.fetchall())
        return {name: rate.count - started.get(name, 0) for name, rate in rate_limits.items()}

    def _candidates(
        self,
        cursor: Any,
        queues: Sequence[str] | None,
        queue_room: Mapping[str, int],
        name_room: Mapping[str, int],
        now: datetime,
        limit: int,
    ) -> list[tuple[Any, str, str]]:
        """Ready rows in claim order, leaving out full queues and spent tasks; on PostgreSQL the
        rows are locked (others' locked rows skipped) until the claim's transaction ends."""
        at = self.db_datetime(now)
        conditions = [f"status = {SQL_PENDING}", "run_at <= %s", "(good_until IS NULL OR good_until > %s)"]
        params: list[Any] = [at, at]
        if queues:
            conditions.append(f"queue_name IN ({', '.join(['%s'] * len(queues))})")
            params += list(queues)
        for column, full in (
            ("queue_name", [q for q, free in queue_room.items() if free <= 0]),
            ("name", [n for n, free in name_room.items() if free <= 0]),
        ):
            if full:
                conditions.append(f"{column} NOT IN ({', '.join(['%s'] * len(full))})")
                params += full
        cursor.execute(
            f"SELECT id, queue_name, name FROM {self.ready_rows} WHERE {' AND '.join(conditions)} "
            f"ORDER BY priority, run_at LIMIT %s{self.lock_rows}",
            [*params, limit],
        )
        return [tuple(row) for row in cursor.fetchall()]

    @staticmethod
    def _choose(
        candidates: Sequence[tuple[Any, str, str]],
        queue_room: Mapping[str, int],
        name_room: Mapping[str, int],
        room: int,
    ) -> list[tuple[Any, str, str]]:
        """The first `room` candidates that fit the room left in their queue and for their task."""
        queue_left, name_left = dict(queue_room), dict(name_room)
        chosen: list[tuple[Any, str, str]] = []
        for row in candidates:
            if len(chosen) == room:
                break
            _, queue_name, name = row
            if queue_left.get(queue_name, 1) <= 0 or name_left.get(name, 1) <= 0:
                continue
            chosen.append(row)
            if queue_name in queue_left:
                queue_left[queue_name] -= 1
            if name in name_left:
                name_left[name] -= 1
        return chosen

    def _record_starts(
        self, cursor: Any, names: Sequence[str], now: datetime, rate_limits: Mapping[str, RateLimit]
    ) -> None:
        """Write a row per start of a rate-limited task, and delete that task's rows that have
        left its period (the claim holds the task's lock)."""
        if not names:
            return
        at = self.db_datetime(now)
        cursor.execute(
            f"INSERT INTO {RATE_START_TABLE} (task_name, started_at) VALUES {', '.join(['(%s, %s)'] * len(names))}",
            [value for name in names for value in (name, at)],
        )
        for name in sorted(set(names)):
            since = self.db_datetime(now - timedelta(seconds=rate_limits[name].period_s))
            cursor.execute(f"DELETE FROM {RATE_START_TABLE} WHERE task_name = %s AND started_at <= %s", [name, since])

    def _claimed(self, rows: Sequence[Sequence[Any]]) -> list[ClaimedTask]:
        claimed = [
            ClaimedTask(
                id=str(uuid.UUID(str(row[0]))),
                name=row[1],
                arguments=_stored_arguments(row[2]),
                attempt=row[3],
                claim_token=row[4],
                max_retries=row[5],
                priority=row[6],
                crash_reruns=row[7],
                good_until=self.py_datetime(row[8]),
            )
            for row in rows
        ]
        # RETURNING gives no order; run the most urgent first when the pool is short.
        claimed.sort(key=lambda task: task.priority)
        return claimed

    claim_returning = (
        "RETURNING {t}id, {t}name, {t}arguments, {t}attempt, {t}claim_token, {t}max_retries, {t}priority, "
        "{t}crash_reruns, {t}good_until"
    )

    def py_datetime(self, value: Any) -> datetime | None:
        """A datetime column read by raw SQL, as an aware datetime."""
        return value  # type: ignore[no-any-return]

    def finish_many(self, finishes: Sequence[Finish]) -> set[str]:
        """Write the outcome of held attempts, and their history rows, in one statement per batch;
        return the ids actually finished.

        A row is written only while the task is still held under the same claim token, so a worker
        that lost its lease cannot overwrite the attempt that replaced it, and a duplicate finish
        is a no-op.
        """
        applied: set[str] = set()
        for start in range(0, len(finishes), INSERT_CHUNK):
            applied |= self._finish_batch(finishes[start : start + INSERT_CHUNK])
        return applied

    def _finish_batch(self, finishes: Sequence[Finish]) -> set[str]:
        raise NotImplementedError("subclasses of Broker must provide _finish_batch()")

    def _finish_row(self, finish: Finish) -> list[Any]:
        """The values of one finish, in the order of `FINISH_COLUMNS`."""
        return [
            self.db_uuid(uuid.UUID(finish.task_id)),
            finish.claim_token,
            str(finish.status),  # a TaskStatus member is bound as its plain value
            finish.result_json,
            finish.error_code,
            finish.error_message,
            finish.error_traceback,
            self.db_datetime(finish.finished_at if finish.status not in READY else None),
            self.db_datetime(finish.run_at),
            int(finish.release),
            int(finish.crash),
            finish.attempt,
            finish.worker_id,
            self.db_datetime(finish.started_at),
            self.db_datetime(finish.finished_at),
            None if finish.attempt_outcome is None else str(finish.attempt_outcome),
            group_key(finish.error_code, finish.error_message),
        ]

    # The SET clause and history insert shared by the vendors' batch statements, over rows `v`.
    # A task put back to PENDING (released, retried, crashed) is no longer on any worker: its
    # worker_id, claimed_at and started_at go, as they do when an operator retries it.
    finish_set = (
        "status = v.status, result = {json}, error_code = v.error_code, error_message = v.error_message, "
        "error_traceback = v.error_traceback, error_group = v.error_group, finished_at = v.finished_at, "
        "lease_expires_at = NULL, "
        "run_at = COALESCE(v.run_at, {t}.run_at), attempt = {t}.attempt - v.uncount, "
        "crash_reruns = {t}.crash_reruns + v.crash, "
        f"worker_id = CASE WHEN v.status = {SQL_PENDING} THEN NULL ELSE {{t}}.worker_id END, "
        f"claimed_at = CASE WHEN v.status = {SQL_PENDING} THEN NULL ELSE {{t}}.claimed_at END, "
        f"started_at = CASE WHEN v.status = {SQL_PENDING} THEN NULL ELSE v.started_at END, "
        # Back to PENDING, neither released at shutdown nor after a crash: a RetryPolicy retry.
        f"retry_count = {{t}}.retry_count + CASE WHEN v.status = {SQL_PENDING} AND v.uncount = 0 AND v.crash = 0 "
        "THEN 1 ELSE 0 END"
    )
    finish_where = f"{{t}}.id = v.id AND {{t}}.claim_token = v.token AND {{t}}.status IN ({SQL_ACTIVE})"
    attempt_insert = (
        f"INSERT INTO {ATTEMPT_TABLE} ({ATTEMPT_COLUMNS}) "
        "SELECT v.id, v.attempt, v.worker_id, v.started_at, v.attempt_finished_at, v.outcome, v.error_code, "
        "v.error_message, v.error_traceback FROM v JOIN done ON done.id = v.id WHERE v.outcome IS NOT NULL"
    )

    def _advance_workflows(self, task_ids: Collection[Any]) -> None:
        """Move on the workflows of tasks that just ended (see `broker.workflows`); call it inside
        the transaction that ended them."""
        from .workflows import advance_workflows

        advance_workflows(self, task_ids)

    def _workflows_active(self) -> bool:
        """Whether a workflow may be running or paused (see `broker.workflows`). A yes is trusted
        for a second, since a wrong yes only costs the hook's read; a no is read afresh each time."""
        from .workflows import WorkflowSql

        now = time.monotonic()
        if now < self._workflows_seen_until:
            return True
        active = WorkflowSql(self).any_active()
        if active:
            self._workflows_seen_until = now + 1.0
        return active

    def renew_leases(self, *, worker_id: str, held: Sequence[tuple[str, int]], lease_until: datetime) -> set[str]:
        """Extend the lease of every task this worker still holds, in one statement; return the
        ids renewed. A held task missing from them was cancelled or taken over: stop running it."""
        if not held:
            return set()
        pairs = " OR ".join(["(id = %s AND claim_token = %s)"] * len(held))
        params: list[Any] = [self.db_datetime(lease_until), worker_id]
        for task_id, token in held:
            params += [self.db_uuid(uuid.UUID(task_id)), token]
        with self.connection.cursor() as cursor:
            cursor.execute(
                f"UPDATE {TASK_TABLE} SET lease_expires_at = %s WHERE worker_id = %s "
                f"AND status IN ({SQL_ACTIVE}) AND ({pairs}) RETURNING id",
                params,
            )
            return {str(uuid.UUID(str(row[0]))) for row in cursor.fetchall()}

    def expire_pending(self, *, now: datetime, result: dict[str, Any], error_code: str, message: str) -> list[str]:
        """End PENDING tasks whose `good_until` has passed; they never run. Their ids."""
        with self.write_transaction() as cursor:
            cursor.execute(
                f"UPDATE {TASK_TABLE} SET status = {SQL_EXPIRED}, result = {self.json_placeholder}, error_code = %s, "
                f"error_message = %s, finished_at = %s WHERE status = {SQL_PENDING} AND good_until <= %s RETURNING id",
                [dumps(result), error_code, message, self.db_datetime(now), self.db_datetime(now)],
            )
            expired = [row[0] for row in cursor.fetchall()]
            self.notify_done(cursor, expired)
            self._advance_workflows(expired)
            return [str(uuid.UUID(str(task_id))) for task_id in expired]

    def recover_lost(
        self, *, now: datetime, max_crash_reruns: int, crashed_result: dict[str, Any], message: str
    ) -> LostTasks:
        """Find held tasks whose lease ran out (their worker died or hung) and run them again,
        or end them as WORKER_CRASHED once they have used up `max_crash_reruns` re-runs."""
        requeued: list[str] = []
        failed: list[str] = []
        at = self.db_datetime(now)
        with self.write_transaction() as cursor:
            cursor.execute(
                f"SELECT id, claim_token, attempt, worker_id, started_at, crash_reruns FROM {TASK_TABLE} "
                f"WHERE status IN ({SQL_ACTIVE}) AND lease_expires_at < %s{self.lock_rows}",
                [at],
            )
            lost = cursor.fetchall()
            for task_id, token, attempt, worker_id, started_at, crash_reruns in lost:
                if crash_reruns < max_crash_reruns:
                    cursor.execute(
                        f"UPDATE {TASK_TABLE} SET status = {SQL_PENDING}, crash_reruns = crash_reruns + 1, "
                        "worker_id = NULL, claimed_at = NULL, started_at = NULL, lease_expires_at = NULL, run_at = %s "
                        "WHERE id = %s AND claim_token = %s",
                        [at, task_id, token],
                    )
                    requeued.append(str(uuid.UUID(str(task_id))))
                else:
                    cursor.execute(
                        f"UPDATE {TASK_TABLE} SET status = {SQL_FAILED}, result = {self.json_placeholder}, "
                        "error_code = %s, error_message = %s, error_group = %s, finished_at = %s, "
                        "lease_expires_at = NULL WHERE id = %s AND claim_token = %s",
                        [
                            dumps(crashed_result), OperationalErrorCode.WORKER_CRASHED.value, message,
                            group_key(OperationalErrorCode.WORKER_CRASHED.value, message), at, task_id, token,
                        ],
                    )  # fmt: skip
                    failed.append(str(uuid.UUID(str(task_id))))
                cursor.execute(
                    f"INSERT INTO {ATTEMPT_TABLE} ({ATTEMPT_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
                    [
                        task_id,
                        attempt,
                        worker_id or "",
                        started_at,
                        at,
                        AttemptOutcome.WORKER_LOST.value,
                        OperationalErrorCode.WORKER_CRASHED.value,
                        f"lease expired under worker {worker_id}",
                        "",
                    ],
                )
            self.notify_done(cursor, failed)
            self._advance_workflows(failed)
        return LostTasks(requeued=requeued, failed=failed)

    def cancel(
        self, task_ids: Sequence[uuid.UUID], *, now: datetime, result: dict[str, Any], message: str
    ) -> list[str]:
        """Cancel tasks that have not ended: pending ones never run; a running one's worker stops it
        at its next heartbeat and its late result is discarded. Returns the ids cancelled."""
        return self._transition(
            task_ids,
            f"status = {SQL_CANCELLED}, result = {self.json_placeholder}, error_code = %s, "
            "error_message = %s, finished_at = %s, lease_expires_at = NULL",
            [dumps(result), OutcomeCode.TASK_CANCELLED.value, message, self.db_datetime(now)],
            f"status IN ({sql_list(READY | ACTIVE)})",
            announce=True,
        )

    def retry(self, task_ids: Sequence[uuid.UUID], *, now: datetime) -> list[str]:
        """Send ended-unsuccessfully tasks round again as new attempts; their history is kept."""
        return self._transition(
            task_ids,
            f"status = {SQL_PENDING}, result = NULL, error_code = NULL, error_message = '', error_traceback = '', "
            "error_group = NULL, manual_retries = manual_retries + 1, "
            "finished_at = NULL, claimed_at = NULL, started_at = NULL, worker_id = NULL, lease_expires_at = NULL, "
            "good_until = NULL, run_at = %s",
            [self.db_datetime(now)],
            f"status IN ({sql_list(ENDED_UNSUCCESSFULLY)})",
        )

    def run_now(self, task_ids: Sequence[uuid.UUID], *, now: datetime) -> list[str]:
        """Make scheduled (pending, future `run_at`) tasks ready at once."""
        at = self.db_datetime(now)
        return self._transition(task_ids, "run_at = %s", [at], f"status = {SQL_PENDING} AND run_at > %s", [at])

    def _transition(
        self,
        task_ids: Sequence[uuid.UUID],
        set_clause: str,
        set_params: list[Any],
        condition: str,
        condition_params: Sequence[Any] = (),
        *,
        announce: bool = False,
    ) -> list[str]:
        if not task_ids:
            return []
        ids = ", ".join(["%s"] * len(task_ids))
        changed: list[str] = []
        with self.write_transaction() as cursor:
            cursor.execute(
                f"SELECT id FROM {TASK_TABLE} WHERE id IN ({ids}) AND {condition}{self.lock_rows}",
                [self.db_uuid(t) for t in task_ids] + list(condition_params),
            )
            found = [row[0] for row in cursor.fetchall()]
            if found:
                cursor.execute(
                    f"UPDATE {TASK_TABLE} SET {set_clause} WHERE id IN ({', '.join(['%s'] * len(found))}) "
                    f"AND {condition}",
                    set_params + found + list(condition_params),
                )
                changed = [str(uuid.UUID(str(task_id))) for task_id in found]
                if announce:
                    self.notify_done(cursor, changed)
                    self._advance_workflows(changed)
        return changed

    def prune(self, *, completed_before: datetime, failed_before: datetime, limit: int) -> int:
        """Delete up to `limit` ended tasks (and their attempts), and as many ended workflows (and
        their nodes), that finished before the cutoffs:
        COMPLETED ones before `completed_before`, the other ended ones before `failed_before`.
        Small batches keep each transaction, and the locks it holds, short."""
        with self.write_transaction() as cursor:
            cursor.execute(
                f"SELECT id FROM {TASK_TABLE} WHERE (status = {SQL_COMPLETED} AND finished_at < %s) "
                f"OR (status IN ({sql_list(ENDED_UNSUCCESSFULLY)}) AND finished_at < %s) LIMIT %s{self.lock_rows}",
                [self.db_datetime(completed_before), self.db_datetime(failed_before), limit],
            )
            ids = [row[0] for row in cursor.fetchall()]
            if ids:
                placeholders = ", ".join(["%s"] * len(ids))
                cursor.execute(f"DELETE FROM {ATTEMPT_TABLE} WHERE task_id IN ({placeholders})", ids)
                cursor.execute(f"DELETE FROM {TASK_TABLE} WHERE id IN ({placeholders})", ids)
            from .workflows import WorkflowSql

            workflows = WorkflowSql(self).prune(
                cursor, completed_before=completed_before, failed_before=failed_before, limit=limit
            )
        return len(ids) + workflows

    def register_worker(
        self,
        *,
        worker_id: str,
        hostname: str,
        pid: int,
        queues: Sequence[str],
        concurrency: int,
        pool: str,
        now: datetime,
    ) -> None:
        """Record a starting worker (or restart the record of one that reuses its id)."""
        at = self.db_datetime(now)
        with self.write_transaction() as cursor:
            cursor.execute(f"DELETE FROM {WORKER_TABLE} WHERE id = %s", [worker_id])
            cursor.execute(
                f"INSERT INTO {WORKER_TABLE} (id, hostname, pid, queues, concurrency, pool, started_at, "
                f"last_heartbeat_at, stopped_at) VALUES (%s, %s, %s, {self.json_placeholder}, %s, %s, %s, %s, NULL)",
                [worker_id, hostname, pid, dumps(list(queues)), concurrency, pool, at, at],
            )

    def worker_heartbeat(self, *, worker_id: str, now: datetime, stopped: bool = False) -> None:
        at = self.db_datetime(now)
        with self.connection.cursor() as cursor:
            cursor.execute(
                f"UPDATE {WORKER_TABLE} SET last_heartbeat_at = %s, stopped_at = {'%s' if stopped else 'NULL'} "
                "WHERE id = %s",
                [at, at, worker_id] if stopped else [at, worker_id],
            )

    def fetch_outcome(self, task_id: uuid.UUID) -> StoredOutcome | None:
        """The task's status and stored result envelope, or None if there is no such task."""
        with self.connection.cursor() as cursor:
            cursor.execute(f"SELECT status, result FROM {TASK_TABLE} WHERE id = %s", [self.db_uuid(task_id)])
            row = cursor.fetchone()
        if row is None:
            return None
        return StoredOutcome(status=row[0], result=None if row[1] is None else loads(row[1]))
