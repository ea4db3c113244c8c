"""Profile `send()` one task at a time, autocommit, no worker running.

    .venv/bin/python bench/profile_send.py --db postgres
    .venv/bin/python bench/profile_send.py --db sqlite --profile 25
    .venv/bin/python bench/profile_send.py --db sqlite --repeat 1 --timeline 10000

Prints sends/s (the median of --repeat runs of --tasks sends) and, with --profile N, the N
costliest functions of one more run under cProfile, by their own time and by cumulative time.
It uses a scratch database of its own, so it can run beside `bench/run.py`.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import scratch_database, setup_django  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--tasks", type=int, default=3_000, help="sends per run (default: %(default)s)")
    parser.add_argument("--repeat", type=int, default=3, help="runs; the median is reported (default: %(default)s)")
    parser.add_argument("--profile", type=int, default=0, metavar="N", help="print the N costliest functions")
    parser.add_argument(
        "--timeline",
        type=int,
        default=0,
        metavar="N",
        help="time each of N more sends; list the slow ones (SQLite's WAL checkpoints) and the rate between them",
    )
    options = parser.parse_args()

    import os

    os.environ["DEBUG"] = "false"
    setup_django(scratch_database(options.db, "horsies_bench_profile_send"))
    from django.db import connection

    from bench.soakapp.tasks import noop

    def reset() -> None:
        with connection.cursor() as cursor:
            for table in ("horsies_task_attempt", "horsies_task"):
                cursor.execute(f"DELETE FROM {table}")

    cpu: list[float] = []

    def run(n: int) -> float:
        reset()
        for i in range(20):  # warm up: connection, statement caches
            noop.send(i).unwrap()
        started, started_cpu = time.perf_counter(), time.process_time()
        for i in range(n):
            noop.send(i).unwrap()
        cpu.append((time.process_time() - started_cpu) / n * 1e6)
        return n / (time.perf_counter() - started)

    rates = [run(options.tasks) for _ in range(options.repeat)]
    # The wall-clock rate depends on the database and the neighbours; the CPU this process spends
    # per send (the Python on the path, the driver) much less so.
    print(
        f"send() one at a time, {connection.vendor}: {statistics.median(rates):,.0f}/s "
        f"(runs: {', '.join(f'{r:,.0f}' for r in rates)}); "
        f"client CPU per send: {statistics.median(cpu):,.0f} us"
    )
    if options.timeline:
        timeline(options.timeline, reset, noop)
    if options.profile:
        profiler = cProfile.Profile()
        profiler.enable()
        run(options.tasks)
        profiler.disable()
        for order in ("tottime", "cumulative"):
            out = io.StringIO()
            pstats.Stats(profiler, stream=out).sort_stats(order).print_stats(options.profile)
            print(f"--- by {order} ---")
            print(out.getvalue().split("\n\n", 1)[-1].strip())
    return 0


SLOW_SEND_S = 0.005


def timeline(n: int, reset: Callable[[], None], task: Any) -> None:
    """Time each send: on SQLite, a few take tens of milliseconds (the connection that commits
    past `wal_autocheckpoint` pages runs the checkpoint, which flushes to disk); how often they
    come is how many WAL pages a send writes."""
    reset()
    times: list[float] = []
    for i in range(n):
        started = time.perf_counter()
        task.send(i).unwrap()
        times.append(time.perf_counter() - started)
    slow = [(i, t) for i, t in enumerate(times) if t > SLOW_SEND_S]
    fast_total = sum(times) - sum(t for _, t in slow)
    between = f"{(n - len(slow)) / fast_total:,.0f}/s" if fast_total > 0 else "n/a"
    gaps = [b[0] - a[0] for a, b in zip(slow, slow[1:], strict=False)]
    print(
        f"timeline of {n:,} sends: {n / sum(times):,.0f}/s overall, median {statistics.median(times) * 1e6:,.0f} us; "
        f"{len(slow)} over {SLOW_SEND_S * 1000:.0f} ms ({', '.join(f'{t * 1000:.1f}' for _, t in slow)} ms), "
        f"every {statistics.median(gaps) if gaps else float('nan'):,.0f} sends; "
        f"{between} between them"
    )


if __name__ == "__main__":
    raise SystemExit(main())
