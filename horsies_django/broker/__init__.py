"""Pick the queue SQL for the configured database."""

from __future__ import annotations

from django.core.exceptions import ImproperlyConfigured
from django.db import connections

from ..conf import get_settings
from .base import Broker, ClaimedTask, Finish, LostTasks, NewTask, StoredOutcome
from .postgres import PostgresBroker
from .sqlite import SqliteBroker

BROKERS: dict[str, type[Broker]] = {"postgresql": PostgresBroker, "sqlite": SqliteBroker}

__all__ = ["Broker", "ClaimedTask", "Finish", "LostTasks", "NewTask", "StoredOutcome", "get_broker", "BROKERS"]


def get_broker(alias: str | None = None) -> Broker:
    """The broker for `alias` (default: `HORSIES['DATABASE']`)."""
    settings = get_settings()
    alias = alias or settings.database
    vendor = connections[alias].vendor
    try:
        return BROKERS[vendor](alias, poll_only=settings.poll_only)
    except KeyError:
        raise ImproperlyConfigured(
            f"horsies_django supports PostgreSQL and SQLite; database {alias!r} is {vendor}"
        ) from None
