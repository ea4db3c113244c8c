"""`manage.py horsies_status`: the dashboard's numbers in the terminal."""

from __future__ import annotations

import io
import json
from datetime import timedelta
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from horsies_django.management.commands import horsies_status
from horsies_django.models import WorkerProcess
from horsies_django.worker import Worker
from tests.taskapp.tasks import add, boom


@pytest.fixture(autouse=True)
def two_queues(settings: Any) -> None:
    """The reports below list the configured queues; keep them to the two the tests use."""
    settings.HORSIES = {**settings.HORSIES, "QUEUES": {"default": {}, "standard": {"priority": 50}}}


pytestmark = pytest.mark.django_db(transaction=True)


def run(*args: str) -> str:
    out = io.StringIO()
    call_command("horsies_status", *args, stdout=out)
    return out.getvalue()


@pytest.fixture
def busy_queue() -> None:
    boom.send("x")
    add.send(1)
    Worker(burst=True, worker_id="host-a:10:abcdef").run()
    add.send(2)
    add.with_options(queue_name="standard").send(3)
    now = timezone.now()
    WorkerProcess.objects.create(
        id="host-b:20:fedcba",
        hostname="host-b",
        pid=20,
        queues=["standard"],
        concurrency=2,
        started_at=now,
        last_heartbeat_at=now - timedelta(minutes=10),
    )


@pytest.mark.usefixtures("busy_queue")
def test_text_report() -> None:
    lines = run().splitlines()
    assert lines[0].startswith("horsies status at ")
    header = lines[2].split()
    assert header[:8] == ["QUEUE", "PENDING", "CLAIMED", "RUNNING", "COMPLETED", "FAILED", "CANCELLED", "EXPIRED"]
    rows = {line.split()[0]: line.split()[1:8] for line in lines[3:6]}
    assert rows["default"] == ["1", "0", "0", "1", "1", "0", "0"]
    assert rows["standard"] == ["1", "0", "0", "0", "0", "0", "0"]
    assert rows["(all)"] == ["2", "0", "0", "1", "1", "0", "0"]
    text = "\n".join(lines)
    assert "last hour: 1 completed, 1 failed" in text
    assert "top errors (24 h): UNHANDLED_EXCEPTION 1" in text
    assert "host-a:10:abcdef  stopped" in text
    assert "host-b:20:fedcba  silent" in text


def test_empty_database() -> None:
    text = run()
    assert "standard" in text  # a configured queue is listed while empty
    assert "no worker has reported in the last hour" in text


@pytest.mark.usefixtures("busy_queue")
def test_json_report() -> None:
    data = json.loads(run("--json"))
    assert set(data) == {"at", "queues", "throughput", "top_errors", "workers", "totals"}
    assert data["totals"] == {
        "PENDING": 2,
        "CLAIMED": 0,
        "RUNNING": 0,
        "COMPLETED": 1,
        "FAILED": 1,
        "CANCELLED": 0,
        "EXPIRED": 0,
    }
    assert [q["name"] for q in data["queues"]] == ["default", "standard"]
    assert len(data["throughput"]) == 60
    (error,) = data["top_errors"]
    assert {k: error[k] for k in ("code", "count", "name")} == {
        "code": "UNHANDLED_EXCEPTION",
        "count": 1,
        "name": "tests.boom",
    }
    assert error["group"] and error["message"]
    assert {w["id"]: w["state"] for w in data["workers"]} == {
        "host-a:10:abcdef": "stopped",
        "host-b:20:fedcba": "silent",
    }


def test_watch_refreshes_until_interrupted(monkeypatch: pytest.MonkeyPatch) -> None:
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        if len(sleeps) == 1:
            add.send(1)  # the next refresh shows it
            return
        raise KeyboardInterrupt

    monkeypatch.setattr(horsies_status.time, "sleep", sleep)
    lines = run("--watch", "0.5", "--json").splitlines()
    assert sleeps == [0.5, 0.5]
    assert [json.loads(line)["totals"]["PENDING"] for line in lines] == [0, 1]


def test_watch_default_interval_and_bad_values(monkeypatch: pytest.MonkeyPatch) -> None:
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        raise KeyboardInterrupt

    monkeypatch.setattr(horsies_status.time, "sleep", sleep)
    assert run("--watch").count("horsies status at") == 1
    assert sleeps == [2.0]
    for bad in ("0", "soon"):
        with pytest.raises(CommandError, match="--watch"):
            call_command("horsies_status", "--watch", bad)
