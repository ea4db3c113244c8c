"""bench/run.py's measures for issue #12 beyond the side-by-side ones: schedule punctuality, a
capped queue beside an uncapped one, scale-out (8 workers x 8), and claims with a large history.

Each runs in a child process of bench/run.py, for horsies only, against its scratch database.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import threading
import time
from typing import Any

from bench.run import (
    CELERY,
    HORSIES,
    SERVER_GONE,
    Horsies,
    Library,
    WorkerProcess,
    _drain,
    _model_values,
    _now,
    _percentiles,
    _print_markdown,
    _truncate,
    fmt_ms,
    fmt_rate,
    number,
    ratio,
)


def _horsies(library: Library) -> Horsies:
    assert isinstance(library, Horsies), "a horsies-only measure"
    return library


# -- schedule punctuality ------------------------------------------------------------------------


def measure_punctuality(
    library: Library, *, workers_: int, pool: str, concurrency: int, seconds: float
) -> dict[str, Any]:
    """`workers_` idle workers run an every-second schedule for `seconds`: how late each slot was
    sent (its task's enqueued_at minus the slot), whether any slot was sent twice, and how many of
    the seconds got their task."""
    from horsies_django.models import Task

    horsies = _horsies(library)
    horsies.reset()
    _truncate(["horsies_schedule"])
    os.environ["HORSIES_BENCH_SCHEDULES"] = json.dumps({"tick": {"task": "bench.noop", "every": 1, "args": [0]}})
    # Production heartbeats: a worker that only looked at its heartbeat would send a slot 0-10 s late.
    started = [
        WorkerProcess(horsies.worker_command(pool=pool, concurrency=concurrency, burst=False)) for _ in range(workers_)
    ]
    try:
        time.sleep(seconds)
    finally:
        for worker in started:
            worker.stop()
        outputs = [worker.output() for worker in started]
        for worker in started:
            worker.close()
        del os.environ["HORSIES_BENCH_SCHEDULES"]
    rows = list(
        Task.objects.filter(idempotency_key__startswith="schedule:tick:").values_list("idempotency_key", "enqueued_at")
    )
    slots = [dt.datetime.fromisoformat(key.removeprefix("schedule:tick:")) for key, _ in rows]
    if not slots:
        tail = "\n".join(outputs)[-2000:]
        raise RuntimeError(f"the schedule sent nothing in {seconds:g}s:\n{tail}")
    late = [(enqueued - slot).total_seconds() for slot, (_, enqueued) in zip(slots, rows, strict=True)]
    span = int((max(slots) - min(slots)).total_seconds()) + 1
    return {
        "late": _percentiles(late),
        "slots": len(slots),
        "duplicates": len(slots) - len(set(slots)),
        "missed": span - len(set(slots)),
        "workers": workers_,
    }


# -- a capped queue beside an uncapped one -------------------------------------------------------

CAPPED_QUEUE = "capped"


def measure_caps(
    library: Library, *, tasks: int, workers_: int, pool: str, concurrency: int, cap_s: float, cap: int | None
) -> dict[str, Any]:
    """`workers_` workers on the uncapped "default" queue drain `tasks` no-ops while one more worker
    keeps busy on the "capped" queue, whose max_concurrency is `cap` (None: no cap, the baseline).
    Only the default queue's rate is reported: with one lock for all capped claims, the cap slowed
    every queue; with a lock per capped queue it should not."""
    from django.db.models import Count, Max, Min

    from horsies_django.models import Task

    horsies = _horsies(library)
    horsies.reset()
    # "standard" is the demo shop's queue (listed, or the system checks stop the workers).
    queues: dict[str, Any] = {
        "default": {},
        "standard": {},
        CAPPED_QUEUE: {} if cap is None else {"max_concurrency": cap},
    }
    os.environ["HORSIES_BENCH_QUEUES"] = json.dumps(queues)
    noop = horsies.tasks.noop
    for start in range(0, tasks, 10_000):
        noop.with_options(queue_name=CAPPED_QUEUE).send_many(
            [(i,) for i in range(start, min(tasks, start + 10_000))]
        ).unwrap()
    since = _now() - dt.timedelta(seconds=1)
    horsies.fill(tasks)
    # One task at a time in the capped queue's worker in both runs, so that it costs the machine the
    # same whether its queue is capped or not: only the claims' locking differs.
    steady = horsies.worker_command(pool=pool, concurrency=1, burst=False)
    capped_worker = WorkerProcess([*steady, "--queues", CAPPED_QUEUE])  # not --burst: it stays busy
    time.sleep(2)  # the capped queue's worker is claiming before the others start
    command = horsies.worker_command(pool=pool, concurrency=concurrency, burst=True)
    uncapped = [WorkerProcess([*command, "--queues", "default"]) for _ in range(workers_)]
    deadline = time.monotonic() + cap_s
    try:
        while any(w.process.poll() is None for w in uncapped) and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        for worker in [*uncapped, capped_worker]:
            worker.stop()
        outputs = "\n".join(worker.output() for worker in [*uncapped, capped_worker])
        for worker in [*uncapped, capped_worker]:
            worker.close()
        del os.environ["HORSIES_BENCH_QUEUES"]
    done = Task.objects.filter(queue_name="default", enqueued_at__gte=since, status="COMPLETED")
    row = done.aggregate(done=Count("id"), first=Min("claimed_at"), last=Max("finished_at"))
    capped_done = Task.objects.filter(queue_name=CAPPED_QUEUE, status="COMPLETED").count()
    if not row["done"]:
        raise RuntimeError(f"no task of the default queue was processed:\n{outputs[-3000:]}")
    window = (row["last"] - row["first"]).total_seconds()
    return {
        "rate": row["done"] / window if window > 0 else None,
        "done": row["done"],
        "window_s": window,
        "capped_done": capped_done,
        "cap": cap,
        "capped": time.monotonic() > deadline,
    }


# -- scale-out: many workers, counted connections -----------------------------------------------


def measure_scale(
    library: Library, *, tasks: int, workers_: int, pool: str, concurrency: int, cap_s: float
) -> dict[str, Any]:
    """Processing with `workers_` worker processes of `concurrency` each, while a thread counts the
    database's connections (PostgreSQL's pg_stat_activity, every 50 ms): the most seen at once,
    and per worker."""
    from django.db import connection, connections

    horsies = _horsies(library)
    horsies.reset()
    if connection.vendor != "postgresql":
        return {"na": "PostgreSQL only"}
    samples: list[int] = []
    stop = threading.Event()

    def sample() -> None:
        try:
            with connections["default"].cursor() as cursor:
                while not stop.is_set():
                    cursor.execute(
                        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                        "AND pid <> pg_backend_pid()"
                    )
                    samples.append(cursor.fetchone()[0])
                    time.sleep(0.05)
        finally:
            connections.close_all()

    sampler = threading.Thread(target=sample)
    result: dict[str, Any] = {}
    try:
        sampler.start()
        result = _drain(library, tasks=tasks, workers_=workers_, pool=pool, concurrency=concurrency, cap_s=cap_s)
    finally:
        stop.set()
        sampler.join()
    peak = max(samples, default=0) - 1  # the measuring process's own connection
    result.update(
        {"peak_connections": peak, "per_worker": peak / workers_, "workers": workers_, "concurrency": concurrency}
    )
    return result


# -- claims with a large history ----------------------------------------------------------------


def _time_claims(tasks: int, batch: int) -> dict[str, Any]:
    """Claim `tasks` ready tasks `batch` at a time in this process; each claim's duration."""
    from django.utils import timezone

    from horsies_django.broker import get_broker

    broker = get_broker()
    durations: list[float] = []
    claimed = 0
    while claimed < tasks:
        now = timezone.now()
        started = time.perf_counter()
        got = broker.claim(
            worker_id="bench", queues=None, limit=batch, now=now, lease_until=now + dt.timedelta(minutes=5)
        )
        durations.append(time.perf_counter() - started)
        if not got:
            break
        claimed += len(got)
    return {"claims": _percentiles(durations), "mean_ms": statistics.fmean(durations) * 1000, "claimed": claimed}


def _surviving_restarts(step: Any, attempts: int = 5) -> Any:
    """Run `step()`, again after the database server went away (other sessions on a shared machine
    restart it); what a step did before the restart is its own to redo or skip."""
    from django.db import OperationalError, connections

    for attempt in range(attempts):
        try:
            return step()
        except OperationalError as exc:
            if attempt == attempts - 1 or not any(marker in str(exc) for marker in SERVER_GONE):
                raise
            print(f"the database server went away ({exc}); again in 10 s", flush=True)
            connections.close_all()
            time.sleep(10)
    raise AssertionError("unreachable")


HISTORY_WORKER = "bench-history"
HISTORY_CHUNK = 500_000


def _insert_history_postgres(rows: int) -> None:
    """`rows` COMPLETED tasks with their attempt rows, as `Horsies.insert_history`, but in chunks of
    one statement each (the tasks and their attempts together), so that a server restart midway
    costs one chunk, not the whole insert."""
    from django.db import connection

    from horsies_django.models import Task, TaskAttempt

    when = "now() - interval '1 day' - s.x * interval '1 millisecond'"
    known = {
        "id": "gen_random_uuid()", "name": "'bench.noop'", "queue_name": "'default'", "priority": "100",
        "status": "'COMPLETED'", "arguments": "'{\"n\": 1}'::jsonb", "result": "'{\"ok\": 1}'::jsonb",
        "attempt": "1", "claim_token": "1", "worker_id": f"'{HISTORY_WORKER}'", "run_at": when,
        "enqueued_at": when, "claimed_at": when, "started_at": when, "finished_at": when,
    }  # fmt: skip
    columns, values = _model_values(Task, known, "::jsonb")
    attempt_known = {
        "task_id": "t.id", "number": "1", "worker_id": "t.worker_id", "started_at": "t.started_at",
        "finished_at": "t.finished_at", "outcome": "'COMPLETED'",
    }  # fmt: skip
    attempt_columns, attempt_values = _model_values(TaskAttempt, attempt_known, "::jsonb")
    task_table, attempt_table = Task._meta.db_table, TaskAttempt._meta.db_table

    def have() -> int:
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT count(*) FROM {task_table} WHERE worker_id = %s", [HISTORY_WORKER])
            return int(cursor.fetchone()[0])

    def insert(count: int) -> None:
        with connection.cursor() as cursor:
            cursor.execute(
                f"WITH t AS (INSERT INTO {task_table} ({columns}) SELECT {values} "
                f"FROM generate_series(1, {int(count)}) AS s(x) RETURNING *) "
                f"INSERT INTO {attempt_table} ({attempt_columns}) SELECT {attempt_values} FROM t"
            )

    while (done := _surviving_restarts(have)) < rows:
        _surviving_restarts(lambda: insert(min(HISTORY_CHUNK, rows - done)))

    def vacuum() -> None:
        with connection.cursor() as cursor:
            cursor.execute(f"VACUUM ANALYZE {task_table}")
            cursor.execute(f"VACUUM ANALYZE {attempt_table}")

    _surviving_restarts(vacuum)


def _checkpoint() -> None:
    """PostgreSQL: write every dirty buffer out now. Inserting ten million rows leaves gigabytes
    of them, which the checkpointer would otherwise be flushing while the claims are timed: a cost
    of the insert, not of the rows being there (a table that grew over weeks has long been
    checkpointed). Each of the three measures starts from a checkpoint, the empty ones too."""
    from django.db import connection

    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("CHECKPOINT")  # needs a superuser or pg_checkpoint, as the bench's user is


def measure_claims(library: Library, *, rows: int, tasks: int, batch: int) -> dict[str, Any]:
    """Claim latency on an empty table, then with `rows` finished tasks (and their attempt rows)
    in it: the same `tasks` queued and analysed each time, claimed `batch` at a time in one process."""
    from django.db import connection

    from horsies_django.models import Task

    horsies = _horsies(library)
    result: dict[str, Any] = {"rows": rows, "batch": batch, "tasks": tasks}

    def queue_and_claim() -> dict[str, Any]:
        Task.objects.exclude(worker_id=HISTORY_WORKER).delete()  # a try cut short by a restart
        horsies.fill(tasks)
        horsies.analyze()
        _checkpoint()
        return _time_claims(tasks, batch)

    # The empty table is measured before and after the history, so that a change in the machine's
    # load during the long insert shows as two baselines that disagree.
    for label, history in (("empty", 0), ("history", rows), ("empty_after", 0)):
        _surviving_restarts(horsies.reset)
        started = time.perf_counter()
        if history and connection.vendor == "postgresql":
            _insert_history_postgres(history)
        elif history:
            horsies.insert_history(history)
        result[f"{label}_insert_s"] = time.perf_counter() - started
        result[label] = _surviving_restarts(queue_and_claim)
    return result


MEASURES = {
    "punctuality": measure_punctuality,
    "caps": measure_caps,
    "scale": measure_scale,
    "claims": measure_claims,
}


# -- the tables ----------------------------------------------------------------------------------

Results = dict[tuple[str, str], dict[str, dict[str, Any]]]


def _get(results: Results, measure: str, variant: str, library: str = HORSIES) -> dict[str, Any] | None:
    return results.get((measure, variant), {}).get(library)


def print_tables(results: Results, libraries: list[str], pools: list[str], options: argparse.Namespace) -> None:
    """The tables of this module's measures, then issue #12's targets against what was measured."""
    caps = [(variant, _get(results, "caps", variant)) for variant in ("no cap", "cap 1")]
    if all(result and "rate" in result for _, result in caps):
        print()
        print("## an uncapped queue beside a busy capped one (horsies)")
        print()
        (_, free), (_, capped) = caps
        _print_markdown(
            ["default queue, tasks/s", "other queue uncapped", "other queue capped (1)", "capped/uncapped"],
            [
                [
                    f"{options.workers} workers",
                    fmt_rate(free["rate"]),
                    fmt_rate(capped["rate"]),
                    ratio(capped["rate"], free["rate"]),
                ]
            ],
        )
        print(
            f"\n{options.processing_tasks:,} no-ops on the default queue, drained by {options.workers} workers "
            f"(--queues default, {pools[0]} pool) while one more worker (concurrency 1) runs the other queue."
        )
    scale = [(pool, _get(results, "scale", pool)) for pool in pools]
    scale = [(pool, r) for pool, r in scale if r and "rate" in r]
    if scale:
        print()
        print(f"## scale-out: {options.scale_workers} workers x concurrency {options.scale_concurrency} (horsies)")
        print()
        _print_markdown(
            ["pool", "tasks/s", "steady tasks/s", "peak connections", "per worker"],
            [
                [
                    pool,
                    fmt_rate(r["rate"]),
                    fmt_rate(r.get("steady_rate")),
                    str(r["peak_connections"]),
                    f"{r['per_worker']:.1f}",
                ]
                for pool, r in scale
            ],
        )
    claims = _get(results, "claims", f"{options.with_history:,} rows")
    if claims and "empty" in claims:
        print()
        print(f"## claims with {options.with_history:,} finished rows in the table (horsies, one process)")
        print()
        table = []
        for label, key in [(q, ("claims", q)) for q in ("p50", "p99")] + [("mean", ("mean_ms",))]:
            before, full, after = (number(claims.get(run), key) for run in ("empty", "history", "empty_after"))
            baseline = _baseline(before, after)
            table.append(
                [
                    f"claim of {claims['batch']}, {label} (ms)",
                    f"{before:.3f}" if before is not None else "n/a",
                    f"{full:.3f}" if full is not None else "n/a",
                    f"{after:.3f}" if after is not None else "n/a",
                    ratio(full, baseline),
                ]
            )
        _print_markdown(
            ["measure", "empty table, before", "with history", "empty table, after", "history/empty (mean of both)"],
            table,
        )
        print(f"\nInserting the history took {claims['history_insert_s']:.0f}s.")
    print_targets(results, libraries, options)


def _baseline(before: float | None, after: float | None) -> float | None:
    known = [value for value in (before, after) if value is not None]
    return statistics.fmean(known) if known else None


def print_targets(results: Results, libraries: list[str], options: argparse.Namespace) -> None:
    """Issue #12's table of targets, each with the number this run measured."""
    pg = options.db == "postgres"
    rows: list[list[str]] = []

    def add(measure: str, target: str, value: float | None, shown: str, met: bool | None) -> None:
        verdict = "n/a" if value is None or met is None else "yes" if met else "NO"
        rows.append([measure, target, shown if value is not None else "n/a", verdict])

    processing = _get(results, "processing", "processes")
    steady = number(processing, ("steady_rate",))
    celery = number(_get(results, "processing", "", CELERY), ("steady_rate",))
    if pg:
        met = None if steady is None else steady >= 5000 and (celery is None or steady >= 5 * celery)
        shown = fmt_rate(steady) + (f" ({ratio(steady, celery)} Celery)" if celery and steady else "")
        add("processing, process pool, 2 workers, steady state", ">= 5,000/s and >= 5x Celery", steady, shown, met)
        wall = number(processing, ("wall_rate",))
        add(
            "same, wall time incl. start-up", ">= 3,000/s", wall, fmt_rate(wall), None if wall is None else wall >= 3000
        )
        startup = number(processing, ("startup_ms",))
        add(
            "worker start -> first task (process pool)",
            "<= 1 s",
            startup,
            f"{fmt_ms(startup)} ms",
            None if startup is None else startup <= 1000,
        )
        send = number(_get(results, "send", ""), ("rate",))
        peers = [number(_get(results, "send", "", peer), ("rate",)) for peer in libraries if peer != HORSIES]
        best = max((p for p in peers if p is not None), default=None)
        met = None if send is None else send >= 2500 and (best is None or send >= best)
        add(
            "send() one at a time, autocommit",
            ">= 2,500/s and >= the best peer",
            send,
            f"{fmt_rate(send)} (best peer {fmt_rate(best) or 'n/a'})",
            met,
        )
    else:
        add(
            "SQLite: process pool processing (steady)",
            ">= 3,000/s",
            steady,
            fmt_rate(steady),
            None if steady is None else steady >= 3000,
        )
        send = number(_get(results, "send", ""), ("rate",))
        add("SQLite: single send", ">= 8,000/s", send, fmt_rate(send), None if send is None else send >= 8000)
    scale = _get(results, "scale", "processes")
    if scale and "rate" in scale:
        scaled = number(scale, ("steady_rate",))
        per_worker = number(scale, ("per_worker",))
        bound = 2 + options.scale_concurrency  # docs/worker.md, "Database connections"
        # "Holds throughput": within the run-to-run noise of this machine (about 10%) of 2 workers.
        held = None if scaled is None or steady is None else scaled >= 0.9 * steady
        add(
            f"scale-out, process pool, {options.scale_workers} workers x {options.scale_concurrency}: steady "
            "state, and connections per worker",
            f">= 0.9x the 2 workers' steady state; <= {bound} per worker",
            scaled,
            f"{fmt_rate(scaled)} (2 workers: {fmt_rate(steady) or 'n/a'}); peak {per_worker:.1f} per worker",
            None if held is None or per_worker is None else held and per_worker <= bound,
        )
    claims = _get(results, "claims", f"{options.with_history:,} rows")
    if claims:
        key = ("claims", "p50")
        full = number(claims.get("history"), key)
        baseline = _baseline(number(claims.get("empty"), key), number(claims.get("empty_after"), key))
        slower = None if full is None or baseline is None else full / baseline - 1
        add(
            f"claims with {options.with_history:,} finished rows: p50 slower than on an empty table by",
            "<= 10%",
            slower,
            f"{slower * 100:+.1f}%" if slower is not None else "n/a",
            None if slower is None else slower <= 0.10,
        )
    punctuality = _get(results, "punctuality", "processes") or _get(results, "punctuality", "threads")
    late = number(punctuality, ("late", "max"))
    limit = 100 if pg else 1000
    add(
        "schedule punctuality: a due slot sent after its time by at most (max)",
        f"{limit:,} ms",
        late,
        f"{fmt_ms(late)} ms (p50 {fmt_ms(number(punctuality, ('late', 'p50')))} ms)",
        None if late is None else late <= limit,
    )
    if any(r[2] != "n/a" for r in rows):
        print()
        print(f"## issue #12 targets on {options.db}")
        print()
        _print_markdown(["measure", "target", "measured", "met"], rows)
