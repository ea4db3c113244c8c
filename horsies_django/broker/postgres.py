"""PostgreSQL: many workers on many hosts claim with `FOR UPDATE SKIP LOCKED`."""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import psycopg
from django.db.backends.utils import CursorWrapper

from .base import FINISH_COLUMNS, TASK_TABLE, Broker, ClaimedTask, Finish

NOTIFY_CHANNEL = "horsies_new_task"


class PostgresBroker(Broker):
    vendor = "postgresql"
    json_placeholder = "%s::jsonb"
    lock_rows = " FOR UPDATE SKIP LOCKED"

    @contextmanager
    def fast_cursor(self) -> Iterator[Any]:
        """A psycopg cursor on Django's connection that binds parameters on the server.

        Django's own cursor renders every parameter into the SQL text on the client, which costs
        more than the statement itself for the hot path's array parameters; psycopg also prepares
        statements it sees repeatedly. Same connection, same transaction, Django's error classes.
        """
        connection = self.connection
        connection.ensure_connection()
        with connection.wrap_database_errors, psycopg.Cursor(connection.connection) as cursor:
            yield cursor

    def db_uuid(self, value: uuid.UUID) -> Any:
        return value

    def claim(
        self, *, worker_id: str, queues: Sequence[str] | None, limit: int, now: datetime, lease_until: datetime
    ) -> list[ClaimedTask]:
        queue_filter = "AND queue_name = ANY(%s)" if queues else ""
        params: list[Any] = [worker_id, now, now, lease_until, now, now]
        if queues:
            params.append(list(queues))
        params.append(limit)
        # Locked rows are skipped, not waited on, so workers never queue up behind each other.
        sql = f"""
            UPDATE {TASK_TABLE} AS t
               SET status = 'RUNNING', claim_token = t.claim_token + 1, attempt = t.attempt + 1,
                   worker_id = %s, claimed_at = %s, started_at = %s, lease_expires_at = %s
              FROM (SELECT id FROM {TASK_TABLE}
                     WHERE status = 'PENDING' AND run_at <= %s
                       AND (good_until IS NULL OR good_until > %s) {queue_filter}
                     ORDER BY priority, run_at
                     LIMIT %s
                       FOR UPDATE SKIP LOCKED) AS ready
             WHERE t.id = ready.id
            {self.claim_returning.format(t="t.")}
        """
        # One statement locks, updates and returns the rows; in autocommit it needs no BEGIN/COMMIT.
        with self.fast_cursor() as cursor:
            cursor.execute(sql, params)
            return self._claimed(cursor.fetchall())

    _finish_types = (
        "uuid", "bigint", "text", "text", "text", "text", "text", "timestamptz", "timestamptz", "int", "int", "int",
        "text", "timestamptz", "timestamptz", "text",
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
            history AS ({self.attempt_insert})
            SELECT id FROM done
        """
        with self.fast_cursor() as cursor:
            cursor.execute(sql, columns)
            return {str(row[0]) for row in cursor.fetchall()}

    def notify_new_work(self, cursor: CursorWrapper, queue_names: set[str]) -> None:
        # Sent inside the enqueueing transaction, so listeners hear of the task only after commit.
        cursor.execute("SELECT pg_notify(%s, %s)", [NOTIFY_CHANNEL, ",".join(sorted(queue_names))])
