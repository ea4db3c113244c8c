"""Hostile query parameters on every admin page: never a 500 (issue #9 item 9), on both databases.

PostgreSQL refuses a NUL character in a text value, so `?queue=%00` used to reach the database and
end in a 500; a lone surrogate, a huge number or a date that does not exist must not either.
"""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from horsies_django.models import Schedule, Task, TaskStatus, WorkerProcess

pytestmark = pytest.mark.django_db(transaction=True)

# Raw query-string values: NUL, a lone surrogate's UTF-8 bytes, overlong and odd numbers, SQL and LIKE meta.
VALUES = [
    "%00", "a%00b", "%ED%A0%80", "%FF", "x" * 5000, "-1", "0", "99999", "1e400", "NaN", "abc", "%25", "'", "%5C",
]  # fmt: skip
PARAMS = [
    "queue", "name", "error_code", "status__exact", "q", "o", "p", "enqueued_at__year", "enqueued_at__month",
    "enqueued_at__day", "state", "hostname", "paused__exact", "e", "_facets", "all", "group", "since", "task",
    "_after", "_step",
]  # fmt: skip
PAGES = [
    "admin:horsies_django_task_changelist",
    "admin:horsies_django_task_dashboard",
    "admin:horsies_django_task_dashboard_fragment",
    "admin:horsies_django_task_errors",
    "admin:horsies_django_schedule_changelist",
    "admin:horsies_django_workerprocess_changelist",
]


@pytest.fixture
def client() -> Client:
    Task.objects.create(
        name="tests.boom", status=TaskStatus.FAILED, error_code="BOOM", error_message="id 42 failed",
        run_at=timezone.now(), enqueued_at=timezone.now(), finished_at=timezone.now(),
    )  # fmt: skip
    Schedule.objects.create(name="nightly", task_name="tests.add", spec="every 1m")
    now = timezone.now()
    WorkerProcess.objects.create(
        id="host:1:abc", hostname="host", pid=1, concurrency=1, started_at=now, last_heartbeat_at=now
    )
    client = Client()
    client.force_login(User.objects.create_superuser("root", password="pw"))
    return client


def ok(status: int) -> bool:
    return status in (200, 302, 400)


@pytest.mark.parametrize("page", PAGES)
def test_hostile_query_parameters_never_give_a_500(client: Client, page: str) -> None:
    url = reverse(page)
    bad = []
    for param in PARAMS:
        for value in VALUES:
            response = client.get(f"{url}?{param}={value}")
            if not ok(response.status_code):
                bad.append((param, value[:20], response.status_code))
    assert bad == []


@pytest.mark.parametrize("param", ["queue", "name", "error_code", "q", "status__exact", "hostname"])
def test_nul_is_refused_with_400(client: Client, param: str) -> None:
    response = client.get(reverse("admin:horsies_django_task_changelist") + f"?{param}=%00")
    assert response.status_code == 400
    assert b"NUL" in response.content


def test_a_nul_in_a_post_is_refused(client: Client) -> None:
    response = client.post(reverse("admin:horsies_django_task_changelist"), {"action": "retry_tasks\x00"})
    assert response.status_code == 400


@pytest.mark.parametrize("after", ["%00", "x", "'", "-1", "%ED%A0%80", "9" * 100])
def test_hostile_bulk_step_cursor_never_gives_a_500(client: Client, after: str) -> None:
    data = {"action": "retry_tasks", "select_across": "1", "_selected_action": "x", "post": "yes", "_step": "1"}
    url = reverse("admin:horsies_django_task_changelist") + "?status__exact=FAILED"
    response = client.post(url, {**data, "_after": after.replace("%00", "\x00")})
    assert response.status_code == 400


@pytest.mark.parametrize(
    "object_id",
    ["%00", "a%00b", "%ED%A0%80", "not-a-uuid", str(uuid.uuid4()), "x" * 300],
)
@pytest.mark.parametrize("model", ["task", "schedule", "workerprocess"])
def test_hostile_object_ids_never_give_a_500(client: Client, model: str, object_id: str) -> None:
    for suffix in ("change/", "history/"):
        response = client.get(f"/admin/horsies_django/{model}/{object_id}/{suffix}")
        assert ok(response.status_code) or response.status_code == 404, (suffix, response.status_code)


def test_a_date_drilldown_that_does_not_exist_is_not_a_500(client: Client) -> None:
    url = reverse("admin:horsies_django_task_changelist")
    for query in (
        "enqueued_at__year=2026&enqueued_at__month=2&enqueued_at__day=30",
        "enqueued_at__year=2026&enqueued_at__month=13",
        "enqueued_at__year=0&enqueued_at__month=1&enqueued_at__day=1",
        "enqueued_at__year=10000",
    ):
        assert ok(client.get(f"{url}?{query}").status_code), query


def test_recent_task_is_still_listed_after_hostile_requests(client: Client) -> None:
    # The refusals change nothing: the ordinary filter still works.
    response = client.get(reverse("admin:horsies_django_task_changelist") + "?error_code=BOOM")
    assert response.status_code == 200
    assert b"tests.boom" in response.content
    assert Task.objects.filter(enqueued_at__gte=timezone.now() - timedelta(hours=1)).count() == 1


# Queue names as stored rows may hold them (the broker checks sends; rows can be written by anyone).
STORED_QUEUE_NAMES = ["", " ", "<script>alert(1)</script>", "a'b\"c", "ünïcødé", "🐎", "x" * 100, "a%b_c", "\\"]


def test_hostile_stored_queue_names_are_listed_escaped_in_the_queue_filter(client: Client) -> None:
    from horsies_django import stats

    now = timezone.now()
    statuses = list(TaskStatus)
    for index, queue in enumerate(STORED_QUEUE_NAMES):
        Task.objects.create(
            name="tests.add", queue_name=queue, status=statuses[index % len(statuses)], run_at=now, enqueued_at=now
        )
    assert set(stats.distinct_values("queue_name")) == {*STORED_QUEUE_NAMES, "default"}
    response = client.get(reverse("admin:horsies_django_task_changelist"))
    assert response.status_code == 200
    page = response.content.decode()
    assert "<script>alert(1)</script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "ünïcødé" in page and "🐎" in page
