"""PostgreSQL: many workers on many hosts claim with `FOR UPDATE SKIP LOCKED`."""

from __future__ import annotations

import hashlib
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import psycopg
from django.db import transaction

from .base import (
    FINISH_COLUMNS,
    SQL_PENDING,
    SQL_RUNNING,
    TASK_COLUMNS,
    TASK_TABLE,
    Broker,
    ClaimedTask,
    Finish,
    NewTask,
)

NEW_TASK_CHANNEL = "horsies_new_task"
TASK_DONE_CHANNEL = "horsies_task_done"
SCHEDULE_CHANNEL = "horsies_schedule"
# NOTIFY payloads are limited to 8,000 bytes; 36-character ids joined by commas fit 200 at a time.
IDS_PER_NOTIFY = 200
LISTEN_SLICE_S = 0.25
# The first half of the claim locks' two-part advisory keys ("hors"); the second half hashes a name.
CLAIM_LOCK_SPACE = 0x686F7273

logger = logging.getLogger("horsies_django")


def claim_lock_key(name: str) -> int:
    """A stable 32-bit signed key for a claim lock's name (Python's hash() differs per process)."""
    return int.from_bytes(hashlib.blake2b(name.encode("utf-8", "surrogatepass"), digest_size=4).digest(), signed=True)


# Per thread: the cursor of single sends, by database alias (PostgresBroker._send_cursor).
_send_cursors = threading.local()


class PostgresBroker(Broker):
    vendor = "postgresql"
    json_placeholder = "%s::jsonb"
    lock_rows = " FOR UPDATE SKIP LOCKED"
    default_poll_interval_s = 1.0
    # Whether execute_prepared() may prepare: off for the process once a pooler has lost a statement.
    prepare_statements = True
    driver_errors = (*Broker.driver_errors, psycopg.Error)
    transient_errors = (
        *Broker.transient_errors,
        psycopg.OperationalError,
        psycopg.InterfaceError,
        psycopg.InternalError,
    )

    @contextmanager
    def fast_cursor(self, listen: bool = False) -> Iterator[Any]:
        """A psycopg cursor on Django's connection that binds parameters on the server.

        Django's own cursor renders every parameter into the SQL text on the client, which costs
        more than the statement itself for the hot path's array parameters; psycopg also prepares
        statements it sees repeatedly. Same connection, same transaction, Django's error classes.
        """
        connection = self.listen_connection if listen else self.connection
        connection.ensure_connection()
        with connection.wrap_database_errors, psycopg.Cursor(connection.connection) as cursor:
            yield cursor

    def db_uuid(self, value: uuid.UUID) -> Any:
        return value

    # One task: scalar parameters (psycopg adapts them far faster than ten one-element arrays).
    # The NOTIFY is the row source of the INSERT, so one statement both writes and announces,
    # with no BEGIN/COMMIT in autocommit; PostgreSQL delivers it only if the row commits, and
    # folds identical notifications of one transaction into one, so a transaction that sends
    # many tasks to a queue wakes the workers once.
    _insert_one = (
        f"INSERT INTO {TASK_TABLE} ({TASK_COLUMNS}) "
        f"SELECT %s::uuid, %s::text, %s::text, %s::int, {SQL_PENDING}, %s::jsonb, NULL, NULL, '', '', 0, %s::int, 0, "
        "%s::timestamptz, %s::timestamptz, %s::timestamptz, 0, %s::text"
    )

    _insert_one_notify = _insert_one + " FROM pg_notify(%s::text, %s::text)"

    def enqueue_many(self, tasks: Sequence[NewTask]) -> None:
        if not tasks:
            return
        if len(tasks) == 1:
            self._enqueue_one(tasks[0])
            return
        columns = [
            [t.id for t in tasks],
            [t.name for t in tasks],
            [t.queue_name for t in tasks],
            [t.priority for t in tasks],
            [t.arguments_json for t in tasks],
            [t.max_retries for t in tasks],
            [t.run_at for t in tasks],
            [t.enqueued_at for t in tasks],
            [t.good_until for t in tasks],
            [t.idempotency_key for t in tasks],
        ]
        notify = "" if self.poll_only else ", notified AS (SELECT pg_notify(%s, %s))"
        select = "SELECT (SELECT count(*) FROM ins)" + ("" if self.poll_only else ", (SELECT count(*) FROM notified)")
        # One statement, so a send in autocommit needs no BEGIN/COMMIT; the NOTIFY is delivered
        # only when the rows commit, inside the caller's transaction if there is one.
        sql = f"""
            WITH ins AS (
                INSERT INTO {TASK_TABLE} ({TASK_COLUMNS})
                SELECT v.id, v.name, v.queue_name, v.priority, {SQL_PENDING}, v.arguments::jsonb, NULL, NULL, '', '',
                       0, v.max_retries, 0, v.run_at, v.enqueued_at, v.good_until, 0, v.idempotency_key
                  FROM unnest(%s::uuid[], %s::text[], %s::text[], %s::int[], %s::text[], %s::int[],
                              %s::timestamptz[], %s::timestamptz[], %s::timestamptz[], %s::text[])
                       AS v(id, name, queue_name, priority, arguments, max_retries, run_at, enqueued_at, good_until,
                            idempotency_key)
                RETURNING 1
            ){notify}
            {select}
        """
        params: list[Any] = list(columns)
        if not self.poll_only:
            params += [NEW_TASK_CHANNEL, ",".join(sorted({t.queue_name for t in tasks}))]
        with self.fast_cursor() as cursor:
            cursor.execute(sql, params)

    def _enqueue_one(self, task: NewTask) -> None:
        params = [
            task.id, task.name, task.queue_name, task.priority, task.arguments_json, task.max_retries,
            task.run_at, task.enqueued_at, task.good_until, task.idempotency_key,
        ]  # fmt: skip
        if self.poll_only:
            sql = self._insert_one
        else:
            sql = self._insert_one_notify
            params += [NEW_TASK_CHANNEL, task.queue_name]
        connection = self.connection
        connection.ensure_connection()
        with connection.wrap_database_errors:
            self.execute_prepared(self._send_cursor(connection.connection), sql, params)

    def _send_cursor(self, raw: psycopg.Connection[Any]) -> psycopg.Cursor[Any]:
        """The cursor single sends on this thread's connection to the broker's database use, kept
        from one send to the next: an INSERT leaves nothing in it, and making one costs a tenth of
        a send's Python. Django's connections are per thread, and so are these cursors; brokers,
        which are made per task and settings, share them."""
        cursors: dict[str, psycopg.Cursor[Any]] | None = getattr(_send_cursors, "by_alias", None)
        if cursors is None:
            cursors = _send_cursors.by_alias = {}
        cursor = cursors.get(self.alias)
        if cursor is None or cursor.connection is not raw or cursor.closed:
            cursor = cursors[self.alias] = psycopg.Cursor(raw)
        return cursor

    def execute_prepared(self, cursor: Any, sql: str, params: Sequence[Any]) -> None:
        """Run a hot statement as a server-side prepared statement, when that is safe.

        Planning this table's INSERT costs about as much as running it, and Django turns psycopg's
        prepared statements off (`prepare_threshold=None`) so that transaction poolers keep
        working. A broker that listens on its own connection has a session of its own (LISTEN
        needs one), so a statement prepared there is still there for the next send; a pooled
        broker (POLL_ONLY, or LISTEN_DATABASE set) prepares only if Django's OPTIONS asked for it.
        The connection's threshold is put back at once: Django's own queries stay unprepared.
        """
        psycopg_connection = cursor.connection
        threshold = psycopg_connection.prepare_threshold
        if self.pooled or not self.prepare_statements or threshold is not None:
            cursor.execute(sql, params)
            return
        psycopg_connection.prepare_threshold = 0
        try:
            cursor.execute(sql, params, prepare=True)
        except (psycopg.errors.InvalidSqlStatementName, psycopg.errors.DuplicatePreparedStatement):
            # The statement is not in this server session, or its name is taken by another client's:
            # a transaction pooler in front of a broker configured as direct. The process stops
            # preparing; a send in autocommit can simply be made again, one inside the caller's
            # transaction fails (ENQUEUE_FAILED).
            PostgresBroker.prepare_statements = False
            logger.warning(
                "a prepared statement and its database session disagree: is DATABASE behind a "
                "transaction pooler? Set HORSIES['POLL_ONLY'] or HORSIES['LISTEN_DATABASE'] (docs/scaling.md)"
            )
            connection = self.connection
            if not connection.get_autocommit() or connection.in_atomic_block:
                raise
            psycopg_connection.prepare_threshold = threshold
            cursor.execute(sql, params)
        finally:
            psycopg_connection.prepare_threshold = threshold

    def wait_for_new_work(self, timeout: float, stop: threading.Event | None = None) -> None:
        """Block until a NOTIFY says tasks were sent or a schedule changed, `stop` is set, or
        `timeout` seconds pass."""
        if self.poll_only:
            super().wait_for_new_work(timeout, stop)
            return
        connection = self.listen_connection
        connection.ensure_connection()
        raw = connection.connection
        if self._listening_on is not raw:  # a new connection after an error: listen again
            with self.fast_cursor(listen=True) as cursor:
                cursor.execute(f"LISTEN {NEW_TASK_CHANNEL}")
                cursor.execute(f"LISTEN {SCHEDULE_CHANNEL}")
            self._listening_on = raw
        deadline = time.monotonic() + timeout
        with connection.wrap_database_errors:
            # Listen in short slices: a signal does not cut a wait on the socket short, a slice does.
            while (remaining := deadline - time.monotonic()) > 0 and not (stop and stop.is_set()):
                for notification in raw.notifies(timeout=min(remaining, LISTEN_SLICE_S), stop_after=1):
                    if notification.channel == SCHEDULE_CHANNEL:
                        self._schedule_changed = True
                    return

    @contextmanager
    def result_waiter(self, task_id: str) -> Iterator[Callable[[float], None]]:
        """LISTEN for finished tasks while a `get()` waits; each wait returns early when `task_id`
        is announced. Falls back to sleeping inside a transaction (LISTEN would start only at its
        commit) and in poll-only mode."""
        connection = self.listen_connection
        if self.poll_only or connection.in_atomic_block:
            with super().result_waiter(task_id) as sleep:
                yield sleep
            return
        with self.fast_cursor(listen=True) as cursor:
            cursor.execute(f"LISTEN {TASK_DONE_CHANNEL}")
        raw = connection.connection

        def wait(timeout: float) -> None:
            with connection.wrap_database_errors:
                for notification in raw.notifies(timeout=timeout):
                    if task_id in notification.payload.split(","):
                        return

        try:
            yield wait
        finally:
            try:
                with self.fast_cursor(listen=True) as cursor:
                    cursor.execute(f"UNLISTEN {TASK_DONE_CHANNEL}")
            except Exception:  # the connection broke; it is closed and will not be reused listening
                logger.debug("UNLISTEN failed", exc_info=True)

    def announce_new_work(self, cursor: Any, queue_names: set[str]) -> None:
        if not self.poll_only:
            cursor.execute("SELECT pg_notify(%s, %s)", [NEW_TASK_CHANNEL, ",".join(sorted(queue_names))])

    def announce_schedule_change(self) -> None:
        if not self.poll_only:
            with self.fast_cursor() as cursor:
                cursor.execute("SELECT pg_notify(%s, '')", [SCHEDULE_CHANNEL])

    def lock_capped_claims(self, cursor: Any, names: Sequence[str]) -> None:
        # Held to the end of the claim's transaction, on every host. Every claimer takes its locks
        # in the order of their keys, so two claimers never wait for each other in a circle.
        keys = sorted({claim_lock_key(name) for name in names})
        cursor.execute(
            "SELECT count(pg_advisory_xact_lock(%s, k)) FROM unnest(%s::int[]) AS k", [CLAIM_LOCK_SPACE, keys]
        )

    def notify_done(self, cursor: Any, task_ids: Sequence[Any]) -> None:
        if self.poll_only or not task_ids:
            return
        ids = [str(task_id) for task_id in task_ids]
        for start in range(0, len(ids), IDS_PER_NOTIFY):
            cursor.execute(
                "SELECT pg_notify(%s, %s)", [TASK_DONE_CHANNEL, ",".join(ids[start : start + IDS_PER_NOTIFY])]
            )

    def claim(
        self, *, worker_id: str, queues: Sequence[str] | None, limit: int, now: datetime, lease_until: datetime
    ) -> list[ClaimedTask]:
        sql, params = self.claim_statement(
            worker_id=worker_id, queues=queues, limit=limit, now=now, lease_until=lease_until
        )
        # A short transaction of its own: the planner setting below must not outlive the claim.
        with transaction.atomic(using=self.alias), self.fast_cursor() as cursor:
            self.plan_claims(cursor)
            cursor.execute(sql, params)
            return self._claimed(cursor.fetchall())

    def plan_claims(self, cursor: Any) -> None:
        # Right after a burst of sends the table's statistics are stale, and the planner then
        # reads every pending row with a bitmap scan and sorts them on each claim, although the
        # ready index is already in claim order. Discouraging sorts keeps the index scan;
        # queries with no sort-free plan still sort. LOCAL: only until this transaction ends.
        cursor.execute("SET LOCAL enable_sort = off")

    def claim_statement(
        self, *, worker_id: str, queues: Sequence[str] | None, limit: int, now: datetime, lease_until: datetime
    ) -> tuple[str, list[Any]]:
        """The claim's SQL and parameters (apart from `claim()` so that tests can EXPLAIN it)."""
        queue_filter = "AND queue_name = ANY(%s)" if queues else ""
        params: list[Any] = [worker_id, now, now, lease_until, now, now]
        if queues:
            params.append(list(queues))
        params.append(limit)
        # Locked rows are skipped, not waited on, so workers never queue up behind each other.
        sql = f"""
            UPDATE {TASK_TABLE} AS t
               SET status = {SQL_RUNNING}, claim_token = t.claim_token + 1, attempt = t.attempt + 1,
                   worker_id = %s, claimed_at = %s, started_at = %s, lease_expires_at = %s
              FROM (SELECT id FROM {TASK_TABLE}
                     WHERE status = {SQL_PENDING} AND run_at <= %s
                       AND (good_until IS NULL OR good_until > %s) {queue_filter}
                     ORDER BY priority, run_at
                     LIMIT %s
                       FOR UPDATE SKIP LOCKED) AS ready
             WHERE t.id = ready.id
            {self.claim_returning.format(t="t.")}
        """
        return sql, params

    _finish_types = (
        "uuid", "bigint", "text", "text", "text", "text", "text", "timestamptz", "timestamptz", "int", "int", "int",
        "text", "timestamptz", "timestamptz", "text", "text",
    )  # fmt: skip

    def _finish_batch(self, finishes: Sequence[Finish]) -> set[str]:
        columns = [list(column) for column in zip(*(self._finish_row(f) for f in finishes), strict=True)]
        arrays = ", ".join(f"%s::{kind}[]" for kind in self._finish_types)
        # One statement: the updates and their history rows commit together without a BEGIN/COMMIT.
        sql = f"""
            WITH v AS (SELECT * FROM unnest({arrays}) AS v({FINISH_COLUMNS})),
            done AS (
                UPDATE {TASK_TABLE} AS t SET {self.finish_set.format(json="v.result::jsonb", t="t")}
                  FROM v WHERE {self.finish_where.format(t="t")}
                RETURNING t.id
            ),
            history AS ({self.attempt_insert}),
            notified AS (
                SELECT pg_notify('{TASK_DONE_CHANNEL}', string_agg(id::text, ','))
                  FROM (SELECT id, (row_number() OVER ()) / {IDS_PER_NOTIFY} AS page FROM done) AS pages
                 GROUP BY page
            )
            SELECT id, (SELECT count(*) FROM notified) FROM done
        """
        if not self._workflows_active():
            # No workflow is running or paused, so no task here is one's node (a node's task is
            # claimed only after its workflow's start committed): one autocommit statement.
            with self.fast_cursor() as cursor:
                cursor.execute(sql, columns)
                return {str(row[0]) for row in cursor.fetchall()}
        # A transaction, so that the workflow hook's writes commit with the finish or not at all.
        with transaction.atomic(using=self.alias), self.fast_cursor() as cursor:
            cursor.execute(sql, columns)
            done = {str(row[0]) for row in cursor.fetchall()}
            # Workflow hook: nodes whose tasks ended move their workflows on in this transaction.
            self._advance_workflows(done)
        return done
