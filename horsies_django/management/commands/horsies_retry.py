"""`manage.py horsies_retry`: retry every ended task a filter matches, in batches, with a progress bar."""

from __future__ import annotations

import argparse
from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from ... import bulk
from ...conf import get_settings, name_problem
from ...models import TaskStatus

STATUS_FLAGS = {"failed": TaskStatus.FAILED, "cancelled": TaskStatus.CANCELLED, "expired": TaskStatus.EXPIRED}
BAR_WIDTH = 30


def since(value: str) -> timedelta:
    try:
        return bulk.parse_since(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def text(value: str) -> str:
    problem = name_problem(value, 255)
    if problem:
        raise argparse.ArgumentTypeError(problem)
    return value


def batch_size(value: str) -> int:
    number = int(value)
    if not 1 <= number <= 100_000:
        raise argparse.ArgumentTypeError(f"must be from 1 to 100000, got {number}")
    return number


class Command(BaseCommand):
    help = (
        "Retry every task that matches the filters, as the admin's Retry action does: each goes back to its "
        "queue as a new attempt. At least one of --failed, --cancelled, --expired is needed."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        for flag, status in STATUS_FLAGS.items():
            parser.add_argument(f"--{flag}", action="store_true", help=f"Retry {status} tasks.")
        parser.add_argument("--task", type=text, help="Only tasks of this name.")
        parser.add_argument("--error-code", type=text, help="Only tasks that ended with this error code.")
        parser.add_argument("--group", type=text, help="Only tasks of this error group (the Errors page's rows).")
        parser.add_argument("--queue", type=text, help="Only tasks of this queue.")
        parser.add_argument("--since", type=since, help="Only tasks that ended in this window: 30m, 1h, 2d, 1w.")
        parser.add_argument("--dry-run", action="store_true", help="Count the matching tasks; change nothing.")
        parser.add_argument(
            "--batch", type=batch_size, default=bulk.BATCH, help="Tasks per transaction (default: %(default)s)."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        statuses = {status for flag, status in STATUS_FLAGS.items() if options[flag]}
        if not statuses:
            raise CommandError("say which tasks to retry: --failed, --cancelled and/or --expired")
        window: timedelta | None = options["since"]
        tasks = bulk.matching(
            statuses=statuses,
            name=options["task"],
            error_code=options["error_code"],
            group=options["group"],
            queue=options["queue"],
            finished_since=timezone.now() - window if window else None,
            database=get_settings().database,
        )
        total = tasks.count()
        if options["dry_run"]:
            self.stdout.write(f"{total} task(s) would be retried (dry run: nothing changed)")
            return
        seen = changed = 0
        quiet = options["verbosity"] < 1
        for batch in bulk.batches(tasks, bulk.retry, batch=options["batch"]):
            seen += batch.seen
            changed += len(batch.changed)
            if not quiet:
                self.stderr.write(progress_bar(seen, total), ending="\r")
        if not quiet and total:
            self.stderr.write("")
        self.stdout.write(f"{changed} task(s) retried")


def progress_bar(done: int, total: int) -> str:
    """`[###########-------------------]  1,234/3,000  41%`."""
    share = min(done / total, 1.0) if total else 1.0
    filled = round(share * BAR_WIDTH)
    return f"[{'#' * filled}{'-' * (BAR_WIDTH - filled)}] {done:>7,}/{total:,} {share:4.0%}"
