"""Operator transitions: cancel, retry, run now."""

from __future__ import annotations

import io
import uuid
from typing import Any

import pytest
from django.utils import timezone

from horsies_django import OutcomeCode, app
from horsies_django.broker import get_broker
from horsies_django.models import Task, TaskAttempt
from horsies_django.worker import Worker
from tests.taskapp.tasks import add, boom

pytestmark = pytest.mark.django_db(transaction=True)


def test_cancelled_pending_task_never_runs() -> None:
    handle = add.send(1).unwrap()
    assert handle.cancel() is True
    assert handle.cancel() is False  # already ended
    assert Worker(burst=True).run().claimed == 0
    assert handle.get(timeout_ms=100).unwrap_err().error_code == OutcomeCode.TASK_CANCELLED
    assert Task.objects.get(pk=handle.task_id).status == "CANCELLED"


def test_cancel_by_id_and_unknown_ids() -> None:
    handle = add.send(1).unwrap()
    assert app.cancel(handle.task_id) is True
    assert app.cancel(uuid.uuid4()) is False
    assert app.cancel("nonsense") is False


def test_retry_runs_a_failed_task_again_and_keeps_its_history() -> None:
    handle = boom.send("first").unwrap()
    Worker(burst=True).run()
    assert Task.objects.get(pk=handle.task_id).status == "FAILED"
    assert get_broker().retry([uuid.UUID(handle.task_id)], now=timezone.now()) == [handle.task_id]
    assert get_broker().retry([uuid.UUID(handle.task_id)], now=timezone.now()) == []  # now pending
    Worker(burst=True).run()
    row = Task.objects.get(pk=handle.task_id)
    assert (row.status, row.attempt) == ("FAILED", 2)
    assert list(TaskAttempt.objects.filter(task_id=handle.task_id).values_list("number", flat=True)) == [1, 2]


def test_completed_task_is_not_retried_and_run_now_only_moves_scheduled_tasks() -> None:
    done = add.send(1).unwrap()
    Worker(burst=True).run()
    later = add.schedule(3600, 2).unwrap()
    broker = get_broker()
    assert broker.retry([uuid.UUID(done.task_id)], now=timezone.now()) == []
    assert broker.run_now([uuid.UUID(done.task_id), uuid.UUID(later.task_id)], now=timezone.now()) == [later.task_id]
    Worker(burst=True).run()
    assert later.get(timeout_ms=100).unwrap() == 2


def test_pruning_deletes_only_ended_tasks_past_their_retention(settings: Any) -> None:
    from datetime import timedelta

    from django.core.management import call_command

    settings.HORSIES = {**settings.HORSIES, "RETENTION": {"completed_days": 1, "failed_days": 10}}
    old_done, new_done = add.send(1).unwrap(), add.send(2).unwrap()
    old_failed, recent_failed = boom.send("x").unwrap(), boom.send("y").unwrap()
    pending = add.schedule(3600, 3).unwrap()
    Worker(burst=True).run()
    now = timezone.now()
    Task.objects.filter(pk__in=[old_done.task_id]).update(finished_at=now - timedelta(days=2))
    Task.objects.filter(pk__in=[recent_failed.task_id]).update(finished_at=now - timedelta(days=2))
    Task.objects.filter(pk__in=[old_failed.task_id]).update(finished_at=now - timedelta(days=11))
    out = io.StringIO()
    call_command("horsies_prune", stdout=out)
    assert out.getvalue().strip() == "deleted 2 ended task(s) and workflow(s)"
    remaining = {str(i) for i in Task.objects.values_list("id", flat=True)}
    assert remaining == {new_done.task_id, recent_failed.task_id, pending.task_id}
    assert not TaskAttempt.objects.filter(task_id__in=[old_done.task_id, old_failed.task_id]).exists()
