"""`manage.py horsies_prune`: delete ended tasks older than HORSIES['RETENTION'] allows."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand
from django.utils import timezone

from ...broker import get_broker
from ...worker.runner import prune_finished


class Command(BaseCommand):
    help = (
        "Delete ended tasks and their attempts: COMPLETED ones older than RETENTION['completed_days'], "
        "FAILED, CANCELLED and EXPIRED ones older than RETENTION['failed_days']. Workers also do this "
        "a little at a time; run it from cron to catch up after a long outage."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        deleted = prune_finished(get_broker(), now=timezone.now())
        if options["verbosity"] >= 1:
            self.stdout.write(f"deleted {deleted} ended task(s) and workflow(s)")
