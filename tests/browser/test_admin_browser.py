"""The operator's admin in a real browser: find a failure, read it, retry it, watch the dashboard."""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
from django.contrib import admin
from django.contrib.auth.models import Permission, User
from django.db import connections
from django.test import override_settings

from horsies_django.admin import dashboard
from horsies_django.models import Task
from horsies_django.worker import Worker
from tests.browser.seed import seed
from tests.taskapp.tasks import add, divide

pytestmark = pytest.mark.django_db(transaction=True)

T = TypeVar("T")


def off_loop(fn: Callable[..., T], *args: Any) -> T:
    """Run `fn` in a thread of its own: `send()` rightly refuses to block inside Playwright's event loop."""
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["value"] = fn(*args)
        except BaseException as exc:  # re-raised in the test's thread
            outcome["error"] = exc
        finally:
            connections.close_all()

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(timeout=60)
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]  # type: ignore[no-any-return]


def send(task: Any, *args: Any) -> str:
    return off_loop(lambda: task.send(*args).unwrap().task_id)


def run_worker() -> None:
    off_loop(lambda: Worker(burst=True).run())


def operator(username: str = "ops") -> User:
    user = User.objects.create_user(username, password="a-long-password", is_staff=True)
    for codename in ("view_task", "operate_task", "view_workerprocess"):
        user.user_permissions.add(Permission.objects.get(codename=codename, content_type__app_label="horsies_django"))
    return user


def log_in(page: Any, base: str, username: str = "ops") -> None:
    page.goto(f"{base}/admin/login/?next=/admin/")
    page.fill("#id_username", username)
    page.fill("#id_password", "a-long-password")
    page.click("input[type=submit]")
    page.wait_for_url(f"{base}/admin/")


def count_cell(page: Any, queue: str, status: str) -> int:
    return int(page.get_attribute(f'#hz-queues tr[data-queue="{queue}"] td[data-status="{status}"]', "data-count"))


def test_find_a_failure_read_it_retry_it_and_watch_the_dashboard(
    page: Any, live_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    operator()
    # A task that raises (so it has a traceback) until its stored arguments are put right.
    failing = send(divide, 1, 0)
    send(add, 5)
    run_worker()
    assert Task.objects.get(pk=failing).status == "FAILED"
    base = live_server.url
    log_in(page, base)

    # The app index links the dashboard; the list filters down to the failure.
    page.goto(f"{base}/admin/horsies_django/")
    assert page.locator("a.hz-app-dashboard-link").count() == 1
    page.goto(f"{base}/admin/horsies_django/task/")
    page.locator("#changelist-filter").get_by_role("link", name="Failed", exact=True).click()
    page.wait_for_url(re.compile(r"status__exact=FAILED"))
    rows = page.locator("#result_list tbody tr")
    assert rows.count() == 1
    assert rows.first.locator(".hz-badge--failed").inner_text().strip().upper() == "FAILED"
    assert "UNHANDLED_EXCEPTION" in rows.first.inner_text()

    # Its detail page shows the traceback, the arguments and the attempt.
    rows.first.locator("th a").click()
    page.wait_for_url(re.compile(rf"/task/{failing}/change/"))
    assert "ZeroDivisionError" in page.locator(".field-traceback pre").inner_text()
    assert '"b": 0' in page.locator(".field-pretty_arguments pre").inner_text()
    assert page.locator("#attempts-group tbody tr").count() == 1

    # Select it in the filtered list and retry it, through the confirmation page.
    page.go_back()
    page.wait_for_url(re.compile(r"status__exact=FAILED"))
    page.check(f'input[name="_selected_action"][value="{failing}"]')
    page.select_option('select[name="action"]', "retry_tasks")
    page.click('button[name="index"]')
    page.wait_for_selector("text=will be retried")
    assert page.locator("#hz-eligible-count").inner_text() == "1"
    page.click('input[value="Yes, retry"]')
    page.wait_for_selector("ul.messagelist li.success")
    assert page.locator("ul.messagelist").inner_text().strip() == "1 task retried."
    assert Task.objects.get(pk=failing).status == "PENDING"

    # Put the data right, let a worker run it, and see it completed after two attempts.
    Task.objects.filter(pk=failing).update(arguments={"a": 1, "b": 2})
    run_worker()
    page.goto(f"{base}/admin/horsies_django/task/{failing}/change/")
    assert page.locator(".field-status_badge .hz-badge").inner_text().strip().upper() == "COMPLETED"
    assert page.locator("#attempts-group tbody tr").count() == 2
    assert '"ok": 0.5' in page.locator(".field-pretty_result pre").inner_text()

    # The dashboard draws the chart and the counts, then refreshes them in place.
    monkeypatch.setattr(dashboard, "REFRESH_S", 1)
    page.goto(f"{base}/admin/horsies_django/task/dashboard/")
    assert page.locator("#hz-chart rect.hz-ok").count() >= 1
    assert page.locator("#hz-chart rect.hz-err").count() == 0  # the failure was retried
    assert count_cell(page, "default", "COMPLETED") == 2
    assert count_cell(page, "default", "PENDING") == 0
    page.evaluate("window.hzNotReloaded = true")
    send(add, 7)
    page.wait_for_function(
        """() => document.querySelector('#hz-queues tr[data-queue="default"] td[data-status="PENDING"]')
                 .dataset.count === "1" """
    )
    assert page.evaluate("window.hzNotReloaded") is True
    assert page.get_attribute("#hz-live", "data-state") == "live"


def test_dashboard_refresh_stops_when_signed_out(page: Any, live_server: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    operator()
    monkeypatch.setattr(dashboard, "REFRESH_S", 1)
    log_in(page, live_server.url)
    page.goto(f"{live_server.url}/admin/horsies_django/task/dashboard/")
    page.context.clear_cookies()
    page.wait_for_function("() => document.querySelector('#hz-live').dataset.state === 'stale'")
    assert "reload" in page.locator("#hz-live").inner_text()
    assert page.locator("#hz-queues").count() == 1  # what was shown stays


@override_settings(HORSIES={"QUEUES": {"standard": {"priority": 50}}, "WORKER": {"heartbeat_s": 10, "lease_s": 60}})
def test_screenshots(page: Any, live_server: Any, screenshot_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The pictures in docs/admin.md: `HORSIES_SCREENSHOT_DIR=docs/img pytest tests/browser -k screenshots`."""
    monkeypatch.setattr(admin.site, "site_header", "Horsies demo shop")
    monkeypatch.setattr(admin.site, "site_title", "Horsies demo shop")
    User.objects.create_superuser("ops", password="a-long-password")
    shown = seed()
    base = live_server.url
    log_in(page, base)
    # At 1440 px the lists fit beside the open navigation sidebar.
    page.evaluate("localStorage.setItem('django.admin.navSidebarIsOpen', 'true')")

    page.goto(f"{base}/admin/horsies_django/task/")
    page.screenshot(path=str(screenshot_dir / "admin-task-list.png"))
    page.goto(f"{base}/admin/horsies_django/task/errors/")
    assert page.locator("#hz-groups tbody tr").count() >= 4
    page.screenshot(path=str(screenshot_dir / "admin-errors.png"), full_page=True)
    page.goto(f"{base}/admin/horsies_django/schedule/")
    assert page.locator("#result_list .hz-badge--failed").count() >= 1
    page.screenshot(path=str(screenshot_dir / "admin-schedules.png"))
    page.goto(f"{base}/admin/horsies_django/task/{shown.failed_task_id}/change/")
    assert "ConnectTimeout" in page.locator(".field-traceback pre").inner_text()
    page.screenshot(path=str(screenshot_dir / "admin-task-detail.png"), full_page=True)
    page.goto(f"{base}/admin/horsies_django/task/dashboard/")
    assert page.locator("#hz-workers .hz-badge--alive").count() == 2
    page.screenshot(path=str(screenshot_dir / "admin-dashboard.png"), full_page=True)
    names = ["admin-task-list.png", "admin-task-detail.png", "admin-dashboard.png", "admin-errors.png"]
    for name in [*names, "admin-schedules.png"]:
        assert (screenshot_dir / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
