"""`settings.HORSIES`, read lazily into a typed object so `override_settings` works in tests."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from django.conf import settings
from django.core.signals import setting_changed
from django.dispatch import receiver
from django.utils.module_loading import import_string

DEFAULT_QUEUE = "default"
DEFAULT_PRIORITY = 100
MAX_QUEUE_PRIORITY = 1000  # the Task.priority check constraint's upper bound


@dataclass(frozen=True)
class WorkerSettings:
    concurrency: int = 4
    heartbeat_s: float = 10.0
    lease_s: float = 60.0
    max_crash_reruns: int = 3
    poll_interval_s: float | None = None  # None: 1 s on PostgreSQL (NOTIFY wakes sooner), 0.05 s on SQLite


@dataclass(frozen=True)
class QueueSettings:
    priority: int = DEFAULT_PRIORITY
    max_concurrency: int | None = None


@dataclass(frozen=True)
class RetentionSettings:
    completed_days: float = 7
    failed_days: float = 30  # also CANCELLED and EXPIRED


@dataclass(frozen=True)
class HorsiesSettings:
    database: str = "default"
    queues: dict[str, QueueSettings] = field(default_factory=dict)
    worker: WorkerSettings = field(default_factory=WorkerSettings)
    max_payload_bytes: int = 1_000_000
    poll_only: bool = False
    retention: RetentionSettings = field(default_factory=RetentionSettings)
    exception_mapper: dict[type[BaseException], str] = field(default_factory=dict)
    cluster_max_concurrency: int | None = None
    idempotency_window_s: float = 86_400
    send_on_commit: bool = False  # send() writes when the transaction commits, as send_on_commit() does

    def queue_priority(self, queue_name: str) -> int:
        queue = self.queues.get(queue_name)
        return queue.priority if queue else DEFAULT_PRIORITY

    def unknown_queue(self, queue_name: str) -> str | None:
        """Why `queue_name` cannot be used, or None: once QUEUES is set, only its queues exist."""
        if not self.queues or queue_name in self.queues:
            return None
        return f"queue {queue_name!r} is not in HORSIES['QUEUES'] (known queues: {', '.join(sorted(self.queues))})"

    def queue_caps(self) -> dict[str, int]:
        """Queues with a cluster-wide cap on running tasks (0: paused)."""
        return {name: q.max_concurrency for name, q in self.queues.items() if q.max_concurrency is not None}


class SettingsError(ValueError):
    """`settings.HORSIES` holds a value that cannot work; the message names the key and the fix."""

    def __init__(self, check_id: str, message: str, hint: str) -> None:
        super().__init__(message)
        self.check_id = check_id
        self.hint = hint


def _number(raw: dict[str, Any], key: str, default: float, *, minimum: float, where: str) -> Any:
    value = raw.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < minimum:
        raise SettingsError(
            "horsies_django.E003",
            f"HORSIES{where}[{key!r}] must be a number >= {minimum}, got {value!r}",
            f"Set {key} to a number of at least {minimum}, or remove it to use {default!r}.",
        )
    return value


def parse(raw: Any) -> HorsiesSettings:
    """Build `HorsiesSettings` from the raw dict; raise `SettingsError` on the first bad value."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise SettingsError("horsies_django.E001", "HORSIES must be a dict", "Set HORSIES = {...} or remove it.")
    known = {
        "DATABASE", "QUEUES", "WORKER", "MAX_PAYLOAD_BYTES", "EXCEPTION_MAPPER", "POLL_ONLY", "RETENTION",
        "SCHEDULES", "CLUSTER_MAX_CONCURRENCY", "IDEMPOTENCY_WINDOW_S", "SEND_ON_COMMIT",
    }  # fmt: skip
    unknown = set(raw) - known
    if unknown:
        raise SettingsError(
            "horsies_django.E002",
            f"HORSIES has unknown key(s) {sorted(unknown)}",
            f"Known keys are {sorted(known)}.",
        )
    queues_raw = raw.get("QUEUES", {})
    if not isinstance(queues_raw, dict):
        raise SettingsError("horsies_django.E004", "HORSIES['QUEUES'] must be a dict", "Map queue names to dicts.")
    queues: dict[str, QueueSettings] = {}
    for name, options in queues_raw.items():
        where = f"['QUEUES'][{name!r}]"
        if not isinstance(name, str) or not name or not isinstance(options, dict):
            raise SettingsError(
                "horsies_django.E004",
                f"HORSIES{where} must map a non-empty queue name to a dict of options",
                "Use {'queue-name': {'priority': 1}}.",
            )
        unknown_options = set(options) - {"priority", "max_concurrency"}
        if unknown_options:
            raise SettingsError(
                "horsies_django.E002",
                f"HORSIES{where} has unknown key(s) {sorted(unknown_options)}",
                "Queue options are 'priority' (1 runs first) and 'max_concurrency' (0 pauses the queue).",
            )
        priority = options.get("priority", DEFAULT_PRIORITY)
        if isinstance(priority, bool) or not isinstance(priority, int) or not 1 <= priority <= MAX_QUEUE_PRIORITY:
            raise SettingsError(
                "horsies_django.E003",
                f"HORSIES{where}['priority'] must be a whole number from 1 to {MAX_QUEUE_PRIORITY}, got {priority!r}",
                "1 runs first; the default is 100.",
            )
        cap = options.get("max_concurrency")
        if cap is not None and (isinstance(cap, bool) or not isinstance(cap, int) or cap < 0):
            raise SettingsError(
                "horsies_django.E003",
                f"HORSIES{where}['max_concurrency'] must be a whole number >= 0 or None, got {cap!r}",
                "0 pauses the queue; None (the default) leaves it uncapped.",
            )
        queues[name] = QueueSettings(
            priority=priority,
            max_concurrency=cap,
        )
    worker_raw = raw.get("WORKER", {})
    if not isinstance(worker_raw, dict):
        raise SettingsError("horsies_django.E005", "HORSIES['WORKER'] must be a dict", "Use {'concurrency': 4}.")
    defaults = WorkerSettings()
    where = "['WORKER']"
    unknown_worker = set(worker_raw) - set(WorkerSettings.__dataclass_fields__)
    if unknown_worker:
        raise SettingsError(
            "horsies_django.E002",
            f"HORSIES['WORKER'] has unknown key(s) {sorted(unknown_worker)}",
            f"Known keys are {sorted(WorkerSettings.__dataclass_fields__)}.",
        )
    worker = WorkerSettings(
        concurrency=int(_number(worker_raw, "concurrency", defaults.concurrency, minimum=1, where=where)),
        heartbeat_s=float(_number(worker_raw, "heartbeat_s", defaults.heartbeat_s, minimum=0.01, where=where)),
        lease_s=float(_number(worker_raw, "lease_s", defaults.lease_s, minimum=0.05, where=where)),
        max_crash_reruns=int(
            _number(worker_raw, "max_crash_reruns", defaults.max_crash_reruns, minimum=0, where=where)
        ),
        poll_interval_s=None
        if worker_raw.get("poll_interval_s") is None
        else float(_number(worker_raw, "poll_interval_s", 1.0, minimum=0.001, where=where)),
    )
    if worker.lease_s < 2 * worker.heartbeat_s:
        raise SettingsError(
            "horsies_django.E006",
            f"HORSIES['WORKER']['lease_s'] ({worker.lease_s}) must be at least twice "
            f"heartbeat_s ({worker.heartbeat_s})",
            "A lease shorter than two heartbeats expires under a healthy worker; raise lease_s.",
        )
    database = raw.get("DATABASE", "default")
    if database not in settings.DATABASES:
        raise SettingsError(
            "horsies_django.E007",
            f"HORSIES['DATABASE'] names {database!r}, which is not in DATABASES",
            f"Use one of {sorted(settings.DATABASES)}.",
        )
    max_payload = int(_number(raw, "MAX_PAYLOAD_BYTES", 1_000_000, minimum=1, where=""))
    return HorsiesSettings(
        database=database,
        queues=queues,
        worker=worker,
        max_payload_bytes=max_payload,
        poll_only=_flag(raw, "POLL_ONLY"),
        retention=_retention(raw.get("RETENTION", {})),
        exception_mapper=_exception_mapper(raw.get("EXCEPTION_MAPPER", {})),
        cluster_max_concurrency=_cluster_cap(raw.get("CLUSTER_MAX_CONCURRENCY")),
        idempotency_window_s=float(_number(raw, "IDEMPOTENCY_WINDOW_S", 86_400, minimum=0, where="")),
        send_on_commit=_flag(raw, "SEND_ON_COMMIT"),
    )


def _cluster_cap(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise SettingsError(
            "horsies_django.E003",
            f"HORSIES['CLUSTER_MAX_CONCURRENCY'] must be a whole number >= 0 or None, got {value!r}",
            "It caps tasks held at once across all queues and workers; None (the default) means no cap.",
        )
    return value


def _retention(raw: Any) -> RetentionSettings:
    if not isinstance(raw, dict) or set(raw) - {"completed_days", "failed_days"}:
        raise SettingsError(
            "horsies_django.E010",
            f"HORSIES['RETENTION'] must be a dict with completed_days and/or failed_days, got {raw!r}",
            "Use {'completed_days': 7, 'failed_days': 30}.",
        )
    defaults = RetentionSettings()
    return RetentionSettings(
        completed_days=float(_number(raw, "completed_days", defaults.completed_days, minimum=0, where="['RETENTION']")),
        failed_days=float(_number(raw, "failed_days", defaults.failed_days, minimum=0, where="['RETENTION']")),
    )


def _flag(raw: dict[str, Any], key: str) -> bool:
    value = raw.get(key, False)
    if not isinstance(value, bool):
        raise SettingsError(
            "horsies_django.E009", f"HORSIES[{key!r}] must be True or False, got {value!r}", f"Set {key} to a bool."
        )
    return value


def _exception_mapper(raw: Any) -> dict[type[BaseException], str]:
    """Import `{"dotted.path.Error": "CODE"}`; exception classes themselves are accepted too."""
    if not isinstance(raw, dict):
        raise SettingsError(
            "horsies_django.E008",
            "HORSIES['EXCEPTION_MAPPER'] must be a dict",
            "Map exception classes (or their dotted paths) to error codes.",
        )
    mapper: dict[type[BaseException], str] = {}
    for key, code in raw.items():
        try:
            cls = import_string(key) if isinstance(key, str) else key
        except ImportError as exc:
            raise SettingsError(
                "horsies_django.E008",
                f"HORSIES['EXCEPTION_MAPPER'] cannot import {key!r}: {exc}",
                "Use the dotted path of an exception class, e.g. 'requests.Timeout'.",
            ) from exc
        if not (isinstance(cls, type) and issubclass(cls, BaseException)) or not isinstance(code, str) or not code:
            raise SettingsError(
                "horsies_django.E008",
                f"HORSIES['EXCEPTION_MAPPER'] entry {key!r}: {code!r} must map an exception class to a code",
                "Use {'myapp.errors.PaymentDeclined': 'PAYMENT_DECLINED'}.",
            )
        mapper[cls] = code
    return mapper


@lru_cache(maxsize=1)
def get_settings() -> HorsiesSettings:
    """The current settings; a bad value raises `SettingsError` (the system checks report it first)."""
    return parse(getattr(settings, "HORSIES", None))


@receiver(setting_changed)
def _forget_settings(*, setting: str, **kwargs: Any) -> None:
    if setting in ("HORSIES", "DATABASES"):
        get_settings.cache_clear()
