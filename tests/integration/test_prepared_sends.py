"""PostgreSQL: a single `send()` runs its INSERT as a server-side prepared statement when the
broker has a session of its own, never behind a pooler, and leaves Django's connection as it was.

Planning the task table's INSERT costs about as much as running it; Django turns psycopg's
prepared statements off (`prepare_threshold=None`) so that transaction poolers keep working.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from django.db import connection, transaction
from django.utils import timezone

from horsies_django import TaskSendErrorCode
from horsies_django.broker import NewTask, get_broker
from horsies_django.broker.postgres import PostgresBroker
from horsies_django.models import Task
from tests.taskapp.tasks import add

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif("connection.vendor != 'postgresql'", reason="prepared statements of PostgreSQL sessions"),
]


@pytest.fixture(autouse=True)
def fresh_session(monkeypatch: pytest.MonkeyPatch) -> None:
    """A new server session (psycopg numbers its statements from `_pg3_0` again) and the
    process-wide switch that a lost statement turns off, put back after each test."""
    monkeypatch.setattr(PostgresBroker, "prepare_statements", True)
    connection.close()


def _prepared_inserts() -> list[str]:
    """The task-table INSERTs prepared in this session (psycopg names them `_pg3_N`)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT statement FROM pg_prepared_statements WHERE statement LIKE %s", ["%INSERT INTO%"])
        return [row[0] for row in cursor.fetchall()]


def _send(count: int) -> None:
    for i in range(count):
        add.send(i, 1).unwrap()


def test_a_send_on_a_direct_connection_is_prepared_and_django_stays_unprepared() -> None:
    assert not get_broker().pooled
    connection.ensure_connection()
    assert connection.connection.prepare_threshold is None  # Django's default
    _send(3)
    statements = _prepared_inserts()
    assert len(statements) == 1, statements
    assert "horsies_task" in statements[0]
    # The threshold is back to Django's: its own queries are still not prepared.
    assert connection.connection.prepare_threshold is None
    list(Task.objects.filter(name="never").values_list("id"))
    assert _prepared_inserts() == statements
    assert Task.objects.count() == 3


@pytest.mark.parametrize(
    "broker",
    [
        pytest.param(lambda: PostgresBroker("default", poll_only=True), id="poll-only"),
        pytest.param(lambda: PostgresBroker("default", listen_alias="direct"), id="listen-elsewhere"),
    ],
)
def test_a_pooled_broker_prepares_nothing(broker: Callable[[], PostgresBroker]) -> None:
    pooled = broker()
    assert pooled.pooled
    for _ in range(3):
        now = timezone.now()
        pooled.enqueue_many(
            [NewTask(id=uuid.uuid4(), name="tests.add", queue_name="default", priority=100, arguments_json="{}",
                     run_at=now, enqueued_at=now, good_until=None, max_retries=0)]
        )  # fmt: skip
    assert _prepared_inserts() == []
    assert Task.objects.count() == 3


@pytest.mark.parametrize(
    "pooler_mischief",
    [
        # Another client's server session: the statement this connection prepared is not there.
        pytest.param("DEALLOCATE ALL", id="statement-gone"),
        # A server session some other client prepared psycopg's first name in.
        pytest.param("PREPARE _pg3_0 AS SELECT 1", id="name-taken"),
    ],
)
def test_a_pooler_behind_a_direct_broker_costs_no_send(
    pooler_mischief: str, caplog: pytest.LogCaptureFixture
) -> None:
    if pooler_mischief.startswith("DEALLOCATE"):
        _send(1)  # psycopg now believes the statement is prepared
    connection.ensure_connection()
    # Behind psycopg's back, as a pooler handing this client another server session would.
    connection.connection.pgconn.exec_(pooler_mischief.encode())
    with caplog.at_level(logging.WARNING, logger="horsies_django"):
        _send(2)  # in autocommit: made again unprepared
    assert "transaction pooler" in caplog.text
    assert PostgresBroker.prepare_statements is False
    assert Task.objects.count() == (3 if pooler_mischief.startswith("DEALLOCATE") else 2)
    _send(1)
    assert Task.objects.count() == (4 if pooler_mischief.startswith("DEALLOCATE") else 3)


def test_inside_a_transaction_a_lost_statement_fails_that_send_and_the_next_send_works() -> None:
    _send(1)
    connection.ensure_connection()
    connection.connection.pgconn.exec_(b"DEALLOCATE ALL")
    with transaction.atomic():
        sent = add.send(1, 1)
    assert sent.is_err()
    assert sent.unwrap_err().code == TaskSendErrorCode.ENQUEUE_FAILED
    assert Task.objects.count() == 1
    _send(1)
    assert Task.objects.count() == 2


def test_a_send_in_an_aborted_transaction_fails_alone_and_later_sends_are_still_prepared() -> None:
    """A prepare that fails (here: the caller's transaction is already aborted) leaves psycopg's
    cache and the session consistent: the next sends work and share one prepared statement."""
    from django.db import DatabaseError

    _send(1)
    with pytest.raises(DatabaseError), transaction.atomic():
        with connection.cursor() as cursor:
            with pytest.raises(DatabaseError):
                cursor.execute("SELECT 1/0")
        sent = add.send(1, 1)  # the transaction is aborted: the database refuses every statement
        assert sent.unwrap_err().code == TaskSendErrorCode.ENQUEUE_FAILED
        raise DatabaseError("roll the caller's transaction back")
    assert PostgresBroker.prepare_statements is True  # an aborted transaction is not a pooler
    _send(3)
    assert Task.objects.count() == 4
    assert len(_prepared_inserts()) == 1


def test_single_sends_make_one_cursor_per_connection_and_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    """Single sends reuse one cursor on this thread's connection, whichever task sends; a new
    connection (Django closed the old one) gets a new cursor, and another thread, with its own
    connection, its own."""
    import threading

    import psycopg
    from django.db import connections

    from tests.taskapp.tasks import boom

    made: list[psycopg.Cursor[Any]] = []

    class CountedCursor(psycopg.Cursor):  # type: ignore[type-arg]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            made.append(self)

    monkeypatch.setattr(psycopg, "Cursor", CountedCursor)
    _send(4)
    boom.send("x").unwrap()
    assert len(made) == 1
    assert made[0].connection is connection.connection

    connection.close()
    _send(2)  # reconnects
    assert len(made) == 2
    assert made[1].connection is connection.connection and made[0].connection.closed

    def other_thread() -> None:
        try:
            add.send(7, 1).unwrap()
            add.send(8, 1).unwrap()
            assert made[-1].connection is connections["default"].connection
        finally:
            connections.close_all()

    thread = threading.Thread(target=other_thread)
    thread.start()
    thread.join()
    assert len(made) == 3
    _send(1)
    assert len(made) == 3
    assert Task.objects.count() == 10
