"""send_on_commit() and HORSIES['SEND_ON_COMMIT']: the task is written when the transaction commits."""

from __future__ import annotations

from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.db import transaction
from django.test import override_settings

from horsies_django import TaskSendErrorCode, signals
from horsies_django.conf import SettingsError, parse
from horsies_django.models import Task
from horsies_django.worker import Worker
from tests.settings import HORSIES
from tests.taskapp.tasks import add

pytestmark = pytest.mark.django_db(transaction=True)


def test_outside_a_transaction_it_is_written_at_once() -> None:
    handle = add.send_on_commit(1, 2).unwrap()
    assert Task.objects.filter(pk=handle.task_id).exists()
    Worker(burst=True, pool="threads").run()
    assert handle.get(timeout_ms=1000).unwrap() == 3


def test_inside_a_transaction_it_waits_for_the_commit() -> None:
    with transaction.atomic():
        handle = add.send_on_commit(2, 2).unwrap()
        assert not Task.objects.filter(pk=handle.task_id).exists()
    assert Task.objects.get(pk=handle.task_id).status == "PENDING"


def test_a_rollback_sends_nothing() -> None:
    seen: list[str] = []

    def receive(sender: Any, task_id: str, **kwargs: Any) -> None:
        seen.append(task_id)

    signals.task_sent.connect(receive, weak=False)
    try:
        with pytest.raises(RuntimeError), transaction.atomic():
            add.send_on_commit(1)
            raise RuntimeError("roll back")
        with transaction.atomic():
            committed = add.send_on_commit(5).unwrap()
    finally:
        signals.task_sent.disconnect(receive)
    assert [str(i) for i in Task.objects.values_list("id", flat=True)] == [committed.task_id]
    assert seen == [committed.task_id]


def test_send_joins_the_transaction_by_default() -> None:
    with pytest.raises(RuntimeError), transaction.atomic():
        handle = add.send(1).unwrap()
        assert Task.objects.filter(pk=handle.task_id).exists()
        raise RuntimeError("roll back")
    assert Task.objects.count() == 0


def test_the_setting_makes_send_wait_for_the_commit() -> None:
    with override_settings(HORSIES={**HORSIES, "SEND_ON_COMMIT": True}):
        with transaction.atomic():
            handle = add.send(1).unwrap()
            assert not Task.objects.filter(pk=handle.task_id).exists()
        assert Task.objects.filter(pk=handle.task_id).exists()
        with pytest.raises(RuntimeError), transaction.atomic():
            add.send(2)
            raise RuntimeError("roll back")
    assert Task.objects.count() == 1


class Hostile:
    def __str__(self) -> str:
        raise RuntimeError("no")


@pytest.mark.parametrize(
    ("call", "code"),
    [
        (lambda: add.send_on_commit("not a number"), TaskSendErrorCode.VALIDATION_FAILED),
        (lambda: add.send_on_commit(float("nan")), TaskSendErrorCode.VALIDATION_FAILED),
        (lambda: add.send_on_commit(Hostile()), TaskSendErrorCode.VALIDATION_FAILED),
        (lambda: add.send_on_commit("\ud800"), TaskSendErrorCode.VALIDATION_FAILED),
        (lambda: add.send_on_commit(1, 2, 3), TaskSendErrorCode.VALIDATION_FAILED),
        (lambda: add.with_options(idempotency_key="k").send_on_commit(1), TaskSendErrorCode.VALIDATION_FAILED),
        (lambda: add.with_options(queue_name="nowhere").send_on_commit(1), TaskSendErrorCode.VALIDATION_FAILED),
    ],
    ids=["wrong type", "nan", "str raises", "surrogate", "too many", "idempotency key", "unknown queue"],
)
def test_bad_calls_fail_at_once_and_register_nothing(call: Any, code: TaskSendErrorCode) -> None:
    with transaction.atomic():
        result = call()
        assert result.is_err() and result.unwrap_err().code == code
        assert not transaction.get_connection().run_on_commit
    assert Task.objects.count() == 0


def test_inside_an_event_loop_it_refuses() -> None:
    async def call() -> Any:
        return add.send_on_commit(1)

    result = async_to_sync(call)()
    assert result.unwrap_err().code == TaskSendErrorCode.ASYNC_CONTEXT


@pytest.mark.parametrize("value", ["yes", 1, None, float("nan")])
def test_the_setting_must_be_a_bool(value: Any) -> None:
    with pytest.raises(SettingsError) as info:
        parse({"SEND_ON_COMMIT": value})
    assert info.value.check_id == "horsies_django.E009"
    with override_settings(HORSIES={"SEND_ON_COMMIT": value}):
        assert add.send(1).unwrap_err().code == TaskSendErrorCode.VALIDATION_FAILED
