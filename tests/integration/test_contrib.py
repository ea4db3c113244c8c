"""Sentry and Prometheus integrations, the worker's --version, --metrics-port and --reload."""

from __future__ import annotations

import os
import re
import signal
import socket
import threading
import time
import urllib.request
from collections.abc import Iterator
from io import StringIO
from typing import Any

import pytest
import sentry_sdk
from django.core.management import call_command
from django.test import RequestFactory
from prometheus_client.parser import text_string_to_metric_families
from sentry_sdk.envelope import Envelope
from sentry_sdk.transport import Transport

import horsies_django
from horsies_django.contrib.prometheus import metrics_view, record_task_metrics
from horsies_django.contrib.sentry import HorsiesIntegration
from horsies_django.worker import Worker
from tests.taskapp.tasks import add, boom, flaky, times_out, user_error

from ..conftest import ROOT, run_worker, start_worker

pytestmark = pytest.mark.django_db(transaction=True)


class MemoryTransport(Transport):
    """Keeps every event sentry-sdk would send, for the test to read."""

    def __init__(self, options: Any = None) -> None:
        super().__init__(options)
        self.events: list[dict[str, Any]] = []

    def capture_envelope(self, envelope: Envelope) -> None:
        for item in envelope.items:
            if item.type == "event":
                self.events.append(item.payload.json or {})


@pytest.fixture
def sentry_events(request: pytest.FixtureRequest) -> Iterator[list[dict[str, Any]]]:
    options = getattr(request, "param", {})
    transport = MemoryTransport()
    sentry_sdk.init(
        dsn="https://public@sentry.example.invalid/1",
        transport=transport,
        integrations=[HorsiesIntegration(**options)],
        default_integrations=False,
        auto_enabling_integrations=False,
    )
    yield transport.events
    sentry_sdk.get_client().close()
    sentry_sdk.init()  # no DSN: a client that sends nothing, for the tests after this one


def test_an_exception_is_one_event_with_tags_and_frames(sentry_events: list[dict[str, Any]]) -> None:
    handle = boom.send("kaput").unwrap()
    add.send(1, 2)
    Worker(burst=True, pool="threads").run()
    sentry_sdk.flush()
    assert len(sentry_events) == 1
    event = sentry_events[0]
    assert event["tags"] == {
        "task_name": "tests.boom",
        "task_id": handle.task_id,
        "queue": "default",
        "error_code": "UNHANDLED_EXCEPTION",
    }
    (exception,) = event["exception"]["values"]
    assert exception["type"] == "ValueError" and exception["value"] == "kaput"
    frames = exception["stacktrace"]["frames"]
    assert frames[-1]["function"] == "boom" and frames[-1]["filename"].endswith("tests/taskapp/tasks.py")
    assert frames[-1]["context_line"] == "raise ValueError(message)"
    assert "ValueError: kaput" in event["extra"]["traceback"]


def test_a_returned_error_and_a_timeout_are_events_too(sentry_events: list[dict[str, Any]]) -> None:
    user_error.send("OUT_OF_STOCK")
    times_out.send(5000)
    Worker(burst=True, pool="threads", shutdown_timeout_s=0).run()
    sentry_sdk.flush()
    codes = sorted(e["tags"]["error_code"] for e in sentry_events)
    assert codes == ["OUT_OF_STOCK", "TASK_TIMEOUT"]
    returned = next(e for e in sentry_events if e["tags"]["error_code"] == "OUT_OF_STOCK")
    assert returned["exception"]["values"][0]["value"] == "refused"


@pytest.mark.parametrize("sentry_events", [{"ignore_codes": ["OUT_OF_STOCK"]}], indirect=True)
def test_expected_codes_are_left_out(sentry_events: list[dict[str, Any]]) -> None:
    user_error.send("OUT_OF_STOCK")
    user_error.send("PAYMENT_DECLINED")
    Worker(burst=True, pool="threads").run()
    sentry_sdk.flush()
    assert [e["tags"]["error_code"] for e in sentry_events] == ["PAYMENT_DECLINED"]


@pytest.mark.parametrize("sentry_events", [{"report_returned_errors": False}], indirect=True)
def test_returned_errors_can_be_left_out_entirely(sentry_events: list[dict[str, Any]]) -> None:
    user_error.send("OUT_OF_STOCK")
    boom.send("raised")
    Worker(burst=True, pool="threads").run()
    sentry_sdk.flush()
    assert [e["tags"]["error_code"] for e in sentry_events] == ["UNHANDLED_EXCEPTION"]


def test_retried_tries_are_not_events(sentry_events: list[dict[str, Any]], thread_worker: Any) -> None:
    handle = flaky.send("sentry-retry", 1).unwrap()
    with thread_worker(pool="threads"):
        assert handle.get(timeout_ms=60_000).unwrap() == 2
    sentry_sdk.flush()
    assert sentry_events == []


def test_without_the_integration_nothing_is_sent() -> None:
    transport = MemoryTransport()
    sentry_sdk.init(dsn="https://public@sentry.example.invalid/1", transport=transport, default_integrations=False)
    try:
        HorsiesIntegration.setup_once()  # connected, as after an earlier init with it
        boom.send("x")
        Worker(burst=True, pool="threads").run()
        sentry_sdk.flush()
        assert transport.events == []
    finally:
        sentry_sdk.get_client().close()
        sentry_sdk.init()


# -- Prometheus ------------------------------------------------------------------------------


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_the_view_reads_queue_state_from_the_database() -> None:
    add.send(1)
    add.send(2)
    add.with_options(queue_name="standard").send(3)
    add.schedule(3600, 4)
    response = metrics_view(RequestFactory().get("/metrics"))
    assert response.status_code == 200 and response["Content-Type"].startswith("text/plain")
    found = samples(response.content.decode())
    assert found[("horsies_tasks", (("queue", "default"), ("status", "PENDING")))] == 3
    assert found[("horsies_tasks", (("queue", "standard"), ("status", "PENDING")))] == 1
    assert found[("horsies_tasks", (("queue", "default"), ("status", "COMPLETED")))] == 0
    assert found[("horsies_tasks_scheduled", (("queue", "default"),))] == 1
    assert found[("horsies_oldest_ready_age_seconds", (("queue", "default"),))] >= 0
    assert found[("horsies_workers", (("state", "alive"),))] == 0
    Worker(burst=True, pool="threads").run()
    found = samples(metrics_view(RequestFactory().get("/metrics")).content.decode())
    assert found[("horsies_tasks", (("queue", "default"), ("status", "COMPLETED")))] == 2
    assert found[("horsies_tasks", (("queue", "default"), ("status", "PENDING")))] == 1
    assert found[("horsies_workers", (("state", "stopped"),))] == 1


def test_status_command_prints_the_same_metrics() -> None:
    add.send(1)
    out = StringIO()
    call_command("horsies_status", "--prometheus", stdout=out)
    found = samples(out.getvalue())
    assert found[("horsies_tasks", (("queue", "default"), ("status", "PENDING")))] == 1


def test_workers_count_finishes_retries_and_time() -> None:
    record_task_metrics()
    record_task_metrics()  # twice connects once
    before = samples(metrics_view(RequestFactory().get("/metrics")).content.decode())
    add.send(1)
    boom.send("x")
    Worker(burst=True, pool="threads").run()
    after = samples(metrics_view(RequestFactory().get("/metrics")).content.decode())

    def grew(name: str, **labels: str) -> float:
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0) - before.get(key, 0)

    assert grew("horsies_tasks_finished_total", queue="default", task="tests.add", status="COMPLETED") == 1
    assert grew("horsies_tasks_finished_total", queue="default", task="tests.boom", status="FAILED") == 1
    assert grew("horsies_task_run_seconds_count", queue="default", task="tests.add") == 1
    assert grew("horsies_task_start_latency_seconds_count", queue="default") == 2


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_worker_serves_its_counters_on_metrics_port() -> None:
    port = free_port()
    add.send(1)
    process = start_worker("--pool", "threads", "--metrics-port", str(port))
    try:
        deadline = time.monotonic() + 60
        text = ""
        while time.monotonic() < deadline:
            try:
                text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()  # noqa: S310
            except OSError:
                text = ""
            if 'horsies_tasks_finished_total{queue="default",status="COMPLETED",task="tests.add"} 1.0' in text:
                break
            time.sleep(0.2)
        assert 'horsies_tasks_finished_total{queue="default",status="COMPLETED",task="tests.add"} 1.0' in text
    finally:
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=60)
    assert process.returncode == 0


# -- the worker command ----------------------------------------------------------------------


def test_version() -> None:
    assert re.fullmatch(r"\d+\.\d+\.\d+", horsies_django.__version__)
    finished = run_worker("--version")
    assert finished.stdout.strip() == horsies_django.__version__


def test_reload_restarts_the_worker_when_a_python_file_changes() -> None:
    watched = ROOT / "tests" / "taskapp" / "tasks.py"
    times = os.stat(watched)
    first = add.send(1).unwrap()
    process = start_worker("--reload", "--pool", "threads", "-v", "1")
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(process.stderr.readline, "")), daemon=True)  # type: ignore[union-attr]
    reader.start()
    try:
        assert first.get(timeout_ms=60_000).unwrap() == 1
        deadline = time.monotonic() + 90
        # The reloader looks at mtimes about once a second; touch until a second worker has started.
        while sum("worker starting" in line for line in lines) < 2 and time.monotonic() < deadline:
            os.utime(watched)
            time.sleep(1)
        assert sum("worker starting" in line for line in lines) >= 2, "".join(lines)
        assert add.send(2).unwrap().get(timeout_ms=60_000).unwrap() == 2
    finally:
        os.utime(watched, (times.st_atime, times.st_mtime))
        process.send_signal(signal.SIGINT)
        process.wait(timeout=60)
        reader.join(timeout=10)
        for pipe in (process.stdout, process.stderr):
            assert pipe is not None
            pipe.close()
    text = "".join(lines)
    starts = sum("worker starting" in line for line in lines)
    assert sum("worker stopped" in line for line in lines) == starts, text
    assert process.returncode == 0, text
