"""The operator's admin, round 2, in Chromium at 1440 px with the sidebar open: the Errors page, a
group retry with its progress, the audit trail, a failing schedule in red, and the layout."""

from __future__ import annotations

import re
import uuid
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from horsies_django.models import Schedule, Task, TaskStatus
from horsies_django.types.grouping import group_key
from tests.browser.test_admin_browser import log_in, operator, run_worker, send
from tests.taskapp.tasks import add, boom

pytestmark = pytest.mark.django_db(transaction=True)


def sidebar_open(page: Any) -> None:
    page.evaluate("localStorage.setItem('django.admin.navSidebarIsOpen', 'true')")


def test_errors_page_group_retry_and_audit_history(page: Any, live_server: Any) -> None:
    operator()
    in_group = [send(boom, f"order {n} failed") for n in (17, 4242, 9)]
    other = send(boom, "disk full")
    run_worker()
    base = live_server.url
    log_in(page, base)
    sidebar_open(page)

    # The admin index links the Errors page (and the dashboard).
    page.goto(f"{base}/admin/")
    assert page.locator('a[href="/admin/horsies_django/dashboard/"]').count() >= 1
    page.locator('a[href="/admin/horsies_django/errorgroupentry/"]').first.click()
    page.wait_for_url(re.compile(r"/task/errors/"))
    assert page.title().startswith("Errors")
    rows = page.locator("#hz-groups tbody tr")
    assert rows.count() == 2
    big = page.locator("#hz-groups tbody tr", has_text="order <n> failed")
    assert big.locator(".hz-group-count").inner_text() == "3"
    assert big.locator(".hz-spark rect").count() == 24

    # Retry the group: a confirmation with the count, then batches with progress, then the list.
    big.locator("button.hz-group-retry").click()
    page.wait_for_selector("text=will be retried")
    assert page.locator("#hz-eligible-count").inner_text() == "3"
    page.click('input[value="Yes, retry"]')
    page.wait_for_selector("ul.messagelist li.success")
    assert page.locator("ul.messagelist").inner_text().strip() == "3 tasks retried."
    assert set(Task.objects.filter(pk__in=in_group).values_list("status", flat=True)) == {TaskStatus.PENDING}
    assert Task.objects.get(pk=other).status == TaskStatus.FAILED

    # The task page says who retried it and when; so does its History.
    page.goto(f"{base}/admin/horsies_django/task/{in_group[0]}/change/")
    history = page.locator(".field-operator_history")
    assert "ops" in history.inner_text() and "Retried (one of 3 changed by this action)." in history.inner_text()
    page.goto(f"{base}/admin/horsies_django/task/{in_group[0]}/history/")
    assert "Retried (one of 3" in page.locator("#change-history").inner_text()


def test_failing_schedule_is_red_on_the_schedules_page_and_the_dashboard(page: Any, live_server: Any) -> None:
    operator()
    now = timezone.now()
    failed = Task.objects.create(
        name="tests.boom", status=TaskStatus.FAILED, error_code="UNHANDLED_EXCEPTION", error_message="boom",
        error_group=group_key("UNHANDLED_EXCEPTION", "boom"), run_at=now, enqueued_at=now, finished_at=now,
        idempotency_key=f"schedule:every-15s:{now.isoformat()}",
    )  # fmt: skip
    Schedule.objects.create(
        name="every-15s", task_name="tests.boom", spec="every 15s", last_task_id=failed.pk,
        last_run_at=now, next_run_at=now + timedelta(seconds=15),
    )  # fmt: skip
    Schedule.objects.create(name="calm", task_name="tests.add", spec="every 1m", next_run_at=now)
    base = live_server.url
    log_in(page, base)
    sidebar_open(page)
    page.goto(f"{base}/admin/horsies_django/schedule/")
    assert page.title().startswith("Schedules")
    row = page.locator("#result_list tbody tr", has_text="every-15s")
    assert row.locator(".hz-badge--failed").first.inner_text().strip().lower() == "failing"
    assert "UNHANDLED_EXCEPTION" in row.inner_text()
    assert row.locator(".hz-failures").inner_text() == "1"
    red = row.locator("td").first.evaluate("td => getComputedStyle(td).backgroundColor")
    calm = page.locator("#result_list tbody tr", has_text="calm").locator("td").first
    assert red != calm.evaluate("td => getComputedStyle(td).backgroundColor")
    page.goto(f"{base}/admin/horsies_django/task/dashboard/")
    assert page.locator('#hz-failing-schedules tr[data-schedule="every-15s"]').count() == 1
    assert page.locator('#hz-failing-schedules tr[data-schedule="calm"]').count() == 0


def test_lists_fit_1440_px_with_the_sidebar_open_and_json_wraps(page: Any, live_server: Any) -> None:
    operator()
    long_text = "x" * 3000
    task_id = send(boom, "a very long failure message " + "y" * 400)
    Task.objects.create(  # long names and a long worker id, as a real list has
        name="shop.synchronise_inventory_with_warehouse", queue_name="standard", status=TaskStatus.RUNNING,
        run_at=timezone.now(), enqueued_at=timezone.now(), started_at=timezone.now(), attempt=1,
        worker_id="batch-worker-17.eu-west-1.compute.internal:123456:abcdef",
    )  # fmt: skip
    send(add, 1)
    run_worker()
    Task.objects.filter(pk=task_id).update(arguments={"message": long_text, "id": str(uuid.uuid4())})
    Schedule.objects.create(
        name="sync-" + "inventory-" * 5, task_name="tests.boom", spec="*/5 * * * * (Europe/Istanbul)",
        last_task_id=task_id, last_run_at=timezone.now(), next_run_at=timezone.now(),
    )  # fmt: skip
    base = live_server.url
    log_in(page, base)
    sidebar_open(page)
    for path in (
        "/admin/horsies_django/task/",
        "/admin/horsies_django/workerprocess/",
        "/admin/horsies_django/schedule/",
    ):
        page.goto(base + path)
        assert page.locator("#nav-sidebar").is_visible()
        overflow = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
        assert overflow <= 0, (path, overflow)
        # ...nor does the list scroll sideways inside its own box: every column is in view.
        inner = page.evaluate(
            "(() => { const r = document.querySelector('.results'); return r.scrollWidth - r.clientWidth })()"
        )
        widths = page.evaluate(
            "[...document.querySelectorAll('#result_list thead th')]"
            ".map(th => th.className + ':' + Math.round(th.getBoundingClientRect().width))"
        )
        assert inner <= 0, (path, inner, widths)
    page.goto(f"{base}/admin/horsies_django/task/{task_id}/change/")
    pre = page.locator(".field-pretty_arguments pre")
    assert pre.evaluate("el => el.scrollWidth <= el.clientWidth + 1")
    wide = page.evaluate(
        """() => [...document.querySelectorAll('body *')]
            .filter(el => el.getBoundingClientRect().right > document.documentElement.clientWidth + 1)
            .map(el => el.tagName + "." + el.className).slice(0, 30)"""
    )
    assert wide == []
