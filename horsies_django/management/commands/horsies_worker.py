"""`manage.py horsies_worker`: parse the arguments, then hand over to `Worker.run()`."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from types import FrameType
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from ... import __version__
from ...worker import Worker
from ...worker.procpool import DEFAULT_PREFETCH
from ...worker.runner import WorkerStats


def positive_int(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {number}")
    return number


def non_negative_int(value: str) -> int:
    number = int(value)
    if number < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {number}")
    return number


def non_negative_float(value: str) -> float:
    number = float(value)
    if not number >= 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return number


def queue_list(value: str) -> list[str]:
    queues = [name.strip() for name in value.split(",") if name.strip()]
    if not queues:
        raise argparse.ArgumentTypeError("give at least one queue name, e.g. --queues critical,standard")
    return queues


class Command(BaseCommand):
    help = "Run a horsies_django worker: claim tasks from the database and run them."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--queues",
            type=queue_list,
            default=None,
            help="Comma-separated queues to take tasks from (default: all queues).",
        )
        parser.add_argument(
            "--concurrency",
            type=positive_int,
            default=None,
            help="Tasks run at once (default: HORSIES['WORKER']['concurrency'], 4).",
        )
        parser.add_argument(
            "--burst",
            action="store_true",
            help="Run what is ready now, then exit 0 (for scripts, tests and benchmarks).",
        )
        parser.add_argument(
            "--pool",
            choices=["processes", "threads"],
            default="processes",
            help="Run tasks in child processes (isolated; timeouts and cancels kill them) or in threads "
            "(light, for I/O-bound tasks) (default: %(default)s).",
        )
        parser.add_argument(
            "--max-tasks-per-child",
            type=non_negative_int,
            default=0,
            help="Replace a child process after it has run this many tasks; 0 never (default: %(default)s).",
        )
        parser.add_argument(
            "--prefetch",
            type=non_negative_int,
            default=DEFAULT_PREFETCH,
            help="Process pool only: tasks a child may hold queued behind the one it runs, so that it never "
            "waits for the supervisor between short tasks; 0 hands each child one task at a time "
            "(default: %(default)s).",
        )
        parser.add_argument(
            "--shutdown-timeout",
            type=non_negative_float,
            default=30.0,
            help="On the first Ctrl+C/SIGTERM, seconds to let running tasks finish before they are stopped "
            "and put back to run again (default: %(default)s).",
        )
        parser.add_argument(
            "--no-scheduler",
            action="store_true",
            help="Do not send due periodic tasks from this worker (some worker must; any number may).",
        )
        parser.add_argument("--worker-id", default=None, help="Name this worker (default: host:pid:random).")
        parser.add_argument(
            "--reload",
            action="store_true",
            help="Restart when a Python file changes, with Django's autoreloader (as runserver does); for development.",
        )
        parser.add_argument(
            "--metrics-port",
            type=non_negative_int,
            default=0,
            help="Serve this worker's Prometheus counters on this port; 0 serves none (default: %(default)s). "
            "Needs prometheus-client.",
        )

    def get_version(self) -> str:
        return __version__

    def handle(self, *args: Any, **options: Any) -> None:
        verbosity = options["verbosity"]
        logger = logging.getLogger("horsies_django")
        handler: logging.Handler | None = None
        # A project that configured the library's logger (LOGGING) keeps its own handlers and level.
        if not logger.handlers:
            level = {0: logging.ERROR, 1: logging.INFO, 2: logging.DEBUG}.get(verbosity, logging.DEBUG)
            handler = logging.StreamHandler(self.stderr)
            handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
            logger.addHandler(handler)
            logger.setLevel(level)
        if options["metrics_port"]:
            from ...contrib.prometheus import record_task_metrics, start_http_server

            record_task_metrics()
            start_http_server(options["metrics_port"])
        worker = Worker(
            queues=options["queues"],
            concurrency=options["concurrency"],
            burst=options["burst"],
            pool=options["pool"],
            max_tasks_per_child=options["max_tasks_per_child"],
            prefetch=options["prefetch"],
            shutdown_timeout_s=options["shutdown_timeout"],
            worker_id=options["worker_id"],
            run_scheduler=not options["no_scheduler"],
        )

        def on_signal(signum: int, frame: FrameType | None) -> None:
            if worker.stopping:
                self.stderr.write("Stopping now; tasks in hand will run again once their lease expires.")
                worker.kill_children()
                os._exit(128 + signum)
            self.stderr.write(
                f"{signal.Signals(signum).name}: finishing the tasks in hand (up to "
                f"{worker.shutdown_timeout_s:g}s), then exiting (press Ctrl+C again to stop at once)."
            )
            worker.stop()

        signal.signal(signal.SIGINT, on_signal)
        signal.signal(signal.SIGTERM, on_signal)
        try:
            stats = _run_with_reloader(worker) if options["reload"] else worker.run()
        finally:
            if handler is not None:
                logger.removeHandler(handler)
        if verbosity >= 1:
            self.stdout.write(
                f"worker {worker.worker_id}: {stats.completed} completed, {stats.failed} failed, "
                f"{stats.throughput():.1f} tasks/s"
            )
        sys.stdout.flush()


def _run_with_reloader(worker: Worker) -> WorkerStats:
    """Run the worker under Django's autoreloader, as runserver does: a parent process starts this
    command again whenever this one exits with code 3, which it does when a watched Python file
    changes. Before that exit the worker stops as on Ctrl+C, so the tasks in hand finish or go back
    to PENDING instead of waiting out their lease."""
    from django.utils import autoreload

    if os.environ.get(autoreload.DJANGO_AUTORELOAD_ENV) != "true":
        sys.exit(_restart_until_done())
    reloader = autoreload.get_reloader()
    stats: list[WorkerStats] = []
    done = threading.Event()

    def run() -> None:
        try:
            stats.append(worker.run())
        finally:
            done.set()
            reloader.stop()  # a stop by signal ends the reloader's loop, and with it this process

    def on_change(sender: object, file_path: object, **kwargs: object) -> None:
        worker.stop()
        done.wait()

    autoreload.file_changed.connect(on_change, weak=False)
    try:
        autoreload.start_django(reloader, run)
    finally:
        autoreload.file_changed.disconnect(on_change)
    return stats[0] if stats else worker.stats


def _restart_until_done() -> int:
    """The parent's side of --reload: start the command again as a child until it exits with a
    code other than 3. Unlike Django's `restart_with_reloader`, signals are passed on to the child,
    since a service manager (systemd, Docker) signals only this process, not its group."""
    import subprocess

    from django.utils import autoreload

    env = {**os.environ, autoreload.DJANGO_AUTORELOAD_ENV: "true"}
    while True:
        child = subprocess.Popen(autoreload.get_child_arguments(), env=env, close_fds=False)  # noqa: S603

        def forward(signum: int, frame: FrameType | None, child: subprocess.Popen[bytes] = child) -> None:
            child.send_signal(signum)

        signal.signal(signal.SIGINT, forward)
        signal.signal(signal.SIGTERM, forward)
        code = child.wait()
        if code != 3:
            return code
