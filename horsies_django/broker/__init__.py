"""Pick the queue SQL for the configured database."""

from __future__ import annotations

from functools import cache

from django.core.exceptions import ImproperlyConfigured
from django.db import connections
from django.utils.module_loading import import_string

from ..conf import get_settings
from .base import Broker, BrokerError, ClaimedTask, Finish, LostTasks, NewTask, StoredOutcome

# Imported on first use, so a SQLite project does not need psycopg installed.
BROKERS: dict[str, str] = {
    "postgresql": "horsies_django.broker.postgres.PostgresBroker",
    "sqlite": "horsies_django.broker.sqlite.SqliteBroker",
}

__all__ = [
    "Broker",
    "BrokerError",
    "ClaimedTask",
    "Finish",
    "LostTasks",
    "NewTask",
    "StoredOutcome",
    "get_broker",
    "BROKERS",
]


def get_broker(alias: str | None = None) -> Broker:
    """The broker for `alias` (default: `HORSIES['DATABASE']`)."""
    settings = get_settings()
    alias = alias or settings.database
    vendor = connections[alias].vendor
    if vendor not in BROKERS:
        raise ImproperlyConfigured(f"horsies_django supports PostgreSQL and SQLite; database {alias!r} is {vendor}")
    return _broker_class(vendor)(alias, poll_only=settings.poll_only, listen_alias=settings.listen_database)


@cache
def _broker_class(vendor: str) -> type[Broker]:
    # Resolved once: get_broker() runs on every send.
    broker_class: type[Broker] = import_string(BROKERS[vendor])
    return broker_class
