"""The operator's admin, round 2 (issue #13): the Errors page and its group actions, bulk actions
in batches with progress, the audit trail, schedules from the database, honest timings."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import Permission, User
from django.db import connection
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from horsies_django import failures
from horsies_django.models import Schedule, Task, TaskStatus
from horsies_django.types.grouping import group_key, normalise
from horsies_django.worker import Worker
from tests.taskapp.tasks import add, boom

pytestmark = pytest.mark.django_db(transaction=True)

CHANGELIST = reverse("admin:horsies_django_task_changelist")
ERRORS = reverse("admin:horsies_django_task_errors")


def make_client(*perms: str, username: str = "alice") -> Client:
    user = User.objects.create_user(username, password="pw", is_staff=True)
    for codename in perms:
        user.user_permissions.add(Permission.objects.get(codename=codename, content_type__app_label="horsies_django"))
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def operator() -> Client:
    return make_client("view_task", "operate_task")


def fail(*messages: str) -> list[str]:
    ids = [boom.send(m).unwrap().task_id for m in messages]
    Worker(burst=True).run()
    assert set(Task.objects.filter(pk__in=ids).values_list("status", flat=True)) == {TaskStatus.FAILED}
    return ids


def failed_row(name: str, code: str, message: str, *, status: str = TaskStatus.FAILED, **extra: Any) -> Task:
    now = timezone.now()
    return Task.objects.create(
        name=name, status=status, error_code=code, error_message=message, error_group=group_key(code, message),
        run_at=now, enqueued_at=now, finished_at=now if status == TaskStatus.FAILED else None, **extra,
    )  # fmt: skip


# -- grouping ---------------------------------------------------------------------------

NORMALISED = [
    ("order 1234 failed", "order <n> failed"),
    ("order 'bob' failed", "order '<str>' failed"),
    ('order "bob" failed', 'order "<str>" failed'),
    ("task 3b254d1d-5177-4ea1-a29e-7458c8bf2d66 lost", "task <uuid> lost"),
    ("at 0x7f00ab and deadbeef12", "at <hex> and <hex>"),
    ("took 1.5s, 2026-11-29", "took <n>s, <n>-<n>-<n>"),
    ("  spaced \n out  ", "spaced out"),
    ("no numbers here", "no numbers here"),
    ("\x00\ud800", "\x00\ud800"),
    ("", ""),
]


@pytest.mark.parametrize(("message", "expected"), NORMALISED)
def test_normalise_folds_variable_parts(message: str, expected: str) -> None:
    assert normalise(message) == expected


def test_group_key_is_per_code_and_normalised_message() -> None:
    assert group_key("E", "order 1 failed") == group_key("E", "order 2 failed")
    assert group_key("E", "order 1 failed") != group_key("F", "order 1 failed")
    assert group_key("E", "order 1 failed") != group_key("E", "order 1 lost")
    assert group_key(None, "order 1 failed") is None
    assert len(group_key("E", "x" * 100_000) or "") == 16


def test_worker_failures_are_grouped_and_the_page_shows_each_group(operator: Client) -> None:
    fail("order 1 failed", "order 22 failed", "order 333 failed", "disk full")
    add.send(1)
    Worker(burst=True).run()  # a success joins no group
    groups, total = failures.error_groups(timezone.now())
    assert total == 2
    by_message = {g.message: g for g in groups}
    assert set(by_message) == {"ValueError: order <n> failed", "ValueError: disk full"}
    big = by_message["ValueError: order <n> failed"]
    assert (big.name, big.code, big.failed, big.retrying) == ("tests.boom", "UNHANDLED_EXCEPTION", 3, 0)
    assert big.first_seen is not None and big.last_seen is not None and big.first_seen <= big.last_seen
    assert sum(big.hourly) == 3 and big.hourly[-1] == 3 and len(big.hourly) == 24
    assert Task.objects.get(pk=big.sample_id).error_group == big.group
    page = operator.get(ERRORS).content.decode()
    assert page.count('class="hz-group-count"') == 2
    assert "ValueError: order &lt;n&gt; failed" in page
    assert f'id="group-{big.group}"' in page
    assert "<title>Errors |" in page


def test_a_task_waiting_for_its_automatic_retry_counts_as_retrying_and_leaves_the_group_on_success() -> None:
    from tests.taskapp.tasks import flaky

    task_id = flaky.send("k", 1).unwrap().task_id
    Worker(burst=True).run()  # the first run fails; the retry is due later, so the burst ends
    task = Task.objects.get(pk=task_id)
    assert (task.status, task.error_code) == (TaskStatus.PENDING, "FLAKY")
    assert task.error_group == group_key("FLAKY", "run 1 fails")
    groups, _ = failures.error_groups(timezone.now())
    assert [(g.name, g.failed, g.retrying, g.sample_id) for g in groups] == [("tests.flaky", 0, 1, task_id)]
    Task.objects.filter(pk=task_id).update(run_at=timezone.now())
    Worker(burst=True).run()
    assert Task.objects.get(pk=task_id).status == TaskStatus.COMPLETED
    assert Task.objects.get(pk=task_id).error_group is None
    assert failures.error_groups(timezone.now()) == ([], 0)


def test_dashboard_top_errors_are_the_same_groups_and_link_to_them(operator: Client) -> None:
    fail("order 1 failed", "order 2 failed", "disk full")
    page = operator.get(reverse("admin:horsies_django_task_dashboard")).content.decode()
    group = group_key("UNHANDLED_EXCEPTION", "ValueError: order 1 failed")
    assert f"{ERRORS}?since=24h&amp;name=tests.boom#group-{group}" in page
    assert "ValueError: order &lt;n&gt; failed" in page


def test_errors_page_needs_the_view_permission() -> None:
    assert make_client(username="nobody").get(ERRORS).status_code == 403
    viewer = make_client("view_task", username="viewer")
    fail("order 1 failed")
    page = viewer.get(ERRORS).content.decode()
    assert "hz-group-count" in page and "hz-group-retry" not in page  # no actions without operate


# -- group actions, in batches, with the audit trail ------------------------------------


def group_action(client: Client, name: str, group: str, status: str, action: str, **extra: str) -> Any:
    url = f"{CHANGELIST}?name={name}&group={group}&status__exact={status}"
    data = {"action": action, "select_across": "1", "_selected_action": str(uuid.uuid4()), **extra}
    return client.post(url, data)


def test_retry_all_in_a_group_confirms_the_count_then_retries_only_that_group(operator: Client) -> None:
    in_group = fail("order 1 failed", "order 2 failed", "order 3 failed")
    (other,) = fail("disk full")
    group = Task.objects.get(pk=in_group[0]).error_group
    assert group is not None
    confirm = group_action(operator, "tests.boom", group, "FAILED", "retry_tasks", index="0")
    assert confirm.status_code == 200
    assert '<strong id="hz-eligible-count">3</strong>' in confirm.content.decode()
    assert Task.objects.filter(status=TaskStatus.PENDING).count() == 0  # nothing yet
    done = group_action(operator, "tests.boom", group, "FAILED", "retry_tasks", post="yes", _total="3")
    assert done.status_code == 302
    assert set(Task.objects.filter(pk__in=in_group).values_list("status", flat=True)) == {TaskStatus.PENDING}
    assert Task.objects.get(pk=other).status == TaskStatus.FAILED
    retried = Task.objects.get(pk=in_group[0])
    assert (retried.error_group, retried.manual_retries) == (None, 1)
    # Audit: one entry per task, by alice, with the action and the count.
    entries = LogEntry.objects.filter(object_id__in=in_group)
    assert entries.count() == 3
    assert {e.user.username for e in entries} == {"alice"}
    assert {e.get_change_message() for e in entries} == {"Retried (one of 3 changed by this action)."}
    assert not LogEntry.objects.filter(object_id=other).exists()
    # ...shown on the task page and in its History.
    detail = operator.get(reverse("admin:horsies_django_task_change", args=[in_group[0]])).content.decode()
    assert "<strong>alice</strong> Retried (one of 3 changed by this action)." in detail
    history = operator.get(reverse("admin:horsies_django_task_history", args=[in_group[0]])).content.decode()
    assert "Retried (one of 3" in history


def test_step_mode_does_one_batch_per_request_and_reports_progress(operator: Client, monkeypatch: Any) -> None:
    from horsies_django import bulk

    monkeypatch.setattr(bulk, "BATCH", 2)
    ids = fail(*(f"order {i} failed" for i in range(5)))
    group = Task.objects.get(pk=ids[0]).error_group
    assert group is not None
    after, seen, steps = "", 0, []
    while True:
        reply = group_action(
            operator, "tests.boom", group, "FAILED", "retry_tasks", post="yes", _step="1", _after=after, _total="5"
        )
        assert reply.status_code == 200
        data = json.loads(reply.content)
        steps.append(data)
        if data["done"]:
            break
        seen += data["seen"]
        after = data["after"]
    # Keyset batches: 2 + 2 + 1, then an empty step that says done.
    assert [s["changed"] for s in steps] == [2, 2, 1, 0] and steps[-1]["after"] is None
    assert Task.objects.filter(pk__in=ids, status=TaskStatus.PENDING).count() == 5
    assert LogEntry.objects.filter(object_id__in=ids).count() == 5


def test_a_hostile_step_cursor_is_a_400(operator: Client) -> None:
    ids = fail("order 1 failed")
    group = Task.objects.get(pk=ids[0]).error_group or ""
    for after in ("not-an-id", "'; DROP TABLE x; --"):
        reply = group_action(
            operator, "tests.boom", group, "FAILED", "retry_tasks", post="yes", _step="1", _after=after
        )
        assert reply.status_code == 400
    assert Task.objects.get(pk=ids[0]).status == TaskStatus.FAILED


def test_cancel_pending_in_a_group_cancels_only_the_retrying_tasks(operator: Client) -> None:
    waiting = [failed_row("tests.flaky", "FLAKY", f"try {i} failed", status=TaskStatus.PENDING) for i in range(3)]
    ended = failed_row("tests.flaky", "FLAKY", "try 9 failed")
    group = ended.error_group or ""
    groups, _ = failures.error_groups(timezone.now())
    assert [(g.failed, g.retrying) for g in groups] == [(1, 3)]
    page = operator.get(ERRORS).content.decode()
    assert "Cancel 3 pending" in page and "Retry all 1" in page
    confirm = group_action(operator, "tests.flaky", group, "PENDING", "cancel_tasks", index="0")
    assert '<strong id="hz-eligible-count">3</strong>' in confirm.content.decode()
    group_action(operator, "tests.flaky", group, "PENDING", "cancel_tasks", post="yes", _total="3")
    assert set(Task.objects.filter(pk__in=[t.pk for t in waiting]).values_list("status", flat=True)) == {"CANCELLED"}
    assert Task.objects.get(pk=ended.pk).status == TaskStatus.FAILED
    assert LogEntry.objects.filter(object_id__in=[str(t.pk) for t in waiting]).count() == 3


def test_select_across_has_no_cap_and_batches(operator: Client) -> None:
    # Far more than one page of the list and one batch: every matching row is retried.
    rows = [failed_row("tests.bulk", "E", "x") for _ in range(60)]
    from horsies_django import bulk

    done = list(bulk.batches(Task.objects.filter(status=TaskStatus.FAILED), bulk.retry, batch=25))
    assert [len(b.changed) for b in done] == [25, 25, 10]
    assert Task.objects.filter(pk__in=[r.pk for r in rows], status=TaskStatus.PENDING).count() == 60


# -- attempts and timings ---------------------------------------------------------------


def test_attempts_count_manual_retries_apart(operator: Client) -> None:
    (task_id,) = fail("once")
    page = operator.get(CHANGELIST).content.decode()
    assert "1 of 1" in page and "manual" not in page
    act = {"action": "retry_tasks", "_selected_action": [task_id], "post": "yes"}
    operator.post(CHANGELIST, act)
    Worker(burst=True).run()
    task = Task.objects.get(pk=task_id)
    assert (task.status, task.attempt, task.manual_retries) == (TaskStatus.FAILED, 2, 1)
    page = operator.get(CHANGELIST).content.decode()
    assert "1 of 1" in page and "+1 manual" in page and "2/1" not in page


def test_queue_wait_and_run_time_are_shown_apart(operator: Client) -> None:
    now = timezone.now()
    task = Task.objects.create(
        name="tests.add", status=TaskStatus.COMPLETED, run_at=now - timedelta(seconds=30),
        enqueued_at=now - timedelta(seconds=30), started_at=now - timedelta(seconds=10), finished_at=now,
    )  # fmt: skip
    page = operator.get(CHANGELIST).content.decode()
    assert '<td class="field-waited">20s</td>' in page
    assert '<td class="field-ran">10s<small class="hz-sub"><time' in page
    detail = operator.get(reverse("admin:horsies_django_task_change", args=[task.pk])).content.decode()
    assert "Queue wait" in detail and "Run time" in detail


def test_the_list_has_a_short_error_message_column(operator: Client) -> None:
    failed_row("tests.boom", "BOOM", "the disk is full " + "x" * 500)
    page = operator.get(CHANGELIST).content.decode()
    assert 'class="hz-sub hz-msg" title="the disk is full' in page
    assert "x" * 130 not in page  # only the head of the message is read and shown


# -- schedules --------------------------------------------------------------------------


def schedule_row(name: str, *, last: Task | None = None, next_run: bool = True, paused: bool = False) -> Schedule:
    return Schedule.objects.create(
        name=name, task_name="tests.boom", spec="every 15s", paused=paused,
        last_task_id=last.pk if last else None, last_run_at=timezone.now() if last else None,
        next_run_at=timezone.now() + timedelta(seconds=15) if next_run else None,
    )  # fmt: skip


def test_schedules_tell_the_truth_from_the_database(operator: Client) -> None:
    failing_task = failed_row("tests.boom", "BOOM", "x", idempotency_key="schedule:failing:2026-01-01T00:00:00+00:00")
    failed_row("tests.boom", "BOOM", "y", idempotency_key="schedule:failing:2026-01-01T00:00:15+00:00")
    failed_row("tests.boom", "BOOM", "z", idempotency_key="schedule:other:2026-01-01T00:00:15+00:00")
    ok_task = Task.objects.create(
        name="tests.boom", status=TaskStatus.COMPLETED, run_at=timezone.now(), enqueued_at=timezone.now()
    )
    # None of these is declared in this process's settings: the state comes from the workers' rows.
    schedule_row("failing", last=failing_task)
    schedule_row("healthy", last=ok_task)
    schedule_row("gone", next_run=False)
    schedule_row("resting", paused=True)
    page = operator.get(reverse("admin:horsies_django_schedule_changelist")).content.decode()
    assert "<title>Schedules |" in page
    rows = {name: page.split(f">{name}</a>")[1].split("</tr>")[0] for name in ("failing", "healthy", "gone", "resting")}
    assert 'hz-badge--failed">failing' in rows["failing"] and "BOOM" in rows["failing"]
    assert 'class="hz-failures">2</a>' in rows["failing"]  # its own two, not the other schedule's
    assert 'hz-badge--alive">active' in rows["healthy"] and "COMPLETED" in rows["healthy"]
    assert 'hz-badge--expired">inactive' in rows["gone"]
    assert 'hz-badge--cancelled">paused' in rows["resting"]
    dashboard = operator.get(reverse("admin:horsies_django_task_dashboard")).content.decode()
    assert 'id="hz-failing-schedules"' in dashboard and 'data-schedule="failing"' in dashboard
    assert 'data-schedule="healthy"' not in dashboard
    # The failures link lists exactly that schedule's tasks.
    listed = operator.get(f"{CHANGELIST}?q=schedule:failing:&status__exact=FAILED").content.decode()
    assert listed.count('class="field-task"') == 2 or listed.count("field-task") >= 2


def test_pause_and_resume_write_the_audit_trail(operator: Client) -> None:
    schedule_row("nightly")
    url = reverse("admin:horsies_django_schedule_changelist")
    operator.post(url, {"action": "pause_schedules", "_selected_action": ["nightly"], "post": "yes"})
    assert Schedule.objects.get(pk="nightly").paused
    (entry,) = LogEntry.objects.filter(object_id="nightly")
    assert (entry.user.username, entry.get_change_message()) == ("alice", "Paused.")


# -- layout -----------------------------------------------------------------------------


def test_dashboard_and_errors_are_linked_from_the_admin_index(operator: Client) -> None:
    page = operator.get(reverse("admin:index")).content.decode()
    assert reverse("admin:horsies_django_dashboard_changelist") in page
    assert reverse("admin:horsies_django_errorgroupentry_changelist") in page
    assert operator.get(reverse("admin:horsies_django_dashboard_changelist")).url == reverse(
        "admin:horsies_django_task_dashboard"
    )
    assert operator.get(reverse("admin:horsies_django_errorgroupentry_changelist")).url == ERRORS
    assert make_client(username="nobody").get(reverse("admin:index")).content.decode().count("Dashboard") == 0


# -- the grouped query reads its index --------------------------------------------------


def test_the_grouped_query_reads_the_error_group_index() -> None:
    now = timezone.now()
    Task.objects.bulk_create(
        [
            Task(
                name=f"tests.t{i % 7}",
                status=TaskStatus.COMPLETED if i % 10 else TaskStatus.FAILED,
                error_code=None if i % 10 else "E",
                error_group=None if i % 10 else group_key("E", f"m{i % 13}"),
                run_at=now,
                enqueued_at=now,
                finished_at=now,
            )  # fmt: skip
            for i in range(5000)
        ],
        batch_size=1000,
    )
    rows = failures.group_counts()
    # As in a real table, most rows completed; the statistics say so.
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE horsies_task" if connection.vendor == "postgresql" else "ANALYZE")
    plan = rows.explain()
    assert "horsies_task_error_group_idx" in plan, plan
