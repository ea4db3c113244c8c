"""`manage.py horsies_retry`: the filters, --dry-run, batches and the progress bar."""

from __future__ import annotations

from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from horsies_django.management.commands.horsies_retry import progress_bar
from horsies_django.models import Task, TaskStatus
from horsies_django.types.grouping import group_key

pytestmark = pytest.mark.django_db(transaction=True)


def ended(name: str, code: str, *, status: str = TaskStatus.FAILED, ago: timedelta = timedelta(0)) -> Task:
    at = timezone.now() - ago
    return Task.objects.create(
        name=name, status=status, error_code=code, error_message="m 1", error_group=group_key(code, "m 1"),
        run_at=at, enqueued_at=at, finished_at=at,
    )  # fmt: skip


def retry(*args: str) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command("horsies_retry", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def test_filters_and_dry_run() -> None:
    match = [ended("shop.charge", "DECLINED") for _ in range(5)]
    ended("shop.charge", "TIMEOUT")
    ended("shop.refund", "DECLINED")
    ended("shop.charge", "DECLINED", ago=timedelta(hours=3))
    ended("shop.charge", "DECLINED", status=TaskStatus.CANCELLED)
    args = ["--failed", "--task", "shop.charge", "--error-code", "DECLINED", "--since", "1h"]
    out, _ = retry(*args, "--dry-run")
    assert out.strip() == "5 task(s) would be retried (dry run: nothing changed)"
    assert Task.objects.filter(status=TaskStatus.PENDING).count() == 0
    out, err = retry(*args, "--batch", "2")
    assert out.strip() == "5 task(s) retried"
    assert "[" + "#" * 30 + "]       5/5 100%" in err
    assert set(Task.objects.filter(status=TaskStatus.PENDING).values_list("pk", flat=True)) == {t.pk for t in match}


def test_group_and_other_statuses() -> None:
    failed = ended("a", "E")
    cancelled = ended("a", "E", status=TaskStatus.CANCELLED)
    out, _ = retry("--failed", "--cancelled", "--group", group_key("E", "m 2") or "")
    assert out.strip() == "2 task(s) retried"
    assert Task.objects.get(pk=failed.pk).status == Task.objects.get(pk=cancelled.pk).status == TaskStatus.PENDING


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["--failed", "--since", "soon"],
        ["--failed", "--since", "1e400h"],
        ["--failed", "--since", "99999d"],
        ["--failed", "--task", "a\x00b"],
        ["--failed", "--error-code", "\ud800"],
        ["--failed", "--batch", "0"],
    ],
    ids=["no-status", "since-word", "since-huge", "since-too-long", "task-nul", "code-surrogate", "batch-zero"],
)
def test_bad_arguments_are_command_errors(args: list[str]) -> None:
    with pytest.raises((CommandError, SystemExit)):
        retry(*args)


@pytest.mark.parametrize(
    ("done", "total", "bar"),
    [
        (0, 10, "[" + "-" * 30 + "]       0/10   0%"),
        (5, 10, "[" + "#" * 15 + "-" * 15 + "]       5/10  50%"),
        (0, 0, "[" + "#" * 30 + "]       0/0 100%"),
    ],
)
def test_progress_bar(done: int, total: int, bar: str) -> None:
    assert progress_bar(done, total) == bar
