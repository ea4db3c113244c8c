"""Side-by-side benchmark: horsies_django beside django-tasks-db and procrastinate, in one run.

    .venv/bin/pip install -r bench/requirements.txt      # optional: the peers
    .venv/bin/python bench/run.py --db postgres
    .venv/bin/python bench/run.py --db sqlite
    .venv/bin/python bench/run.py --db postgres --with-history 1000000

Measures, each on no-op tasks (docs/benchmarks.md says what each number means and why):

  processing   2 worker processes burn down a queue filled beforehand; tasks/s from the first
               claim to the last finish, read from the libraries' own timestamps in the database
  send         send() one task at a time, autocommit, no worker running; tasks/s
  bulk         one bulk call with 10,000 tasks (horsies `send_many`, procrastinate `batch_defer`)
  latency      one idle worker; send -> the task's first line runs (p50/p99 ms), and for horsies
               the task's last line -> handle.get() returns (p50/p99 ms)
  history      (--with-history N) horsies processing again with N finished rows in the table

Every library runs in its own scratch database, each (library, measure) in a fresh child process
of this script, measures interleaved across libraries so that a noisy machine hurts all alike.
The table gives the ratio horsies/peer: above 1 is better for tasks/s, below 1 is better for ms.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from importlib.metadata import PackageNotFoundError, version
from importlib.util import find_spec
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
# The measures and peers in other bench/ modules import this one; run as a script, it is the same.
sys.modules.setdefault("bench.run", sys.modules[__name__])

from bench.common import scratch_database, setup_django  # noqa: E402
from bench.peers.record import LATENCY_FILE_ENV  # noqa: E402

HORSIES, DTDB, PROCRASTINATE, CELERY = "horsies", "django-tasks-db", "procrastinate", "celery"
LIBRARIES = (HORSIES, DTDB, PROCRASTINATE, CELERY)
PACKAGES = {HORSIES: "horsies-django", DTDB: "django-tasks-db", PROCRASTINATE: "procrastinate", CELERY: "celery"}
RESULT_MARK = "BENCH-RESULT "
DEFAULT_DB_PREFIX = "horsies_bench_" + "".join(c if c.isalnum() else "_" for c in ROOT.name.lower())[:30]
SERVER_GONE = (
    "terminating connection due to administrator command",
    "the database system is shutting down",
    "the database system is starting up",
    "server closed the connection unexpectedly",
    "connection refused",
)


# -- the libraries, behind one small interface ----------------------------------------------------


def _truncate(tables: list[str]) -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE")
        else:
            for table in tables:  # children first
                cursor.execute(f"DELETE FROM {table}")


class Library:
    """What the measures need from a queue library; one subclass per library."""

    name = ""
    # How long an idle worker may take to notice a new task when it only polls; the latency
    # measure waits a random 0..this between samples so that samples land at random poll phases.
    idle_poll_s = 0.05
    has_blocking_get = False
    # Workers started in burst mode exit once the queue is empty; otherwise done_count() says when.
    burst_exits = True

    def reset(self) -> None:
        raise NotImplementedError

    def send(self, n: int) -> None:
        """Send one no-op task, autocommit."""
        raise NotImplementedError

    def bulk(self, n: int) -> float | None:
        """Send n no-op tasks in one bulk call; seconds taken, or None without a bulk API."""
        return None

    def fill(self, n: int) -> None:
        """Put n no-op tasks in the queue as fast as the library allows (not measured)."""
        raise NotImplementedError

    def worker_command(self, *, pool: str, concurrency: int, burst: bool) -> list[str]:
        raise NotImplementedError

    def drained(self, since: dt.datetime) -> tuple[int, dt.datetime | None, dt.datetime | None]:
        """(tasks finished, first claim, last finish) of tasks sent after `since`."""
        raise NotImplementedError

    def done_count(self) -> int:
        raise NotImplementedError

    def finish_times(self, since: dt.datetime) -> list[dt.datetime] | None:
        """When each task sent after `since` finished, oldest first (None: not available)."""
        return None

    def first_start(self, since: dt.datetime) -> dt.datetime | None:
        """When the first task sent after `since` started (its claim)."""
        return None

    def send_latency(self, sample: int) -> Any:
        raise NotImplementedError

    def analyze(self) -> None:
        """Refresh the query planner's statistics (PostgreSQL `ANALYZE`, SQLite `ANALYZE`)."""
        from django.db import connection

        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")

    def get(self, handle: Any) -> None:
        raise NotImplementedError


class Horsies(Library):
    name = HORSIES
    has_blocking_get = True

    def __init__(self) -> None:
        from django.conf import settings

        from bench.soakapp import tasks

        self.tasks = tasks
        self.idle_poll_s = float(settings.HORSIES.get("WORKER", {}).get("poll_interval_s", 0.5))

    def reset(self) -> None:
        _truncate(["horsies_task_attempt", "horsies_task", "horsies_worker"])

    def send(self, n: int) -> None:
        self.tasks.noop.send(n).unwrap()

    def bulk(self, n: int) -> float | None:
        if not hasattr(self.tasks.noop, "send_many"):
            return None
        calls = [(i,) for i in range(n)]
        started = time.perf_counter()
        self.tasks.noop.send_many(calls).unwrap()
        return time.perf_counter() - started

    def fill(self, n: int) -> None:
        from django.db import transaction

        for start in range(0, n, 10_000):
            count = min(10_000, n - start)
            if hasattr(self.tasks.noop, "send_many"):
                self.tasks.noop.send_many([(i,) for i in range(start, start + count)]).unwrap()
            else:
                with transaction.atomic():
                    for i in range(start, start + count):
                        self.tasks.noop.send(i).unwrap()

    def worker_command(self, *, pool: str, concurrency: int, burst: bool) -> list[str]:
        burst_args = ["--burst"] if burst else []
        return ["horsies_worker", "--pool", pool, "--concurrency", str(concurrency), "-v", "1", *burst_args]

    def drained(self, since: dt.datetime) -> tuple[int, dt.datetime | None, dt.datetime | None]:
        from django.db.models import Count, Max, Min

        from horsies_django.models import Task

        row = Task.objects.filter(enqueued_at__gte=since, status__in=["COMPLETED", "FAILED"]).aggregate(
            done=Count("id"), first=Min("claimed_at"), last=Max("finished_at")
        )
        return row["done"], row["first"], row["last"]

    def finish_times(self, since: dt.datetime) -> list[dt.datetime] | None:
        from horsies_django.models import Task

        done = Task.objects.filter(enqueued_at__gte=since, status__in=["COMPLETED", "FAILED"])
        return sorted(done.values_list("finished_at", flat=True))

    def first_start(self, since: dt.datetime) -> dt.datetime | None:
        from django.db.models import Min

        from horsies_django.models import Task

        first: dt.datetime | None = Task.objects.filter(enqueued_at__gte=since).aggregate(first=Min("started_at"))[
            "first"
        ]
        return first

    def send_latency(self, sample: int) -> Any:
        return self.tasks.latency.send(sample).unwrap()

    def get(self, handle: Any) -> None:
        result = handle.get(timeout_ms=30_000)
        if not result.is_ok():
            raise RuntimeError(f"handle.get() returned {result!r}")

    def insert_history(self, rows: int) -> None:
        """Insert `rows` COMPLETED tasks (and their attempt rows) in one statement each, dated a
        day back; the columns come from the models, so a new column with a default needs nothing."""
        from django.db import connection

        from horsies_django.models import Task

        pg = connection.vendor == "postgresql"
        json_cast = "::jsonb" if pg else ""
        when = (
            "now() - interval '1 day' - s.x * interval '1 millisecond'"
            if pg
            else "strftime('%Y-%m-%d %H:%M:%f', 'now', '-1 day', '-' || (s.x / 1000.0) || ' seconds')"
        )
        known = {
            "id": "gen_random_uuid()" if pg else "lower(hex(randomblob(16)))",
            "name": "'bench.noop'",
            "queue_name": "'default'",
            "priority": "100",
            "status": "'COMPLETED'",
            "arguments": f"'{{\"n\": 1}}'{json_cast}",
            "result": f"'{{\"ok\": 1}}'{json_cast}",
            "attempt": "1",
            "claim_token": "1",
            "worker_id": "'bench-history'",
            "run_at": when,
            "enqueued_at": when,
            "claimed_at": when,
            "started_at": when,
            "finished_at": when,
        }
        columns, values = _model_values(Task, known, json_cast)
        series = (
            f"generate_series(1, {int(rows)}) AS s(x)"
            if pg
            else f"(WITH RECURSIVE r(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM r WHERE x < {int(rows)}) "
            "SELECT x FROM r) AS s"
        )
        with connection.cursor() as cursor:
            cursor.execute(f"INSERT INTO {Task._meta.db_table} ({columns}) SELECT {values} FROM {series}")
            try:
                from horsies_django.models import TaskAttempt
            except ImportError:
                TaskAttempt = None  # noqa: N806
            if TaskAttempt is not None:
                attempt_known = {
                    "task_id": "t.id",
                    "number": "1",
                    "worker_id": "t.worker_id",
                    "started_at": "t.started_at",
                    "finished_at": "t.finished_at",
                    "outcome": "'COMPLETED'",
                }
                columns, values = _model_values(TaskAttempt, attempt_known, json_cast)
                cursor.execute(
                    f"INSERT INTO {TaskAttempt._meta.db_table} ({columns}) SELECT {values} "
                    f"FROM {Task._meta.db_table} AS t WHERE t.status = 'COMPLETED'"
                )
            # A table that has lived that long has been vacuumed and analysed; start from there.
            if pg:
                cursor.execute(f"VACUUM ANALYZE {Task._meta.db_table}")
                if TaskAttempt is not None:
                    cursor.execute(f"VACUUM ANALYZE {TaskAttempt._meta.db_table}")
            else:
                cursor.execute("ANALYZE")
                cursor.execute("PRAGMA wal_checkpoint(TRUNCATE)")


def _model_values(model: Any, known: dict[str, str], json_cast: str) -> tuple[str, str]:
    """Column list and SQL expressions for every concrete column of `model`: `known` ones as
    given, the rest NULL when nullable, else their default as a literal. Auto ids are left out."""
    from django.db import models

    columns: list[str] = []
    values: list[str] = []
    for field in model._meta.concrete_fields:
        if isinstance(field, models.AutoField):
            continue
        if field.attname in known:
            expression = known[field.attname]
        elif field.null:
            expression = "NULL"
        elif field.has_default():
            default = field.get_default()
            if isinstance(field, models.JSONField):
                expression = "'" + json.dumps(default).replace("'", "''") + "'" + json_cast
            elif isinstance(default, bool):
                expression = "TRUE" if default else "FALSE"
            elif isinstance(default, (int, float)):
                expression = repr(default)
            else:
                expression = "'" + str(default).replace("'", "''") + "'"
        else:
            raise RuntimeError(f"--with-history: no value for the new column {model.__name__}.{field.attname}")
        columns.append(field.column)
        values.append(expression)
    return ", ".join(columns), ", ".join(values)


class DjangoTasksDb(Library):
    name = DTDB
    idle_poll_s = 1.0  # db_worker --interval, its default

    def __init__(self) -> None:
        from django_tasks_db.models import DBTaskResult

        from bench.peers import dtdb_tasks

        self.tasks = dtdb_tasks
        self.model = DBTaskResult

    def reset(self) -> None:
        _truncate([self.model._meta.db_table])

    def send(self, n: int) -> None:
        self.tasks.noop.enqueue(n)

    def fill(self, n: int) -> None:
        from django.db import transaction

        for start in range(0, n, 10_000):
            with transaction.atomic():
                for i in range(start, min(start + 10_000, n)):
                    self.tasks.noop.enqueue(i)

    def worker_command(self, *, pool: str, concurrency: int, burst: bool) -> list[str]:
        # One task at a time per process: db_worker has no concurrency setting. No start-up delay
        # (a random 0-1 s sleep against thundering herds) and no autoreloader.
        burst_args = ["--batch"] if burst else []
        return ["db_worker", "--no-startup-delay", "--no-reload", "-v", "0", *burst_args]

    def drained(self, since: dt.datetime) -> tuple[int, dt.datetime | None, dt.datetime | None]:
        from django.db.models import Count, Max, Min

        row = (
            self.model.objects.finished()
            .filter(enqueued_at__gte=since)
            .aggregate(done=Count("id"), first=Min("started_at"), last=Max("finished_at"))
        )
        return row["done"], row["first"], row["last"]

    def finish_times(self, since: dt.datetime) -> list[dt.datetime] | None:
        return sorted(
            self.model.objects.finished().filter(enqueued_at__gte=since).values_list("finished_at", flat=True)
        )

    def first_start(self, since: dt.datetime) -> dt.datetime | None:
        return self.drained(since)[1]

    def send_latency(self, sample: int) -> Any:
        return self.tasks.latency.enqueue(sample)


class Procrastinate(Library):
    name = PROCRASTINATE
    idle_poll_s = 0.05  # LISTEN/NOTIFY: the worker wakes at once; a short gap suffices

    def __init__(self) -> None:
        from bench.peers import procrastinate_tasks

        self.tasks = procrastinate_tasks

    def reset(self) -> None:
        _truncate(["procrastinate_events", "procrastinate_periodic_defers", "procrastinate_jobs"])
        _truncate(["procrastinate_workers"])

    def send(self, n: int) -> None:
        self.tasks.noop.defer(n=n)

    def bulk(self, n: int) -> float | None:
        calls = [{"n": i} for i in range(n)]
        started = time.perf_counter()
        self.tasks.noop.batch_defer(*calls)
        return time.perf_counter() - started

    def fill(self, n: int) -> None:
        for start in range(0, n, 10_000):
            self.tasks.noop.batch_defer(*({"n": i} for i in range(start, min(start + 10_000, n))))

    def worker_command(self, *, pool: str, concurrency: int, burst: bool) -> list[str]:
        burst_args = ["--one-shot"] if burst else []
        return ["procrastinate", "worker", "--concurrency", str(concurrency), *burst_args]

    def drained(self, since: dt.datetime) -> tuple[int, dt.datetime | None, dt.datetime | None]:
        from django.db import connection

        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(*) FILTER (WHERE type IN ('succeeded', 'failed')), "
                "min(at) FILTER (WHERE type = 'started'), max(at) FILTER (WHERE type IN ('succeeded', 'failed')) "
                "FROM procrastinate_events WHERE at >= %s",
                [since],
            )
            done, first, last = cursor.fetchone()
        return done, first, last

    def finish_times(self, since: dt.datetime) -> list[dt.datetime] | None:
        from django.db import connection

        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT at FROM procrastinate_events WHERE type IN ('succeeded', 'failed') AND at >= %s ORDER BY at",
                [since],
            )
            return [row[0] for row in cursor.fetchall()]

    def first_start(self, since: dt.datetime) -> dt.datetime | None:
        return self.drained(since)[1]

    def send_latency(self, sample: int) -> Any:
        return self.tasks.latency.defer(sample=sample)


def _celery() -> Library:
    from bench.celery_peer import Celery

    return Celery()


LIBRARY_CLASSES: dict[str, Callable[[], Library]] = {
    HORSIES: Horsies,
    DTDB: DjangoTasksDb,
    PROCRASTINATE: Procrastinate,
    CELERY: _celery,
}


# -- worker processes -------------------------------------------------------------------------


class WorkerProcess:
    """A `manage.py <worker command>` child with its output in a file (a pipe could fill up)."""

    def __init__(self, command: list[str]) -> None:
        self.log = tempfile.NamedTemporaryFile(prefix="horsies-bench-worker-", suffix=".log", delete=False)
        # A library's own program (Celery's) comes as a whole command line; the rest are manage.py commands.
        own_program = command[0] == sys.executable
        argv = command if own_program else [sys.executable, str(ROOT / "manage.py"), *command]
        env = os.environ.copy()
        if own_program:  # not a Django process: Celery would otherwise set Django up from it
            env.pop("DJANGO_SETTINGS_MODULE", None)
        self.process = subprocess.Popen(
            argv,
            cwd=ROOT,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )

    def stop(self, timeout: float = 60) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def output(self) -> str:
        self.log.flush()
        return Path(self.log.name).read_text(errors="replace")

    def close(self) -> None:
        self.log.close()
        os.unlink(self.log.name)


@contextmanager
def workers(library: Library, count: int, **options: Any) -> Iterator[list[WorkerProcess]]:
    from django.db import connections

    connections.close_all()
    started = [WorkerProcess(library.worker_command(**options)) for _ in range(count)]
    try:
        yield started
    finally:
        for worker in started:
            worker.stop()
        for worker in started:
            worker.close()


# -- the measures (run in a child process, one library each) ---------------------------------


def _now() -> dt.datetime:
    from django.utils import timezone

    return timezone.now()


def _drain(
    library: Library, *, tasks: int, workers_: int, pool: str, concurrency: int, cap_s: float, analyze: bool = False
) -> dict[str, Any]:
    since = _now() - dt.timedelta(seconds=1)
    started = time.perf_counter()
    library.fill(tasks)
    fill_s = time.perf_counter() - started
    if analyze:
        library.analyze()
    capped = False
    failed_worker = ""
    launched = _now()
    with workers(library, workers_, pool=pool, concurrency=concurrency, burst=True) as procs:
        deadline = time.monotonic() + cap_s
        while any(p.process.poll() is None for p in procs):
            if not library.burst_exits and library.done_count() >= tasks:
                break
            if time.monotonic() > deadline:
                capped = True
                break
            time.sleep(0.05)
        for p in procs:
            p.stop()
        summaries = [line for p in procs for line in p.output().splitlines() if "tasks/s" in line]
        for p in procs:
            ok = (0, -signal.SIGTERM) if library.burst_exits else (0, -signal.SIGTERM, 1)
            if p.process.returncode not in ok and not capped:
                failed_worker = p.output()[-3000:]
    done, first, last = library.drained(since)
    if failed_worker:
        raise RuntimeError(f"a worker failed:\n{failed_worker}")
    if not done or first is None or last is None:
        raise RuntimeError("no task was processed")
    window = (last - first).total_seconds()
    result: dict[str, Any] = {
        "rate": done / window if window > 0 else None,
        "done": done,
        "sent": tasks,
        "window_s": window,
        "fill_s": fill_s,
        "capped": capped,
        "worker_summaries": summaries,
    }
    result.update(drain_profile(library, since, launched, done, last))
    return result


def drain_profile(
    library: Library, since: dt.datetime, launched: dt.datetime, done: int, last: dt.datetime
) -> dict[str, Any]:
    """The same run seen three ways: the steady state (the rate between the 10th and the 90th
    percentile of finish times, with start-up and the tail left out), the wall time from starting
    the worker processes to the last finish, start-up included, and the start-up alone (launch ->
    first task started)."""
    profile: dict[str, Any] = {"wall_s": (last - launched).total_seconds()}
    profile["wall_rate"] = done / profile["wall_s"] if profile["wall_s"] > 0 else None
    first = library.first_start(since)
    if first is not None:
        profile["startup_ms"] = (first - launched).total_seconds() * 1000
    times = library.finish_times(since)
    if times and len(times) >= 20:
        low, high = len(times) // 10, len(times) * 9 // 10
        span = (times[high] - times[low]).total_seconds()
        profile["steady_rate"] = (high - low) / span if span > 0 else None
    return profile


def measure_processing(library: Library, **options: Any) -> dict[str, Any]:
    library.reset()
    return _drain(library, **options)


def measure_history(library: Library, *, rows: int, **options: Any) -> dict[str, Any]:
    """Processing with `rows` finished tasks in the table (0: the baseline). Unlike the plain
    processing measure, the planner's statistics are refreshed once the queue is full, in both
    runs, so that the ratio shows what the table's size costs and nothing else."""
    assert isinstance(library, Horsies)
    library.reset()
    started = time.perf_counter()
    if rows:
        library.insert_history(rows)
    insert_s = time.perf_counter() - started
    result = _drain(library, analyze=True, **options)
    result["history_rows"] = rows
    result["history_insert_s"] = insert_s
    return result


def measure_send(library: Library, *, tasks: int) -> dict[str, Any]:
    library.reset()
    for i in range(20):  # warm up: connection, imports, statement caches
        library.send(i)
    started = time.perf_counter()
    for i in range(tasks):
        library.send(i)
    elapsed = time.perf_counter() - started
    return {"rate": tasks / elapsed, "sent": tasks, "elapsed_s": elapsed}


def measure_bulk(library: Library, *, tasks: int) -> dict[str, Any]:
    library.reset()
    if library.bulk(10) is None:
        return {"na": "no bulk API"}
    library.reset()
    elapsed = library.bulk(tasks)
    assert elapsed is not None
    return {"rate": tasks / elapsed, "sent": tasks, "elapsed_s": elapsed}


class LatencyLog:
    """Reads the lines the latency tasks append (see bench/peers/record.py) as they come."""

    def __init__(self, path: str) -> None:
        self.file = open(path, "rb")  # noqa: SIM115
        self.pending = b""
        self.lines: dict[int, tuple[float, float]] = {}

    def wait_for(self, sample: int, timeout: float) -> tuple[float, float]:
        deadline = time.monotonic() + timeout
        while sample not in self.lines:
            data = self.file.read()
            if data:
                *complete, self.pending = (self.pending + data).split(b"\n")
                for line in complete:
                    key, started, ended = line.split()
                    self.lines[int(key)] = (float(started), float(ended))
                continue
            if time.monotonic() > deadline:
                raise TimeoutError(f"latency sample {sample} did not run within {timeout:g}s")
            time.sleep(0.001)
        return self.lines[sample]


def _percentiles(values: list[float]) -> dict[str, Any]:
    if not values:
        return {"n": 0}
    ordered = sorted(values)

    def rank(q: float) -> float:
        return ordered[max(0, math.ceil(q * len(ordered)) - 1)] * 1000

    return {"n": len(values), "p50": statistics.median(ordered) * 1000, "p99": rank(0.99), "max": ordered[-1] * 1000}


def measure_latency(
    library: Library, *, samples: int, pool: str, concurrency: int, budget_s: float, seed: int
) -> dict[str, Any]:
    library.reset()
    rng = random.Random(seed)
    fd, path = tempfile.mkstemp(prefix="horsies-bench-latency-")
    os.close(fd)
    os.environ[LATENCY_FILE_ENV] = path
    log = LatencyLog(path)
    gap_s = max(library.idle_poll_s, 0.05)
    result: dict[str, Any] = {}
    try:
        with workers(library, 1, pool=pool, concurrency=concurrency, burst=False) as (worker,):
            for warm in range(3):  # the worker is up and has run a task; not counted
                library.send_latency(-1 - warm)
                try:
                    log.wait_for(-1 - warm, timeout=90)
                except TimeoutError:
                    raise RuntimeError(f"worker did not run the warm-up task:\n{worker.output()[-3000:]}") from None
            # send -> start: the worker is idle when each sample is sent; a random gap before it
            # lands each send at a random point of a polling worker's sleep.
            to_start: list[float] = []
            deadline = time.monotonic() + budget_s
            for sample in range(samples):
                if time.monotonic() > deadline and len(to_start) >= 10:
                    break
                time.sleep(rng.uniform(0, gap_s))
                sent = time.time()
                library.send_latency(sample)
                try:
                    started, _ = log.wait_for(sample, timeout=60)
                except TimeoutError as exc:
                    raise RuntimeError(f"{exc}; worker output:\n{worker.output()[-3000:]}") from None
                to_start.append(started - sent)
            result["send_to_start"] = _percentiles(to_start)
            # end -> get(): only where the library can wait for a result.
            if library.has_blocking_get:
                to_get: list[float] = []
                deadline = time.monotonic() + budget_s
                for i in range(samples):
                    if time.monotonic() > deadline and len(to_get) >= 10:
                        break
                    sample = 1_000_000 + i
                    time.sleep(rng.uniform(0, gap_s))
                    handle = library.send_latency(sample)
                    library.get(handle)
                    returned = time.time()
                    _, ended = log.wait_for(sample, timeout=10)
                    to_get.append(returned - ended)
                result["end_to_get"] = _percentiles(to_get)
    finally:
        log.file.close()
        os.unlink(path)
    return result


MEASURES: dict[str, Callable[..., dict[str, Any]]] = {
    "processing": measure_processing,
    "history": measure_history,
    "send": measure_send,
    "bulk": measure_bulk,
    "latency": measure_latency,
}


def _measure(name: str) -> Callable[..., dict[str, Any]]:
    """A measure by name: the side-by-side ones here, issue #12's horsies-only ones in bench/speed.py."""
    if name not in MEASURES:
        from bench import speed

        MEASURES.update(speed.MEASURES)
    return MEASURES[name]


def child_main(library_name: str, measure: str, url: str, params: dict[str, Any]) -> None:
    if library_name == HORSIES:
        settings_module = "bench.settings"
    else:
        os.environ["HORSIES_BENCH_PEER"] = library_name
        settings_module = "bench.peer_settings"
    setup_django(url, settings_module)
    library = LIBRARY_CLASSES[library_name]()
    result = _measure(measure)(library, **params)
    print(RESULT_MARK + json.dumps(result), flush=True)


# -- the parent: run every (measure, library) in a child, then print the table ------------------


def unavailable(library: str, db: str) -> str | None:
    """Why a library cannot run here, or None."""
    if library == PROCRASTINATE:
        if db == "sqlite":
            return "n/a (PostgreSQL only)"
        return None if find_spec("procrastinate") else "not installed"
    if library == DTDB:
        import django

        if not find_spec("django_tasks_db") or (django.VERSION < (6, 0) and not find_spec("django_tasks")):
            return "not installed"
    if library == CELERY:
        from bench import celery_peer

        return celery_peer.unavailable()
    return None


def _git_revision() -> str:
    """The commit measured, and whether the library's code differs from it."""
    try:
        commit = subprocess.run(
            ["git", "log", "-1", "--format=%h %ci"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
        changed = subprocess.run(
            ["git", "status", "--porcelain", "horsies_django"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "an unknown commit"
    return f"commit {commit}" + (" with uncommitted changes in horsies_django/" if changed else "")


def run_child(library: str, measure: str, url: str, timeout: float, **params: Any) -> dict[str, Any]:
    command = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--child",
        library,
        "--measure",
        measure,
        "--url",
        url,
        "--params",
        json.dumps(params),
    ]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:g}s"}
    for line in reversed(done.stdout.splitlines()):
        if line.startswith(RESULT_MARK):
            return json.loads(line[len(RESULT_MARK) :])  # type: ignore[no-any-return]
    tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-15:])
    return {"error": f"exit {done.returncode}\n{tail}"}


def describe(measure: str, variant: str, result: dict[str, Any]) -> str:
    if "error" in result:
        return "ERROR " + result["error"].splitlines()[0]
    if "na" in result:
        return result["na"]
    if measure == "latency":
        parts = []
        for key in ("send_to_start", "end_to_get"):
            if key in result and result[key].get("n"):
                r = result[key]
                parts.append(f"{key} p50 {r['p50']:.1f} ms p99 {r['p99']:.1f} ms (n={r['n']})")
        return "; ".join(parts)
    if measure == "punctuality":
        late = result["late"]
        return (
            f"late p50 {late['p50']:.0f} ms p99 {late['p99']:.0f} ms max {late['max']:.0f} ms; "
            f"{result['slots']} slots, {result['duplicates']} sent twice, {result['missed']} missed"
        )
    if measure == "claims":
        return "; ".join(
            f"{label}: claim p50 {result[label]['claims']['p50']:.2f} ms p99 {result[label]['claims']['p99']:.2f} ms"
            for label in ("empty", "history")
        )
    text = f"{result['rate']:,.0f} tasks/s" if result.get("rate") else "?"
    if measure == "scale":
        text += f", at most {result['peak_connections']} connections ({result['per_worker']:.1f} per worker)"
    if len(result.get("runs", [])) > 1:
        text += f" (median of {', '.join(f'{rate:,.0f}' for rate in result['runs'])})"
    if measure in ("processing", "history", "scale", "caps"):
        text += f" ({result['done']:,} tasks in {result['window_s']:.1f}s"
        text += ", stopped at the time cap)" if result["capped"] else ")"
    if "steady_rate" in result or "wall_rate" in result:
        steady, wall, startup = result.get("steady_rate"), result.get("wall_rate"), result.get("startup_ms")
        text += f"; steady {steady or 0:,.0f}/s, wall {wall or 0:,.0f}/s, start-up {startup or 0:,.0f} ms"
    return text


def fmt_rate(value: float | None) -> str:
    return "" if value is None else f"{value:,.0f}"


def fmt_ms(value: float | None) -> str:
    return "" if value is None else f"{value:.1f}" if value < 100 else f"{value:,.0f}"


def cell(result: dict[str, Any] | None, path: tuple[str, ...], fmt: Callable[[float | None], str]) -> str:
    if result is None:
        return "n/a"
    if "error" in result:
        return "error"
    if "na" in result:
        return "n/a"
    value: Any = result
    for key in path:
        value = value.get(key) if isinstance(value, dict) else None
    if value is None:
        return "n/a"
    text = fmt(value)
    if path[0] == "rate" and result.get("capped"):
        text += "*"
    return text


def number(result: dict[str, Any] | None, path: tuple[str, ...]) -> float | None:
    value: Any = result
    for key in path:
        value = value.get(key) if isinstance(value, dict) else None
    return value if isinstance(value, (int, float)) else None


def ratio(horsies: float | None, peer: float | None) -> str:
    if horsies is None or peer is None or peer == 0:
        return "n/a"
    value = horsies / peer
    return f"{value:.3f}x" if value < 0.1 else f"{value:.2f}x"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument(
        "--libraries", default=",".join(LIBRARIES), help="comma-separated subset of %(default)s (default: all)"
    )
    parser.add_argument(
        "--measures",
        default="send,bulk,latency,processing,punctuality,caps",
        help="comma-separated subset of send,bulk,latency,processing,punctuality,caps,scale,claims; "
        "claims needs --with-history (default: %(default)s)",
    )
    parser.add_argument(
        "--processing-tasks",
        type=int,
        default=20_000,
        help="queue depth at the start of a processing run, the same for every library (default: %(default)s)",
    )
    parser.add_argument("--workers", type=int, default=2, help="worker processes (default: %(default)s)")
    parser.add_argument(
        "--concurrency",
        type=int,
        default=4,
        help="tasks in flight per worker for horsies and procrastinate; django-tasks-db runs 1 (default: %(default)s)",
    )
    parser.add_argument(
        "--pools", default="threads,processes", help="horsies worker pools to measure (default: %(default)s)"
    )
    parser.add_argument(
        "--processing-cap",
        type=float,
        default=60,
        help="stop a processing run after this many seconds and rate what finished (default: %(default)s)",
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=3,
        help="runs of the short measures (send, bulk) per library, interleaved; the median is reported "
        "(default: %(default)s)",
    )
    parser.add_argument("--send-tasks", type=int, default=2_000, help="(default: %(default)s)")
    parser.add_argument("--bulk-tasks", type=int, default=10_000, help="(default: %(default)s)")
    parser.add_argument("--latency-samples", type=int, default=200, help="(default: %(default)s)")
    parser.add_argument(
        "--latency-budget",
        type=float,
        default=20,
        help="seconds per latency series; a slow poller gets fewer samples (default: %(default)s)",
    )
    parser.add_argument(
        "--with-history",
        type=int,
        default=0,
        metavar="ROWS",
        help="also measure horsies processing with ROWS finished tasks already in the table, e.g. 1000000",
    )
    parser.add_argument(
        "--celery-concurrency",
        type=int,
        default=2,
        help="prefork children per Celery worker process (default: %(default)s)",
    )
    parser.add_argument(
        "--punctuality-seconds", type=float, default=20, help="how long the schedule runs (default: %(default)s)"
    )
    parser.add_argument(
        "--punctuality-workers", type=int, default=3, help="workers running the schedule (default: %(default)s)"
    )
    parser.add_argument(
        "--scale-workers", type=int, default=8, help="worker processes for scale (default: %(default)s)"
    )
    parser.add_argument("--scale-concurrency", type=int, default=8, help="their concurrency (default: %(default)s)")
    parser.add_argument(
        "--claims-batch", type=int, default=4, help="tasks per claim in the claims measure (default: %(default)s)"
    )
    parser.add_argument(
        "--db-prefix",
        default=DEFAULT_DB_PREFIX,
        help="scratch PostgreSQL databases are PREFIX_<library>, dropped and created again; one per "
        "checkout by default, so that two checkouts benchmarking on one server don't share them "
        "(default: %(default)s)",
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", type=Path, default=None, help="also write the raw results here")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--measure", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--params", help=argparse.SUPPRESS)
    options = parser.parse_args()

    # Production-like settings for every process this run starts (bench/settings.py defaults to
    # the soak test's fast heartbeats), and no DEBUG query logging.
    os.environ["DEBUG"] = "false"
    os.environ.setdefault("HORSIES_BENCH_HEARTBEAT_S", "10")
    os.environ.setdefault("HORSIES_BENCH_LEASE_S", "60")
    os.environ.setdefault("HORSIES_BENCH_MAX_CRASH_RERUNS", "3")
    os.environ["HORSIES_BENCH_CELERY_CONCURRENCY"] = str(options.celery_concurrency)

    if options.child:
        child_main(options.child, options.measure, options.url, json.loads(options.params))
        return 0

    libraries = [name.strip() for name in options.libraries.split(",") if name.strip()]
    measures = [name.strip() for name in options.measures.split(",") if name.strip()]
    pools = [name.strip() for name in options.pools.split(",") if name.strip()]
    reasons = {library: unavailable(library, options.db) for library in libraries}
    urls = {
        library: scratch_database(options.db, f"{options.db_prefix}_{library.replace('-', '_')}")
        for library in libraries
        if reasons[library] is None
    }
    started_at = dt.datetime.now(dt.UTC)
    print(f"horsies_django benchmark on {options.db}, {started_at:%Y-%m-%d %H:%M} UTC, {os.cpu_count()} CPUs")
    print(f"command: {' '.join([Path(sys.executable).name, *sys.argv])}")
    print(f"horsies_django at {_git_revision()}")
    print(f"load average before the run: {' '.join(f'{load:.2f}' for load in os.getloadavg())}")
    for library in libraries:
        try:
            installed = version(PACKAGES[library])
        except PackageNotFoundError:
            installed = "-"
        print(f"  {library:16} {installed:10} {reasons[library] or ''}")
    print(flush=True)

    # (measure, variant) -> library -> result. Variants: the horsies pool, where it matters.
    results: dict[tuple[str, str], dict[str, dict[str, Any]]] = {}

    def run(measure: str, variant: str, library: str, timeout: float, **params: Any) -> None:
        if reasons[library] is not None:
            results.setdefault((measure, variant), {})[library] = {"na": reasons[library]}
            return
        began = time.monotonic()
        result = run_child(library, measure, urls[library], timeout, **params)
        if "error" in result and any(marker in result["error"] for marker in SERVER_GONE):
            # Another process on a shared machine restarted the database server: not a result.
            print(f"  {measure} {variant} {library}: the database server went away; running it again", flush=True)
            time.sleep(5)
            result = run_child(library, measure, urls[library], timeout, **params)
        runs = results.setdefault((measure, variant), {})
        if library in runs and "rate" in runs[library] and "rate" in result:
            # A repeated measure: keep every run, report the median one.
            result["runs"] = [*runs[library].get("runs", [runs[library]["rate"]]), result["rate"]]
            result["rate"] = statistics.median(result["runs"])
        runs[library] = result
        label = f"{measure}{' ' + variant if variant else ''}"
        print(f"  {label:28} {library:16} {describe(measure, variant, result)}  [{time.monotonic() - began:.0f}s]")
        if "error" in result:
            print("    " + result["error"].replace("\n", "\n    "))
        sys.stdout.flush()

    processing_timeout = options.processing_cap + 300
    for measure in measures:
        if measure in ("send", "bulk"):
            # Short measures: repeated, the libraries' order rotated each round, the median kept.
            tasks = options.send_tasks if measure == "send" else options.bulk_tasks
            for round_ in range(options.repeat):
                for library in libraries[round_ % len(libraries) :] + libraries[: round_ % len(libraries)]:
                    if "na" not in results.get((measure, ""), {}).get(library, {}):
                        run(measure, "", library, 600, tasks=tasks)
        elif measure == "latency":
            latency = {"samples": options.latency_samples, "budget_s": options.latency_budget, "seed": options.seed}
            for library in libraries:
                for pool in pools if library == HORSIES else ["-"]:
                    variant = pool if library == HORSIES else ""
                    run(
                        "latency",
                        variant,
                        library,
                        4 * options.latency_budget + 300,
                        pool=pool,
                        concurrency=options.concurrency,
                        **latency,
                    )
        elif measure == "processing":
            for library in libraries:
                for pool in pools if library == HORSIES else ["-"]:
                    tasks = options.processing_tasks
                    run(
                        "processing",
                        pool if library == HORSIES else "",
                        library,
                        processing_timeout,
                        tasks=tasks,
                        workers_=options.workers,
                        pool=pool,
                        concurrency=options.concurrency,
                        cap_s=options.processing_cap,
                    )
        elif measure == "punctuality":
            pool = "processes" if "processes" in pools else pools[0]
            run(
                "punctuality",
                pool,
                HORSIES,
                options.punctuality_seconds + 300,
                workers_=options.punctuality_workers,
                pool=pool,
                concurrency=options.concurrency,
                seconds=options.punctuality_seconds,
            )
        elif measure == "caps":
            for cap in (None, 1):
                run(
                    "caps",
                    "no cap" if cap is None else f"cap {cap}",
                    HORSIES,
                    processing_timeout,
                    tasks=options.processing_tasks,
                    workers_=options.workers,
                    pool=pools[0],
                    concurrency=options.concurrency,
                    cap_s=options.processing_cap,
                    cap=cap,
                )
        elif measure == "scale":
            for pool in pools:
                run(
                    "scale",
                    pool,
                    HORSIES,
                    processing_timeout,
                    tasks=options.processing_tasks,
                    workers_=options.scale_workers,
                    pool=pool,
                    concurrency=options.scale_concurrency,
                    cap_s=options.processing_cap,
                )
        elif measure == "claims":
            if not options.with_history:
                parser.error("--measures claims needs --with-history ROWS")
            run(
                "claims",
                f"{options.with_history:,} rows",
                HORSIES,
                processing_timeout + 7200,
                rows=options.with_history,
                tasks=options.processing_tasks,
                batch=options.claims_batch,
            )
        else:
            parser.error(f"unknown measure {measure!r}")
    if options.with_history and HORSIES in libraries and "processing" in measures:
        for pool in pools:
            for rows in (0, options.with_history):  # the baseline first, prepared the same way
                run(
                    "history",
                    f"{pool} {rows:,} rows",
                    HORSIES,
                    processing_timeout + 1800,
                    rows=rows,
                    tasks=options.processing_tasks,
                    workers_=options.workers,
                    pool=pool,
                    concurrency=options.concurrency,
                    cap_s=options.processing_cap,
                )

    print_table(results, libraries, pools, options)
    print(f"\nload average after the run: {' '.join(f'{load:.2f}' for load in os.getloadavg())}")
    if options.json:
        options.json.write_text(
            json.dumps(
                {
                    "db": options.db,
                    "started_at": started_at.isoformat(),
                    "argv": sys.argv,
                    "results": {f"{m}:{v}": r for (m, v), r in results.items()},
                },
                indent=2,
            )
        )
    return 1 if any("error" in r for by_library in results.values() for r in by_library.values()) else 0


def print_table(
    results: dict[tuple[str, str], dict[str, dict[str, Any]]],
    libraries: list[str],
    pools: list[str],
    options: argparse.Namespace,
) -> None:
    peers = [library for library in libraries if library != HORSIES]
    workers_ = options.workers
    # Each row: label, horsies (measure, variant), peers' (measure, variant), value path, format.
    rows: list[tuple[str, tuple[str, str], tuple[str, str], tuple[str, ...], Callable[[float | None], str]]] = []
    for pool in pools:
        for how, path, fmt in (
            ("first claim -> last finish (tasks/s)", ("rate",), fmt_rate),
            ("steady state (tasks/s)", ("steady_rate",), fmt_rate),
            ("wall time incl. start-up (tasks/s)", ("wall_rate",), fmt_rate),
            ("worker start -> first task (ms)", ("startup_ms",), fmt_ms),
        ):
            label = f"processing, {workers_} workers, horsies {pool} pool, {how}"
            rows.append((label, ("processing", pool), ("processing", ""), path, fmt))
    rows.append(("send() one at a time, autocommit (tasks/s)", ("send", ""), ("send", ""), ("rate",), fmt_rate))
    rows.append((f"bulk send of {options.bulk_tasks:,} (tasks/s)", ("bulk", ""), ("bulk", ""), ("rate",), fmt_rate))
    for pool in pools:
        for q in ("p50", "p99"):
            rows.append(
                (
                    f"latency send -> start, {q}, horsies {pool} pool (ms)",
                    ("latency", pool),
                    ("latency", ""),
                    ("send_to_start", q),
                    fmt_ms,
                )
            )
    for pool in pools:
        for q in ("p50", "p99"):
            rows.append(
                (
                    f"latency end -> get() returns, {q}, horsies {pool} pool (ms)",
                    ("latency", pool),
                    ("latency", ""),
                    ("end_to_get", q),
                    fmt_ms,
                )
            )

    header = ["measure", HORSIES, *peers, *[f"{HORSIES}/{peer}" for peer in peers]]
    table: list[list[str]] = []
    for label, horsies_key, peer_key, path, fmt in rows:
        if horsies_key not in results and peer_key not in results:
            continue
        horsies_result = results.get(horsies_key, {}).get(HORSIES)
        line = [label, cell(horsies_result, path, fmt) if HORSIES in libraries else "-"]
        peer_results = [results.get(peer_key, {}).get(peer) for peer in peers]
        line += [cell(r, path, fmt) for r in peer_results]
        line += [ratio(number(horsies_result, path), number(r, path)) for r in peer_results]
        table.append(line)
    history = [
        (
            pool,
            results.get(("history", f"{pool} 0 rows"), {}).get(HORSIES),
            results.get(("history", f"{pool} {options.with_history:,} rows"), {}).get(HORSIES),
        )
        for pool in pools
    ]
    history = [(pool, empty, full) for pool, empty, full in history if full is not None]

    print()
    print(f"## {options.db}: ratio = horsies/peer; above 1 is better for tasks/s, below 1 for ms")
    print()
    _print_markdown(header, table)
    print()
    if any(measure == "processing" for measure, _ in results):
        print(
            f"processing: {options.processing_tasks:,} tasks queued before the workers start; "
            f"{workers_} worker processes each; concurrency {options.concurrency} per worker for horsies and "
            "procrastinate, 1 for django-tasks-db (its only mode). * = stopped at the "
            f"{options.processing_cap:g}s cap, rated on what finished."
        )
    counts = []
    for library in libraries:
        for (measure, variant), by_library in results.items():
            r = by_library.get(library)
            if measure == "latency" and r and "send_to_start" in r:
                counts.append(f"{library}{' ' + variant if variant else ''} n={r['send_to_start'].get('n')}")
    if counts:
        print(f"latency samples (send -> start): {', '.join(counts)}")
    if history:
        print()
        print(f"## horsies processing with {options.with_history:,} finished rows in the table")
        print()
        hist_table = []
        for pool, empty, full in history:
            hist_table.append(
                [
                    f"{pool} pool (tasks/s)",
                    cell(empty, ("rate",), fmt_rate),
                    cell(full, ("rate",), fmt_rate),
                    ratio(number(full, ("rate",)), number(empty, ("rate",))),
                ]
            )
        _print_markdown(["horsies processing", "empty table", "with history", "history/empty"], hist_table)
        print()
        print(
            f"Both runs: {options.processing_tasks:,} tasks queued, then ANALYZE, then {workers_} workers; "
            "the history rows are COMPLETED tasks (with attempt rows) dated a day back."
        )
        inserted = [full.get("history_insert_s") for _, _, full in history if full.get("history_insert_s")]
        if inserted:
            print(f"Inserting the history took {min(inserted):.0f}s per run.")
    from bench import speed

    speed.print_tables(results, libraries, pools, options)


def _print_markdown(header: list[str], table: list[list[str]]) -> None:
    widths = [max(len(row[i]) for row in [header, *table]) for i in range(len(header))]
    print("| " + " | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)) + " |")
    print("|" + "|".join("-" * (w + 2) if i == 0 else "-" * (w + 1) + ":" for i, w in enumerate(widths)) + "|")
    for row in table:
        cells = [c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))]
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    sys.exit(main())
