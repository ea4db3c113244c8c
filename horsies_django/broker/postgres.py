"""PostgreSQL: many workers on many hosts claim with `FOR UPDATE SKIP LOCKED`."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from django.db import transaction
from django.db.backends.utils import CursorWrapper

from .base import TASK_TABLE, Broker, ClaimedTask

NOTIFY_CHANNEL = "horsies_new_task"


class PostgresBroker(Broker):
    vendor = "postgresql"
    json_placeholder = "%s::jsonb"
    lock_rows = " FOR UPDATE SKIP LOCKED"

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
        with transaction.atomic(using=self.alias), self.connection.cursor() as cursor:
            cursor.execute(sql, params)
            return self._claimed(cursor.fetchall())

    def notify_new_work(self, cursor: CursorWrapper, queue_names: set[str]) -> None:
        # Sent inside the enqueueing transaction, so listeners hear of the task only after commit.
        cursor.execute("SELECT pg_notify(%s, %s)", [NOTIFY_CHANNEL, ",".join(sorted(queue_names))])
