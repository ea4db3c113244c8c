"""SQLite: one writer at a time, so claims take the write lock up front with `BEGIN IMMEDIATE`."""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from django.db.backends.utils import CursorWrapper
from django.utils.dateparse import parse_datetime

from .base import (
    ATTEMPT_COLUMNS,
    ATTEMPT_TABLE,
    FINISH_COLUMNS,
    INSERT_CHUNK,
    SQL_PENDING,
    SQL_RUNNING,
    TASK_COLUMNS,
    TASK_TABLE,
    Broker,
    ClaimedTask,
    Finish,
    NewTask,
)


class SqliteBroker(Broker):
    vendor = "sqlite"
    # Without statistics SQLite picked the status or queue index and sorted every pending row on
    # each claim, inside the write lock that every other worker waits for; the ready index is
    # already in claim order.
    ready_rows = f"{TASK_TABLE} INDEXED BY horsies_task_ready_idx"

    def db_uuid(self, value: uuid.UUID) -> Any:
        return value.hex  # Django stores UUIDField as 32 hex digits on SQLite.

    def py_datetime(self, value: Any) -> datetime | None:
        # Django's SQLite converters hand back naive datetimes (or text, in some paths), in UTC.
        parsed = parse_datetime(value) if isinstance(value, str) else value
        if parsed is None or parsed.tzinfo is not None:
            return parsed
        return parsed.replace(tzinfo=UTC)

    def _utc_text(self, value: datetime) -> str:
        """`db_datetime` for a database kept in UTC (Django's default): the text Django writes."""
        if value.tzinfo is not UTC:
            value = value.astimezone(UTC)
        return value.replace(tzinfo=None).isoformat(" ")

    _insert_row = f"(?, ?, ?, ?, {SQL_PENDING}, ?, NULL, NULL, '', '', 0, ?, 0, ?, ?, ?, 0, ?)"
    _insert_one = f"INSERT INTO {TASK_TABLE} ({TASK_COLUMNS}) VALUES {_insert_row}"

    def enqueue_many(self, tasks: Sequence[NewTask]) -> None:
        if not tasks or len(tasks) > INSERT_CHUNK:
            super().enqueue_many(tasks)  # several statements: one transaction around them
            return
        # One INSERT is atomic on its own, and in autocommit it is its own transaction: no
        # BEGIN IMMEDIATE/COMMIT around it (it waits for the write lock like any writer).
        connection = self.connection
        db_datetime = self._utc_text if connection.timezone is UTC else self.db_datetime
        params: list[Any] = []
        for task in tasks:
            enqueued_at = db_datetime(task.enqueued_at)
            params += [
                task.id.hex, task.name, task.queue_name, task.priority, task.arguments_json, task.max_retries,
                enqueued_at if task.run_at == task.enqueued_at else db_datetime(task.run_at), enqueued_at,
                None if task.good_until is None else db_datetime(task.good_until), task.idempotency_key,
            ]  # fmt: skip
        sql = self._insert_one if len(tasks) == 1 else self._insert_many(len(tasks))
        # The sqlite3 connection under Django's: `?` placeholders, no query rewriting or wrappers
        # on the way. Same connection, same transaction, Django's error classes.
        connection.ensure_connection()
        with connection.wrap_database_errors:
            connection.connection.execute(sql, params)

    @staticmethod
    def _insert_many(count: int) -> str:
        return f"INSERT INTO {TASK_TABLE} ({TASK_COLUMNS}) VALUES " + ", ".join([SqliteBroker._insert_row] * count)

    @contextmanager
    def write_transaction(self) -> Iterator[CursorWrapper]:
        connection = self.connection
        if connection.in_atomic_block or (connection.connection is not None and connection.connection.in_transaction):
            # The caller's transaction (Django's, or one of ours this statement runs inside): commit
            # or roll back with it.
            with connection.cursor() as cursor:
                yield cursor
            return
        connection.ensure_connection()
        with connection.cursor() as cursor:
            # A deferred transaction that reads first cannot wait for the write lock (it fails with
            # "database is locked" at once); taking the lock at BEGIN makes it wait its turn instead.
            cursor.execute("BEGIN IMMEDIATE")
            try:
                yield cursor
            except BaseException:
                cursor.execute("ROLLBACK")
                raise
            cursor.execute("COMMIT")

    def _finish_batch(self, finishes: Sequence[Finish]) -> set[str]:
        rows = [self._finish_row(f) for f in finishes]
        values = ", ".join(["(" + ", ".join(["%s"] * len(rows[0])) + ")"] * len(rows))
        t = TASK_TABLE
        with self.write_transaction() as cursor:
            cursor.execute(
                f"WITH v({FINISH_COLUMNS}) AS (VALUES {values}) "
                f"UPDATE {t} SET {self.finish_set.format(json='v.result', t=t)} "
                f"FROM v WHERE {self.finish_where.format(t=t)} RETURNING {t}.id",
                [value for row in rows for value in row],
            )
            done = {row[0] for row in cursor.fetchall()}
            history = [row for row in rows if row[0] in done and row[15] is not None]
            if history:
                cursor.executemany(
                    f"INSERT INTO {ATTEMPT_TABLE} ({ATTEMPT_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
                    [[r[0], r[11], r[12], r[13], r[14], r[15], r[4], r[5], r[6]] for r in history],
                )
            # Workflow hook: nodes whose tasks ended move their workflows on in this transaction.
            self._advance_workflows(done)
        return {str(uuid.UUID(task_id)) for task_id in done}

    def claim(
        self, *, worker_id: str, queues: Sequence[str] | None, limit: int, now: datetime, lease_until: datetime
    ) -> list[ClaimedTask]:
        queue_filter = f"AND queue_name IN ({', '.join(['%s'] * len(queues))})" if queues else ""
        at = self.db_datetime(now)
        params: list[Any] = [worker_id, at, at, self.db_datetime(lease_until), at, at]
        params += list(queues or ())
        params.append(limit)
        sql = f"""
            UPDATE {TASK_TABLE}
               SET status = {SQL_RUNNING}, claim_token = claim_token + 1, attempt = attempt + 1,
                   worker_id = %s, claimed_at = %s, started_at = %s, lease_expires_at = %s
             WHERE id IN (SELECT id FROM {self.ready_rows}
                           WHERE status = {SQL_PENDING} AND run_at <= %s
                             AND (good_until IS NULL OR good_until > %s) {queue_filter}
                           ORDER BY priority, run_at
                           LIMIT %s)
            {self.claim_returning.format(t="")}
        """
        with self.write_transaction() as cursor:
            cursor.execute(sql, params)
            return self._claimed(cursor.fetchall())
