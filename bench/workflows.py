"""Workflow throughput: a fan-out of N no-op nodes followed by one fan-in node, run by worker processes.

    .venv/bin/python bench/workflows.py --db postgres
    .venv/bin/python bench/workflows.py --db sqlite --nodes 1000 --workers 2 --pool threads

The workers start first and wait, idle. Then one workflow starts (its N root tasks are written in
the start's transaction); every node's end is recorded, and the fan-in sent, by the workers'
finish transactions. nodes/s = (N + 1) / (workflow finished_at - created_at), both read from the
workflow's row. The same number of plain tasks (send_many) then runs on the same workers, as a
yardstick: the ratio of the two is the cost of the workflow machinery on this machine. Each run
uses a fresh scratch database; the median of --repeat runs is printed.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import scratch_database, setup_django  # noqa: E402


def one_run(*, nodes: int, workers: int, pool: str, concurrency: int, timeout_s: float) -> dict[str, float]:
    from django.db import connections
    from django.db.models import Max, Min
    from django.utils import timezone

    from bench.run import WorkerProcess
    from bench.soakapp.tasks import noop
    from horsies_django import TaskNode, app
    from horsies_django.models import Task, Workflow
    from horsies_django.models import WorkerProcess as WorkerRow

    connections.close_all()
    command = ["horsies_worker", "--pool", pool, "--concurrency", str(concurrency), "-v", "1"]
    procs = [WorkerProcess(command) for _ in range(workers)]
    try:
        deadline = time.monotonic() + 60
        while WorkerRow.objects.filter(stopped_at__isnull=True).count() < workers:
            if time.monotonic() > deadline:
                raise RuntimeError("the workers did not start:\n" + "\n".join(p.output()[-2000:] for p in procs))
            time.sleep(0.05)
        time.sleep(1)  # let the pools finish starting, so the run measures workflows, not start-up
        branches = [TaskNode(fn=noop, kwargs={"n": i}, node_id=f"n{i}") for i in range(nodes)]
        fan_in = TaskNode(fn=noop, kwargs={"n": -1}, waits_for=branches, node_id="fan_in")
        started = time.perf_counter()
        handle = app.workflow("bench", tasks=[*branches, fan_in], output=fan_in).start().unwrap()
        start_s = time.perf_counter() - started
        result = handle.get(timeout_ms=int(timeout_s * 1000))
        if not result.is_ok():
            raise RuntimeError(f"the workflow did not complete: {result}")
        row = Workflow.objects.get(pk=handle.workflow_id)
        assert row.finished_at is not None
        window = (row.finished_at - row.created_at).total_seconds()
        # The same number of plain tasks on the same workers, as a yardstick for this machine.
        since = timezone.now()
        noop.send_many([(i,) for i in range(nodes + 1)]).unwrap()
        plain = Task.objects.filter(enqueued_at__gte=since)
        deadline = time.monotonic() + timeout_s
        while plain.exclude(status="COMPLETED").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        span = plain.aggregate(first=Min("enqueued_at"), last=Max("finished_at"))
        plain_s = (span["last"] - span["first"]).total_seconds()
        return {
            "nodes_per_s": (nodes + 1) / window, "window_s": window, "start_s": start_s,
            "plain_per_s": (nodes + 1) / plain_s,
        }  # fmt: skip
    finally:
        for proc in procs:
            proc.stop()
        for proc in procs:
            proc.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", choices=["sqlite", "postgres"], default="postgres")
    parser.add_argument("--nodes", type=int, default=1000, help="fan-out width (default: %(default)s)")
    parser.add_argument("--workers", type=int, default=2, help="worker processes (default: %(default)s)")
    parser.add_argument("--pool", choices=["threads", "processes"], default="threads", help="(default: %(default)s)")
    parser.add_argument("--concurrency", type=int, default=4, help="per worker (default: %(default)s)")
    parser.add_argument("--repeat", type=int, default=3, help="runs; the median is printed (default: %(default)s)")
    parser.add_argument("--timeout", type=float, default=300, help="seconds per run (default: %(default)s)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        setup_django(os.environ["DATABASE_URL"])
        result = one_run(
            nodes=args.nodes, workers=args.workers, pool=args.pool, concurrency=args.concurrency,
            timeout_s=args.timeout,
        )  # fmt: skip
        print(
            f"RESULT {result['nodes_per_s']:.1f} {result['window_s']:.3f} {result['start_s']:.3f} "
            f"{result['plain_per_s']:.1f}"
        )
        return 0
    import subprocess

    rates: list[float] = []
    for run in range(args.repeat):
        url = scratch_database(args.db, f"horsies_bench_workflows_{run}")
        child = [sys.executable, __file__, "--child", *sys.argv[1:]]
        done = subprocess.run(
            child, env={**os.environ, "DATABASE_URL": url}, capture_output=True, text=True, timeout=args.timeout + 120
        )
        lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
        if done.returncode != 0 or not lines:
            print(done.stdout[-2000:], done.stderr[-3000:], file=sys.stderr)
            return 1
        rate, window, start, plain = (float(v) for v in lines[0].split()[1:])
        rates.append(rate)
        print(
            f"run {run + 1}: {args.nodes}-node fan-out + fan-in on {args.db}, {args.workers} workers "
            f"({args.pool} x {args.concurrency}): {rate:.0f} nodes/s ({window:.2f} s; start() took {start:.3f} s); "
            f"{args.nodes + 1} plain tasks on the same workers: {plain:.0f} tasks/s"
        )
    print(f"median: {statistics.median(rates):.0f} nodes/s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
