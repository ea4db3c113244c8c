"""The operator's admin through Django's test client: list, detail, actions, dashboard, workers."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import Permission, User
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from horsies_django import stats
from horsies_django.admin.dashboard import chart, nice_ceiling
from horsies_django.models import Task, TaskAttempt, WorkerProcess
from horsies_django.worker import Worker
from tests.taskapp.tasks import add, boom

pytestmark = pytest.mark.django_db(transaction=True)

CHANGELIST = "admin:horsies_django_task_changelist"
DASHBOARD = "admin:horsies_django_task_dashboard"
FRAGMENT = "admin:horsies_django_task_dashboard_fragment"


def make_user(*perms: str, username: str = "operator") -> User:
    user = User.objects.create_user(username, password="pw", is_staff=True)
    for codename in perms:
        user.user_permissions.add(Permission.objects.get(codename=codename, content_type__app_label="horsies_django"))
    return user


@pytest.fixture
def login() -> Callable[..., Client]:
    def log_in(*perms: str, csrf: bool = False) -> Client:
        client = Client(enforce_csrf_checks=csrf)
        client.force_login(make_user(*perms, username=f"user{User.objects.count()}"))
        return client

    return log_in


@pytest.fixture
def operator(login: Callable[..., Client]) -> Client:
    return login("view_task", "operate_task")


def failed_task(message: str = "broken") -> str:
    task_id = boom.send(message).unwrap().task_id
    Worker(burst=True).run()
    assert Task.objects.get(pk=task_id).status == "FAILED"
    return task_id


def act(client: Client, action: str, *ids: str, confirm: bool, query: str = "", **extra: str) -> Any:
    data: dict[str, Any] = {"action": action, "_selected_action": list(ids), **extra}
    if confirm:
        data["post"] = "yes"
    else:
        data["index"] = "0"
    return client.post(reverse(CHANGELIST) + query, data, follow=confirm)


def messages_of(response: Any) -> list[str]:
    return [str(m) for m in response.context["messages"]]


# -- permissions ------------------------------------------------------------------------


def test_staff_without_permission_sees_nothing(login: Callable[..., Client]) -> None:
    client = login()
    assert client.get(reverse(CHANGELIST)).status_code == 403
    assert client.get(reverse(DASHBOARD)).status_code == 403
    assert client.get(reverse(FRAGMENT)).status_code == 403


def test_anonymous_is_sent_to_login() -> None:
    response = Client().get(reverse(FRAGMENT))
    assert response.status_code == 302 and "/login/" in response["Location"]


def test_viewer_can_look_but_not_act(login: Callable[..., Client]) -> None:
    task_id = failed_task()
    client = login("view_task")
    page = client.get(reverse(CHANGELIST)).content.decode()
    assert "retry_tasks" not in page and "cancel_tasks" not in page
    detail = client.get(reverse("admin:horsies_django_task_change", args=[task_id])).content.decode()
    assert 'value="retry_tasks"' not in detail
    response = act(client, "retry_tasks", task_id, confirm=True)
    assert not any("retried" in m for m in messages_of(response))  # no action to run: the list again
    assert Task.objects.get(pk=task_id).status == "FAILED"


def test_operator_permission_also_grants_the_view(login: Callable[..., Client]) -> None:
    client = login("operate_task")
    assert client.get(reverse(CHANGELIST)).status_code == 200
    assert client.get(reverse(DASHBOARD)).status_code == 200


def test_tasks_cannot_be_added_changed_or_deleted(operator: Client) -> None:
    task_id = add.send(1).unwrap().task_id
    assert operator.get(reverse("admin:horsies_django_task_add")).status_code == 403
    assert operator.get(reverse("admin:horsies_django_task_delete", args=[task_id])).status_code == 403
    response = operator.post(reverse("admin:horsies_django_task_change", args=[task_id]), {"name": "x"})
    assert response.status_code == 403
    assert Task.objects.get(pk=task_id).name == "tests.add"


# -- list -------------------------------------------------------------------------------


def test_list_shows_badges_and_the_columns(operator: Client) -> None:
    failed_id = failed_task()
    add.send(2)
    page = operator.get(reverse(CHANGELIST)).content.decode()
    assert 'class="hz-badge hz-badge--failed"' in page
    assert 'class="hz-badge hz-badge--pending"' in page
    assert "UNHANDLED_EXCEPTION" in page and failed_id[:8] in page
    for header in ("Task", "Status", "Error", "Attempts", "Waited", "Ran", "Worker"):
        assert f">{header}</a>" in page or f">{header}</span>" in page, header
    assert "1 of 1" in page  # attempt n of max


def test_filters_and_search(operator: Client) -> None:
    failed_id = failed_task("needle in the message")
    pending_id = add.send(1).unwrap().task_id

    def ids(query: str) -> set[str]:
        response = operator.get(reverse(CHANGELIST) + query)
        assert response.status_code == 200, query
        return {str(t.pk) for t in response.context["cl"].result_list}

    assert ids("?status__exact=FAILED") == {failed_id}
    assert ids("?status__exact=PENDING") == {pending_id}
    assert ids("?queue=default") == {failed_id, pending_id}
    assert ids("?queue=standard") == set()
    assert ids("?name=tests.add") == {pending_id}
    assert ids("?error_code=UNHANDLED_EXCEPTION") == {failed_id}
    assert ids(f"?q={failed_id}") == {failed_id}
    assert ids("?q=needle") == {failed_id}
    assert ids("?q=UNHANDLED") == {failed_id}
    assert ids("?q=tests.ad") == {pending_id}
    assert ids(f"?q={uuid.uuid4()}") == set()
    today = timezone.localdate()
    assert ids(f"?enqueued_at__year={today.year}&enqueued_at__month={today.month}") == {failed_id, pending_id}


def test_filter_choices_and_dates_come_without_a_scan_of_every_row(operator: Client) -> None:
    failed_task()
    add.send(1)
    with CaptureQueriesContext(connection) as queries:
        page = operator.get(reverse(CHANGELIST)).content.decode()
    sql = [q["sql"].upper() for q in queries.captured_queries]
    assert not [s for s in sql if "DISTINCT" in s], sql
    assert "tests.boom" in page and "UNHANDLED_EXCEPTION" in page  # name and error code choices
    assert timezone.localdate().strftime("%B") in page  # the date drill-down


def test_counts_are_estimated_on_postgresql_past_the_limit(operator: Client, monkeypatch: pytest.MonkeyPatch) -> None:
    for i in range(30):
        add.send(i)
    monkeypatch.setattr(stats, "EXACT_COUNT_LIMIT", 5)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE horsies_task" if connection.vendor == "postgresql" else "ANALYZE")
    with CaptureQueriesContext(connection) as queries:
        response = operator.get(reverse(CHANGELIST))
    counts = [q["sql"] for q in queries.captured_queries if "COUNT(" in q["sql"].upper() and "horsies_task" in q["sql"]]
    page = response.content.decode()
    if connection.vendor == "postgresql":
        assert counts == [], counts
        assert response.context["cl"].paginator.estimated
        assert "PostgreSQL&#x27;s estimate" in page or "PostgreSQL's estimate" in page
    else:
        assert response.context["cl"].result_count == 30
        assert "estimate" not in page


def test_stats_estimated_count_is_exact_for_small_sets() -> None:
    for i in range(3):
        add.send(i)
    assert stats.estimated_count(Task.objects.all()) == (3, False)
    assert stats.estimated_count(Task.objects.filter(name="nothing")) == (0, False)


def test_distinct_values_use_the_index_and_refuse_other_columns() -> None:
    failed_task()
    add.send(1)
    assert stats.distinct_values("name") == ["tests.add", "tests.boom"]
    assert stats.distinct_values("error_code") == ["UNHANDLED_EXCEPTION"]
    assert stats.distinct_values("name", limit=1) == ["tests.add"]
    with pytest.raises(ValueError, match="no loose index scan"):
        stats.distinct_values("error_message")


def test_queue_names_are_listed_across_every_status_without_an_index_of_their_own() -> None:
    failed_task()  # default, FAILED
    for queue in ("reports", "critical", "bulk"):  # three under PENDING: the scan steps within a status
        add.with_options(queue_name=queue).send(1)
    add.with_options(queue_name="critical").send(2)
    Task.objects.filter(queue_name="critical", arguments__a=2).update(status="RUNNING")
    add.with_options(queue_name="standard").send(3)
    Task.objects.filter(queue_name="standard").update(status="COMPLETED")

    assert stats.distinct_values("queue_name") == ["bulk", "critical", "default", "reports", "standard"]
    assert stats.distinct_values("queue_name", limit=2) == ["bulk", "critical"]
    assert stats.distinct_values("queue_name", limit=4) == ["bulk", "critical", "default", "reports"]
    assert not [index for index in Task._meta.indexes if index.fields and index.fields[0] == "queue_name"]
    with CaptureQueriesContext(connection) as queries:
        stats.distinct_values("queue_name")
    assert len(queries) == 1
    assert "WITH RECURSIVE" in queries[0]["sql"] and '"status" =' in queries[0]["sql"]


def test_sent_tasks_have_version_7_ids() -> None:
    first = uuid.UUID(add.send(1).unwrap().task_id)
    later = [uuid.UUID(add.send(i).unwrap().task_id) for i in range(2, 40)]
    assert {made.version for made in [first, *later]} == {7}
    assert len({first, *later}) == 39


# -- detail -----------------------------------------------------------------------------


def test_detail_shows_escaped_json_traceback_attempts_and_timeline(operator: Client) -> None:
    task_id = failed_task("<script>alert('x')</script>")
    page = operator.get(reverse("admin:horsies_django_task_change", args=[task_id])).content.decode()
    assert "<script>alert" not in page
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in page
    assert '<pre class="hz-pre hz-json">{\n  &quot;message&quot;' in page  # pretty-printed, indented
    assert "Traceback (most recent call last)" in page and "ValueError" in page
    assert 'id="attempts-group"' in page and 'hz-badge--failed">FAILED' in page
    assert 'class="hz-timeline"' in page and "Attempt 1 failed" in page and "Sent" in page
    assert 'value="retry_tasks"' in page  # the operator's button
    assert 'value="cancel_tasks"' not in page  # a failed task cannot be cancelled


def test_detail_of_a_pending_scheduled_task_offers_cancel_and_run_now(operator: Client) -> None:
    task_id = add.schedule(3600, 1).unwrap().task_id
    page = operator.get(reverse("admin:horsies_django_task_change", args=[task_id])).content.decode()
    assert 'value="cancel_tasks"' in page and 'value="run_now"' in page and 'value="retry_tasks"' not in page
    assert "Due to run" in page and "No attempt has finished yet." in page


# -- actions ----------------------------------------------------------------------------


def test_retry_asks_first_then_retries_and_keeps_history(operator: Client) -> None:
    task_id = failed_task()
    done_id = add.send(1).unwrap().task_id
    Worker(burst=True).run()
    confirm = act(operator, "retry_tasks", task_id, done_id, confirm=False)
    assert confirm.status_code == 200
    page = confirm.content.decode()
    assert "Yes, retry" in page and 'id="hz-eligible-count">1<' in page
    assert "1 other selected task will be left as it is" in page
    assert 'name="csrfmiddlewaretoken"' in page and 'name="post" value="yes"' in page
    assert Task.objects.get(pk=task_id).status == "FAILED"  # nothing changed yet

    response = act(operator, "retry_tasks", task_id, done_id, confirm=True)
    assert messages_of(response) == ["1 task retried."]
    assert Task.objects.get(pk=task_id).status == "PENDING"
    assert Task.objects.get(pk=done_id).status == "COMPLETED"
    Worker(burst=True).run()
    assert list(TaskAttempt.objects.filter(task_id=task_id).values_list("number", flat=True)) == [1, 2]


def test_cancel_and_run_now(operator: Client) -> None:
    pending = add.send(1).unwrap().task_id
    scheduled = add.schedule(3600, 2).unwrap().task_id
    response = act(operator, "run_now", pending, scheduled, confirm=True)
    assert messages_of(response) == ["1 task made ready to run now."]
    assert Task.objects.get(pk=scheduled).run_at <= timezone.now()
    response = act(operator, "cancel_tasks", pending, scheduled, confirm=True)
    assert messages_of(response) == ["2 tasks cancelled."]
    assert set(Task.objects.values_list("status", flat=True)) == {"CANCELLED"}
    response = act(operator, "cancel_tasks", pending, confirm=True)
    assert messages_of(response) == ["0 tasks cancelled."]


def test_nothing_eligible_says_so(operator: Client) -> None:
    task_id = add.send(1).unwrap().task_id
    page = act(operator, "retry_tasks", task_id, confirm=False).content.decode()
    assert "None of the selected tasks can be retried" in page and "Yes, retry" not in page


def test_select_across_acts_on_every_filtered_task(operator: Client) -> None:
    ids = [failed_task(str(i)) for i in range(3)]
    add.send(1)
    query = "?status__exact=FAILED"
    page = act(operator, "retry_tasks", ids[0], confirm=False, query=query, select_across="1").content.decode()
    assert 'id="hz-eligible-count">3<' in page and 'name="select_across" value="1"' in page
    response = act(operator, "retry_tasks", ids[0], confirm=True, query=query, select_across="1")
    assert messages_of(response) == ["3 tasks retried."]
    assert Task.objects.filter(status="PENDING").count() == 4


def test_action_from_the_detail_page_returns_there(operator: Client) -> None:
    task_id = failed_task()
    page = act(operator, "retry_tasks", task_id, confirm=False, _from_detail="1").content.decode()
    assert 'name="_from_detail" value="1"' in page
    response = act(operator, "retry_tasks", task_id, confirm=True, _from_detail="1")
    assert response.redirect_chain[-1][0] == reverse("admin:horsies_django_task_change", args=[task_id])
    assert "1 task retried." in messages_of(response)


def test_actions_need_the_csrf_token(login: Callable[..., Client]) -> None:
    client = login("view_task", "operate_task", csrf=True)
    task_id = failed_task()
    response = act(client, "retry_tasks", task_id, confirm=True)
    assert response.status_code == 403
    assert Task.objects.get(pk=task_id).status == "FAILED"


# -- dashboard, workers, app index ------------------------------------------------------


def counts_in(html: str) -> dict[tuple[str, str], int]:
    found: dict[tuple[str, str], int] = {}
    for queue, row in re.findall(r'<tr data-queue="([^"]+)">(.*?)</tr>', html, re.S):
        for status, count in re.findall(r'data-status="(\w+)" data-count="(\d+)"', row):
            found[(queue, status)] = int(count)
    return found


def test_dashboard_numbers_chart_errors_and_workers(operator: Client, settings: Any) -> None:
    failed_task()
    # "Alive" is a heartbeat within two intervals; 0.25 s (the test setting) is too short to render in.
    settings.HORSIES = {**settings.HORSIES, "WORKER": {"heartbeat_s": 30, "lease_s": 60}}
    failed_task()
    add.send(1)
    add.with_options(queue_name="standard").send(2)
    now = timezone.now()
    WorkerProcess.objects.create(
        id="host-a:1:aaaaaa", hostname="host-a", pid=1, queues=[], concurrency=4, started_at=now, last_heartbeat_at=now
    )
    WorkerProcess.objects.create(
        id="host-b:2:bbbbbb",
        hostname="host-b",
        pid=2,
        queues=["standard"],
        concurrency=2,
        started_at=now - timedelta(hours=1),
        last_heartbeat_at=now - timedelta(minutes=5),
    )
    page = operator.get(reverse(DASHBOARD)).content.decode()
    assert 'id="hz-dashboard"' in page and reverse(FRAGMENT) in page and "horsies_django/dashboard.js" in page
    counts = counts_in(page)
    assert counts[("default", "FAILED")] == 2 and counts[("default", "PENDING")] == 1
    assert counts[("standard", "PENDING")] == 1 and counts[("standard", "COMPLETED")] == 0
    assert '<svg id="hz-chart"' in page and 'class="hz-err"' in page
    errors = reverse("admin:horsies_django_task_errors")
    assert f"{errors}?since=24h&amp;name=tests.boom#group-" in page  # the group's row on the Errors page
    assert 'data-worker="host-a:1:aaaaaa"' in page and "hz-badge--alive" in page and "hz-badge--silent" in page

    fragment = operator.get(reverse(FRAGMENT))
    assert fragment["X-Horsies-Fragment"] == "1" and "no-store" in fragment["Cache-Control"]
    body = fragment.content.decode()
    assert "<html" not in body and counts_in(body) == counts
    add.send(3)
    assert counts_in(operator.get(reverse(FRAGMENT)).content.decode())[("default", "PENDING")] == 2


def test_snapshot_numbers(settings: Any) -> None:
    settings.HORSIES = {**settings.HORSIES, "QUEUES": {"default": {}, "standard": {"priority": 50}}}
    failed_task()
    add.send(1)
    add.schedule(600, 2)
    Worker(burst=True).run()
    snap = stats.snapshot()
    (default,) = snap.queues[:1]
    assert default.name == "default"
    assert default.counts["COMPLETED"] == 1 and default.counts["FAILED"] == 1 and default.counts["PENDING"] == 1
    assert default.scheduled == 1 and default.oldest_pending_s is None
    assert [q.name for q in snap.queues] == ["default", "standard"]  # configured queues show while empty
    assert len(snap.throughput) == 60
    assert sum(b.completed for b in snap.throughput) == 1 and sum(b.failed for b in snap.throughput) == 1
    assert [(e.code, e.count) for e in snap.top_errors] == [("UNHANDLED_EXCEPTION", 1)]
    assert [w.state for w in snap.workers] == ["stopped", "stopped"]  # failed_task's and this one's
    data = snap.as_dict()
    assert data["totals"]["COMPLETED"] == 1 and isinstance(data["at"], str)


def test_chart_scale() -> None:
    assert [nice_ceiling(v) for v in (0, 3, 5, 9, 11, 39, 41, 95, 101)] == [4, 4, 6, 10, 20, 40, 60, 100, 200]
    now = timezone.now()
    buckets = [stats.MinuteStats(start=now - timedelta(minutes=1), completed=3, failed=1), stats.MinuteStats(now)]
    drawn = chart(buckets)
    ok = drawn["bars"][0]
    assert ok["ok_h"] == pytest.approx(drawn["plot_h"] * 3 / 4) and ok["err_h"] == pytest.approx(drawn["plot_h"] / 4)
    assert drawn["bars"][1]["ok_h"] == 0 and [g["label"] for g in drawn["grid"]] == [0, 2, 4]


def test_workers_page(operator: Client, login: Callable[..., Client], settings: Any) -> None:
    # "Alive" means a heartbeat within two heartbeat intervals; the test settings' 0.25 s is too
    # short for a loaded machine to render the page in.
    settings.HORSIES = {**settings.HORSIES, "WORKER": {"heartbeat_s": 30, "lease_s": 60}}
    now = timezone.now()
    WorkerProcess.objects.create(
        id="host-a:1:aaaaaa",
        hostname="host-a",
        pid=1,
        queues=["critical"],
        concurrency=4,
        started_at=now,
        last_heartbeat_at=now,
    )
    task_id = add.send(1).unwrap().task_id
    Task.objects.filter(pk=task_id).update(status="RUNNING", worker_id="host-a:1:aaaaaa", started_at=now)
    client = login("view_workerprocess")
    page = client.get(reverse("admin:horsies_django_workerprocess_changelist")).content.decode()
    assert "host-a:1:aaaaaa" in page and "hz-badge--alive" in page and "critical" in page
    assert "?q=host-a:1:aaaaaa&amp;status__exact=RUNNING" in page
    assert (
        client.get(reverse("admin:horsies_django_workerprocess_changelist") + "?state=silent")
        .context["cl"]
        .result_count
        == 0
    )
    detail = client.get(reverse("admin:horsies_django_workerprocess_change", args=["host-a:1:aaaaaa"]))
    assert task_id[:8] in detail.content.decode()


def test_app_index_and_list_link_to_the_dashboard(operator: Client) -> None:
    app_index = operator.get(reverse("admin:app_list", args=["horsies_django"])).content.decode()
    assert reverse(DASHBOARD) in app_index
    assert reverse(DASHBOARD) in operator.get(reverse(CHANGELIST)).content.decode()
