"""The Errors page on a big table: how long its queries take, and the plan of the grouped one.

    .venv/bin/python bench/errors.py --failed 1000000 --completed 1000000 --retry 100000

Fills a scratch PostgreSQL database with failed tasks in 200 groups (and completed ones beside
them), then times the Errors page's queries, prints the EXPLAIN (ANALYZE) of the grouped scan, and
retries one group of `--retry` tasks with the admin's batched bulk action.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import scratch_database, setup_django  # noqa: E402

GROUPS = 200


def fill(failed: int, completed: int, big_group: int) -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        # One big group of `big_group` rows (the one retried below), the rest spread over GROUPS groups,
        # finished over the last 48 hours.
        cursor.execute(
            """
            INSERT INTO horsies_task (id, name, queue_name, priority, status, arguments, error_code, error_message,
                error_traceback, error_group, attempt, max_retries, crash_reruns, manual_retries, run_at,
                enqueued_at, finished_at, claim_token)
            SELECT gen_random_uuid(), 'shop.task' || mod(g, 7), 'default', 100, 'FAILED', '{}'::jsonb,
                   'E' || mod(g, 5), 'order ' || i || ' failed', '', substr(md5(g::text), 1, 16), 1, 0, 0, 0,
                   now() - mod(i, 172800) * interval '1 second', now() - mod(i, 172800) * interval '1 second',
                   now() - mod(i, 172800) * interval '1 second', 1
              FROM (SELECT i, CASE WHEN i <= %s THEN 0 ELSE 1 + mod(i, %s) END AS g
                      FROM generate_series(1, %s) AS i) AS s
            """,
            [big_group, GROUPS - 1, failed],
        )
        cursor.execute(
            """
            INSERT INTO horsies_task (id, name, queue_name, priority, status, arguments, error_message,
                error_traceback, attempt, max_retries, crash_reruns, manual_retries, run_at, enqueued_at,
                finished_at, claim_token)
            SELECT gen_random_uuid(), 'shop.task' || mod(i, 7), 'default', 100, 'COMPLETED', '{}'::jsonb, '', '',
                   1, 0, 0, 0, now(), now(), now() - mod(i, 172800) * interval '1 second', 1
              FROM generate_series(1, %s) AS i
            """,
            [completed],
        )
        cursor.execute("VACUUM ANALYZE horsies_task")


def timed(label: str, fn, repeat: int = 3):  # type: ignore[no-untyped-def]
    best = float("inf")
    result = None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    print(f"{label:<44} {best * 1000:9.1f} ms (best of {repeat})")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--failed", type=int, default=1_000_000)
    parser.add_argument("--completed", type=int, default=1_000_000)
    parser.add_argument("--retry", type=int, default=100_000, help="rows in the group that is retried")
    parser.add_argument("--reuse", action="store_true", help="keep the rows of the last run (time the reads only)")
    args = parser.parse_args()
    if args.reuse:
        setup_django("postgres://postgres@127.0.0.1:5432/horsies_bench_errors", "bench.settings")
    else:
        setup_django(scratch_database("postgres", "horsies_bench_errors"), "bench.settings")
    from django.db import connection
    from django.utils import timezone

    from horsies_django import bulk, failures
    from horsies_django.models import Task, TaskStatus

    start = time.perf_counter()
    if not args.reuse:
        fill(args.failed, args.completed, args.retry)
    else:
        with connection.cursor() as cursor:
            cursor.execute("VACUUM ANALYZE horsies_task")
    print(f"filled {args.failed:,} failed and {args.completed:,} completed rows in {time.perf_counter() - start:.1f} s")
    now = timezone.now()
    groups, total = timed("Errors page: groups, samples, sparklines", lambda: failures.error_groups(now))
    print(f"  {total} groups; the largest has {max(g.failed for g in groups):,} failures")
    timed("Dashboard: top 10 groups of the last 24 h", lambda: failures.top_groups(now))
    print("\nEXPLAIN (ANALYZE) of the Errors page's grouped query:\n")
    print(failures.group_counts().explain(analyze=True))
    big = next((g for g in groups if g.failed == args.retry), None)
    if big is None:
        return
    rows = bulk.matching(statuses={TaskStatus.FAILED}, name=big.name, group=big.group)
    start = time.perf_counter()
    changed = sum(len(b.changed) for b in bulk.batches(rows, bulk.retry))
    elapsed = time.perf_counter() - start
    print(f"\nretried one group of {changed:,} tasks in batches of {bulk.BATCH:,}: {elapsed:.1f} s")
    assert Task.objects.filter(name=big.name, error_group=big.group).count() == 0
    connection.close()


if __name__ == "__main__":
    main()
