"""Soak test: many tasks, several workers, workers killed with SIGKILL at random while they run.

    python bench/soak.py --tasks 100000 --workers 3 --kills 10 --db postgres
    python bench/soak.py --tasks 20000 --kills 10 --poison-rate 0.05 --db postgres

Prints tasks sent, completed, failed, lost (must be 0) and run twice under one claim token (must
be 0); exits 1 if either is not 0. A task re-run after its worker died is expected (at-least-once)
and is counted apart, as a re-run under a new claim token.

With --poison-rate F, that fraction of the tasks return outcomes hostile to the database or the
worker (a 150-character error code, NUL and lone surrogates in codes, messages and results, NaN in
a result, an exception whose __str__ raises), spread among the others. Then no innocent task may
fail, and each poison task must end FAILED with its own code.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import ROOT, scratch_database, setup_django  # noqa: E402


def start_worker(log_dir: str, *args: str) -> subprocess.Popen[bytes]:
    """A worker whose log goes to a file: a pipe nobody reads would fill up and stop it."""
    with open(os.path.join(log_dir, "workers.stderr"), "ab") as log:
        return subprocess.Popen(
            [sys.executable, str(ROOT / "manage.py"), "horsies_worker", *args],
            cwd=ROOT,
            env=dict(os.environ),
            stdout=subprocess.DEVNULL,
            stderr=log,
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=100_000)
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--pool", choices=["processes", "threads"], default="processes")
    parser.add_argument("--kills", type=int, default=10, help="how many workers to kill -9 (default: %(default)s)")
    parser.add_argument("--kill-every", type=float, default=3.0, help="mean seconds between kills")
    parser.add_argument("--max-sleep-ms", type=int, default=20, help="each task sleeps 0..this ms")
    parser.add_argument("--db", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--timeout", type=float, default=3600)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--poison-rate", type=float, default=0.0, help="fraction of hostile tasks (default: 0)")
    parser.add_argument("--db-name", default="horsies_soak", help="scratch database name (default: %(default)s)")
    options = parser.parse_args()
    rng = random.Random(options.seed)

    if not 0 <= options.poison_rate <= 1:
        parser.error("--poison-rate must be between 0 and 1")
    setup_django(scratch_database(options.db, options.db_name))
    from django.db import transaction

    from bench.soakapp.tasks import POISON_CODES, poison, soak
    from horsies_django.models import ACTIVE, READY, Task, TaskStatus

    log_dir = tempfile.mkdtemp(prefix="horsies-soak-runs-")
    os.environ["HORSIES_SOAK_LOG_DIR"] = log_dir

    started = time.monotonic()
    for start in range(0, options.tasks, 1000):
        with transaction.atomic():
            for n in range(start, min(start + 1000, options.tasks)):
                if rng.random() < options.poison_rate:
                    poison.send(n, rng.choice(sorted(POISON_CODES)), rng.randint(0, options.max_sleep_ms)).unwrap()
                else:
                    soak.send(n, rng.randint(0, options.max_sleep_ms)).unwrap()
    print(f"sent {options.tasks} tasks in {time.monotonic() - started:.1f}s", flush=True)

    worker_args = ["--concurrency", str(options.concurrency), "--pool", options.pool, "-v", "0"]
    worker_log_dir = tempfile.mkdtemp(prefix="horsies-soak-workers-")
    workers = [start_worker(worker_log_dir, *worker_args) for _ in range(options.workers)]
    kills = 0
    next_kill = time.monotonic() + rng.expovariate(1 / options.kill_every)
    started = time.monotonic()
    last_report = 0.0
    while True:
        now = time.monotonic()
        if now - started > options.timeout:
            print("timed out", flush=True)
            break
        if kills < options.kills and now >= next_kill:
            victim = rng.randrange(len(workers))
            workers[victim].kill()
            workers[victim].communicate()
            workers[victim] = start_worker(worker_log_dir, *worker_args)
            kills += 1
            next_kill = now + rng.expovariate(1 / options.kill_every)
        if now - last_report >= 2:
            last_report = now
            open_tasks = Task.objects.filter(status__in=READY | ACTIVE).count()
            print(f"  {now - started:6.1f}s  open={open_tasks}  kills={kills}", flush=True)
            if open_tasks == 0 and kills >= min(options.kills, 1):
                break
            if open_tasks == 0 and options.kills == 0:
                break
        time.sleep(0.1)
    elapsed = time.monotonic() - started
    for worker in workers:
        worker.send_signal(signal.SIGTERM)
    for worker in workers:
        worker.communicate(timeout=60)

    counts = Counter(Task.objects.values_list("status", flat=True))
    innocent_failed = Task.objects.filter(name="bench.soak").exclude(status=TaskStatus.COMPLETED).count()
    poisoned = Counter(
        (row["arguments"]["kind"], row["status"], row["error_code"])
        for row in Task.objects.filter(name="bench.poison").values("arguments", "status", "error_code")
    )
    poison_wrong = sum(
        count
        for (kind, status, code), count in poisoned.items()
        if (status, code) != (TaskStatus.FAILED, POISON_CODES[kind])
    )
    runs: Counter[str] = Counter()
    for log in Path(log_dir).glob("*.log"):
        runs.update(line.strip() for line in log.read_text().splitlines() if line.strip())
    run_twice = sum(1 for count in runs.values() if count > 1)
    reruns = sum(1 for _ in runs) - len({key.split()[0] for key in runs})
    completed, failed = counts.get(TaskStatus.COMPLETED, 0), counts.get(TaskStatus.FAILED, 0)
    lost = options.tasks - completed - failed
    print()
    print(f"worker logs           {worker_log_dir}/workers.stderr")
    print(f"database              {options.db}")
    print(f"workers x concurrency {options.workers} x {options.concurrency} ({options.pool})")
    print(f"workers killed -9     {kills}")
    print(f"tasks sent            {options.tasks}")
    print(f"completed             {completed}")
    print(f"failed                {failed}")
    print(f"lost                  {lost}")
    print(f"poison rate           {options.poison_rate:g}")
    print(f"poison tasks          {sum(poisoned.values())}")
    for (kind, status, code), count in sorted(poisoned.items()):
        print(f"  {kind:<19} {count:>6} {status} {code}")
    print(f"poison wrong outcome  {poison_wrong}")
    print(f"innocent not completed {innocent_failed}")
    print(f"run twice per token   {run_twice}")
    print(f"re-runs (new token)   {reruns}")
    print(f"elapsed               {elapsed:.1f}s ({(completed + failed) / elapsed:.0f} tasks/s with kills)")
    return 1 if lost or run_twice or innocent_failed or poison_wrong else 0


if __name__ == "__main__":
    sys.exit(main())
