"""Shared fixtures: a worker in this process (a thread) and real `horsies_worker` subprocesses."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.db import connection

from horsies_django.worker import Worker

ROOT = Path(__file__).resolve().parent.parent


def pytest_sessionstart(session: pytest.Session) -> None:
    """Remove a SQLite test database left by an interrupted run, with its WAL files: Django deletes
    only the main file, and a fresh database beside a stale WAL fails with "disk I/O error"."""
    from django.conf import settings

    test_name = settings.DATABASES["default"].get("TEST", {}).get("NAME")
    if settings.DATABASES["default"]["ENGINE"].endswith("sqlite3") and test_name:
        for suffix in ("", "-wal", "-shm"):
            Path(f"{test_name}{suffix}").unlink(missing_ok=True)


def database_url() -> str:
    """A URL for the database the tests are using right now (the test database, not the real one)."""
    settings = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{settings['NAME']}"
    user = settings.get("USER") or "postgres"
    host = settings.get("HOST") or "127.0.0.1"
    port = settings.get("PORT") or 5432
    return f"postgres://{user}@{host}:{port}/{settings['NAME']}"


def worker_command(*args: str) -> list[str]:
    return [sys.executable, str(ROOT / "manage.py"), "horsies_worker", *args]


def worker_env() -> dict[str, str]:
    env = dict(os.environ)
    env["DATABASE_URL"] = database_url()
    env["DJANGO_SETTINGS_MODULE"] = "tests.settings"
    env["PYTHONUNBUFFERED"] = "1"
    return env


def run_worker(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run `manage.py horsies_worker ARGS` to completion against the test database."""
    return subprocess.run(
        worker_command(*args), env=worker_env(), cwd=ROOT, capture_output=True, text=True, timeout=timeout
    )


def start_worker(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        worker_command(*args),
        env=worker_env(),
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_until_registered(workers: list[subprocess.Popen[str]], timeout_s: float = 60) -> None:
    """Wait until each worker process has its row: its signal handlers are in place by then, so a
    SIGTERM asks it to stop instead of killing a process that is still starting up."""
    from horsies_django.models import WorkerProcess

    deadline = time.monotonic() + timeout_s
    pids = {worker.pid for worker in workers}
    while set(WorkerProcess.objects.filter(pid__in=pids).values_list("pid", flat=True)) != pids:
        assert time.monotonic() < deadline, "a worker did not register in time"
        time.sleep(0.05)


class ThreadWorker:
    """A `Worker` running in a background thread of the test process."""

    def __init__(self, **options: Any) -> None:
        self.worker = Worker(**options)
        self.thread = threading.Thread(target=self._run, name="test-worker", daemon=True)
        self.error: BaseException | None = None

    def _run(self) -> None:
        from django.db import connections

        try:
            self.worker.run()
        except BaseException as exc:  # surfaced by stop()
            self.error = exc
        finally:
            connections.close_all()

    def __enter__(self) -> Worker:
        self.thread.start()
        return self.worker

    def __exit__(self, *exc: object) -> None:
        self.worker.stop()
        self.thread.join(timeout=30)
        assert not self.thread.is_alive(), "worker thread did not stop"
        if self.error is not None:
            raise self.error


@pytest.fixture
def thread_worker(transactional_db: None) -> Iterator[type[ThreadWorker]]:
    yield ThreadWorker
