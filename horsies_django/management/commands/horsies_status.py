"""`manage.py horsies_status`: the dashboard's numbers in the terminal, once, on a loop, or as JSON."""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from django.db import close_old_connections

from ... import stats

CLEAR = "\x1b[H\x1b[2J"


def interval(value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number of seconds, got {value!r}") from None
    if not seconds >= 0.1:
        raise argparse.ArgumentTypeError(f"must be at least 0.1 seconds, got {value}")
    return seconds


def render(snapshot: stats.Snapshot) -> str:
    """The snapshot as aligned plain-text tables."""
    head = ["QUEUE", *stats.STATUSES, "SCHEDULED", "OLDEST READY"]
    rows = [
        [
            q.name,
            *(str(q.counts[s]) for s in stats.STATUSES),
            str(q.scheduled),
            stats.human_duration(q.oldest_pending_s),
        ]
        for q in snapshot.queues
    ]
    if len(snapshot.queues) > 1:
        scheduled = sum(q.scheduled for q in snapshot.queues)
        rows.append(["(all)", *(str(n) for n in snapshot.totals().values()), str(scheduled), ""])
    completed = sum(b.completed for b in snapshot.throughput)
    failed = sum(b.failed for b in snapshot.throughput)
    errors = ", ".join(f"{e.code} {e.count}" for e in snapshot.top_errors) or "none"
    workers = [
        [
            w.id,
            w.state,
            f"{stats.human_duration(w.heartbeat_age_s)} ago",
            ",".join(w.queues) or "*",
            f"{len(w.running)}/{w.concurrency}",
            " ".join(f"{t.name}({t.id[:8]})" for t in w.running) or "-",
        ]
        for w in snapshot.workers
    ]
    lines = [
        f"horsies status at {snapshot.at:%Y-%m-%d %H:%M:%S %Z}",
        "",
        *_table(head, rows or [["(no tasks)", *[""] * (len(head) - 1)]]),
        "",
        f"last hour: {completed} completed, {failed} failed",
        f"top errors (24 h): {errors}",
        "",
        *(
            _table(["WORKER", "STATE", "HEARTBEAT", "QUEUES", "BUSY", "RUNNING"], workers)
            if workers
            else ["no worker has reported in the last hour"]
        ),
    ]
    return "\n".join(lines)


def _table(head: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(row[i]) for row in [head, *rows]) for i in range(len(head))]
    # Names on the left, numbers on the right.
    numeric = [i > 0 and all(r[i].isdigit() or not r[i] for r in rows) for i in range(len(head))]

    def line(row: list[str]) -> str:
        cells = [c.rjust(w) if num else c.ljust(w) for c, w, num in zip(row, widths, numeric, strict=True)]
        return "  ".join(cells).rstrip()

    return [line(head), *(line(row) for row in rows)]


class Command(BaseCommand):
    help = "Show tasks per queue and status, throughput, top errors and workers."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--json", action="store_true", help="Print JSON (one object per refresh) for scripts.")
        parser.add_argument(
            "--prometheus",
            action="store_true",
            help="Print the queue metrics in Prometheus' text format (needs prometheus-client).",
        )
        parser.add_argument(
            "--watch",
            type=interval,
            nargs="?",
            const=2.0,
            default=None,
            metavar="SECONDS",
            help="Refresh every SECONDS until Ctrl+C (default when given: %(const)s).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["prometheus"]:
            from ...contrib.prometheus import exposition

            self.stdout.write(exposition().decode(), ending="")
            return
        watch: float | None = options["watch"]
        as_json: bool = options["json"]
        try:
            while True:
                snapshot = stats.snapshot()
                if as_json:
                    self.stdout.write(json.dumps(snapshot.as_dict(), sort_keys=True))
                else:
                    clear = CLEAR if watch is not None and self.stdout.isatty() else ""
                    self.stdout.write(clear + render(snapshot))
                self.stdout.flush()
                if watch is None:
                    return
                close_old_connections()
                time.sleep(watch)
        except KeyboardInterrupt:
            return
