"""Periodic tasks (placeholder until the scheduler lands): nothing is due."""

from __future__ import annotations

from datetime import datetime


def run_due_schedules(now: datetime) -> int:
    """Send every schedule slot that is due at `now`; return how many tasks were sent."""
    return 0
