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

from .types.codes import code_spelling_problem

DEFAULT_QUEUE = "default"
DEFAULT_PRIORITY = 100
MAX_QUEUE_PRIORITY = 1000  # the Task.priority check constraint's upper bound
MAX_NAME_LENGTH = 100  # Task.queue_name and Task.error_code hold at most this many characters

# Upper bounds for every number: past them a value is a typo, and some (a lease of 1e12 s, a
# retention of a million days) overflow a datetime at run time instead of failing here.
DAY_S = 86_400
MAX_CONCURRENCY = 1_024
MAX_CAP = 1_000_000
MAX_HEARTBEAT_S = 3_600.0
MAX_LEASE_S = float(DAY_S)
MAX_POLL_S = 3_600.0
MAX_CRASH_RERUNS = 1_000
MAX_PAYLOAD_BYTES = 256 * 1024 * 1024  # PostgreSQL's jsonb stops at 255 MB
MAX_RETENTION_DAYS = 36_500.0
MAX_IDEMPOTENCY_WINDOW_S = 3_650.0 * DAY_S


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
    listen_database: str | None = None  # a direct connection for LISTEN when DATABASE is pooled
    retention: RetentionSettings = field(default_factory=RetentionSettings)
    exception_mapper: dict[type[BaseException], str] = field(default_factory=dict)
    default_unhandled_error_code: str | None = None  # None: UNHANDLED_EXCEPTION
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


def show(value: object) -> str:
    """`repr(value)` for a message, shortened; never raises, whatever `value.__repr__` does."""
    try:
        text = repr(value)
    except Exception:  # A hostile object in the settings must still give a check error.
        return f"<unprintable {type(value).__name__}>"
    return text if len(text) <= 80 else text[:77] + "..."


def _keys(keys: set[Any]) -> list[str]:
    """Keys of any types, sorted for a message (sorting a mix of str and int keys would raise)."""
    return sorted(show(key) for key in keys)


def _in_range(value: object, minimum: float, maximum: float, *, whole: bool) -> bool:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    if isinstance(value, float) and (not math.isfinite(value) or (whole and not value.is_integer())):
        return False
    return minimum <= value <= maximum  # exact for ints of any size (no float conversion)


def _number(
    raw: dict[str, Any], key: str, default: float, *, minimum: float, maximum: float, where: str, whole: bool = False
) -> Any:
    value = raw.get(key, default)
    if not _in_range(value, minimum, maximum, whole=whole):
        kind = "a whole number" if whole else "a number"
        raise SettingsError(
            "horsies_django.E003",
            f"HORSIES{where}[{key!r}] must be {kind} from {minimum:g} to {maximum:g}, got {show(value)}",
            f"Set {key} to {kind} from {minimum:g} to {maximum:g}, or remove it to use {default!r}.",
        )
    return value


def text_problem(value: str) -> str | None:
    """Why the database cannot store `value` (PostgreSQL refuses NUL; no database takes a lone surrogate)."""
    if "\x00" in value:
        return "must not contain a NUL character"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "must be valid text (it holds a lone surrogate)"
    return None


def name_problem(value: object, max_length: int = MAX_NAME_LENGTH) -> str | None:
    """Why `value` cannot be a queue name, an error code or a schedule name, or None."""
    if not isinstance(value, str) or not value:
        return "must be a non-empty string"
    if len(value) > max_length:
        return f"must be at most {max_length} characters"
    return text_problem(value)


def parse(raw: Any) -> HorsiesSettings:
    """Build `HorsiesSettings` from the raw dict; raise `SettingsError` on the first bad value."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise SettingsError("horsies_django.E001", "HORSIES must be a dict", "Set HORSIES = {...} or remove it.")
    known = {
        "DATABASE", "QUEUES", "WORKER", "MAX_PAYLOAD_BYTES", "EXCEPTION_MAPPER", "POLL_ONLY", "RETENTION",
        "SCHEDULES", "CLUSTER_MAX_CONCURRENCY", "IDEMPOTENCY_WINDOW_S", "DEFAULT_UNHANDLED_ERROR_CODE",
        "LISTEN_DATABASE", "SEND_ON_COMMIT",
    }  # fmt: skip
    unknown = set(raw) - known
    if unknown:
        raise SettingsError(
            "horsies_django.E002",
            f"HORSIES has unknown key(s) {_keys(unknown)}",
            f"Known keys are {sorted(known)}.",
        )
    queues_raw = raw.get("QUEUES", {})
    if not isinstance(queues_raw, dict):
        raise SettingsError("horsies_django.E004", "HORSIES['QUEUES'] must be a dict", "Map queue names to dicts.")
    queues: dict[str, QueueSettings] = {}
    for name, options in queues_raw.items():
        where = f"['QUEUES'][{show(name)}]"
        problem = name_problem(name)
        if problem or not isinstance(options, dict):
            raise SettingsError(
                "horsies_django.E004",
                f"HORSIES{where} must map a queue name to a dict of options"
                + (f": the name {problem}" if problem else ""),
                f"Use {{'queue-name': {{'priority': 1}}}}; a name has 1 to {MAX_NAME_LENGTH} characters.",
            )
        unknown_options = set(options) - {"priority", "max_concurrency"}
        if unknown_options:
            raise SettingsError(
                "horsies_django.E002",
                f"HORSIES{where} has unknown key(s) {_keys(unknown_options)}",
                "Queue options are 'priority' (1 runs first) and 'max_concurrency' (0 pauses the queue).",
            )
        priority = options.get("priority", DEFAULT_PRIORITY)
        if not isinstance(priority, int) or not _in_range(priority, 1, MAX_QUEUE_PRIORITY, whole=True):
            raise SettingsError(
                "horsies_django.E003",
                f"HORSIES{where}['priority'] must be a whole number from 1 to {MAX_QUEUE_PRIORITY}, "
                f"got {show(priority)}",
                "1 runs first; the default is 100.",
            )
        cap = options.get("max_concurrency")
        if cap is not None and (not isinstance(cap, int) or not _in_range(cap, 0, MAX_CAP, whole=True)):
            raise SettingsError(
                "horsies_django.E003",
                f"HORSIES{where}['max_concurrency'] must be a whole number from 0 to {MAX_CAP} or None, "
                f"got {show(cap)}",
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
            f"HORSIES['WORKER'] has unknown key(s) {_keys(unknown_worker)}",
            f"Known keys are {sorted(WorkerSettings.__dataclass_fields__)}.",
        )
    worker = WorkerSettings(
        concurrency=int(
            _number(
                worker_raw, "concurrency", defaults.concurrency, minimum=1, maximum=MAX_CONCURRENCY, where=where,
                whole=True,
            )
        ),
        heartbeat_s=float(
            _number(worker_raw, "heartbeat_s", defaults.heartbeat_s, minimum=0.01, maximum=MAX_HEARTBEAT_S, where=where)
        ),
        lease_s=float(_number(worker_raw, "lease_s", defaults.lease_s, minimum=0.05, maximum=MAX_LEASE_S, where=where)),
        max_crash_reruns=int(
            _number(
                worker_raw, "max_crash_reruns", defaults.max_crash_reruns, minimum=0, maximum=MAX_CRASH_RERUNS,
                where=where, whole=True,
            )
        ),
        poll_interval_s=None
        if worker_raw.get("poll_interval_s") is None
        else float(_number(worker_raw, "poll_interval_s", 1.0, minimum=0.001, maximum=MAX_POLL_S, where=where)),
    )  # fmt: skip
    if worker.lease_s < 2 * worker.heartbeat_s:
        raise SettingsError(
            "horsies_django.E006",
            f"HORSIES['WORKER']['lease_s'] ({worker.lease_s}) must be at least twice "
            f"heartbeat_s ({worker.heartbeat_s})",
            "A lease shorter than two heartbeats expires under a healthy worker; raise lease_s.",
        )
    database = raw.get("DATABASE", "default")
    if not isinstance(database, str) or database not in settings.DATABASES:
        raise SettingsError(
            "horsies_django.E007",
            f"HORSIES['DATABASE'] must name an alias in DATABASES, got {show(database)}",
            f"Use one of {sorted(settings.DATABASES)}.",
        )
    listen_database = raw.get("LISTEN_DATABASE")
    if listen_database is not None and (
        not isinstance(listen_database, str) or listen_database not in settings.DATABASES
    ):
        raise SettingsError(
            "horsies_django.E007",
            f"HORSIES['LISTEN_DATABASE'] names {show(listen_database)}, which is not in DATABASES",
            f"Use one of {sorted(settings.DATABASES)}: a direct connection to the same database, "
            "or None to listen on HORSIES['DATABASE'].",
        )
    max_payload = int(
        _number(raw, "MAX_PAYLOAD_BYTES", 1_000_000, minimum=1, maximum=MAX_PAYLOAD_BYTES, where="", whole=True)
    )
    return HorsiesSettings(
        database=database,
        queues=queues,
        worker=worker,
        max_payload_bytes=max_payload,
        poll_only=_flag(raw, "POLL_ONLY"),
        listen_database=listen_database,
        retention=_retention(raw.get("RETENTION", {})),
        exception_mapper=_exception_mapper(raw.get("EXCEPTION_MAPPER", {})),
        default_unhandled_error_code=_default_code(raw.get("DEFAULT_UNHANDLED_ERROR_CODE")),
        cluster_max_concurrency=_cluster_cap(raw.get("CLUSTER_MAX_CONCURRENCY")),
        idempotency_window_s=float(
            _number(raw, "IDEMPOTENCY_WINDOW_S", 86_400, minimum=0, maximum=MAX_IDEMPOTENCY_WINDOW_S, where="")
        ),
        send_on_commit=_flag(raw, "SEND_ON_COMMIT"),
    )


def _cluster_cap(value: Any) -> int | None:
    if value is None:
        return None
    if not isinstance(value, int) or not _in_range(value, 0, MAX_CAP, whole=True):
        raise SettingsError(
            "horsies_django.E003",
            f"HORSIES['CLUSTER_MAX_CONCURRENCY'] must be a whole number from 0 to {MAX_CAP} or None, got {show(value)}",
            "It caps tasks held at once across all queues and workers; None (the default) means no cap.",
        )
    return value


def _retention(raw: Any) -> RetentionSettings:
    if not isinstance(raw, dict) or set(raw) - {"completed_days", "failed_days"}:
        raise SettingsError(
            "horsies_django.E010",
            f"HORSIES['RETENTION'] must be a dict with completed_days and/or failed_days, got {show(raw)}",
            "Use {'completed_days': 7, 'failed_days': 30}.",
        )
    defaults = RetentionSettings()
    where, top = "['RETENTION']", MAX_RETENTION_DAYS
    return RetentionSettings(
        completed_days=float(
            _number(raw, "completed_days", defaults.completed_days, minimum=0, maximum=top, where=where)
        ),
        failed_days=float(_number(raw, "failed_days", defaults.failed_days, minimum=0, maximum=top, where=where)),
    )


def _flag(raw: dict[str, Any], key: str) -> bool:
    value = raw.get(key, False)
    if not isinstance(value, bool):
        raise SettingsError(
            "horsies_django.E009", f"HORSIES[{key!r}] must be True or False, got {show(value)}", f"Set {key} to a bool."
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
        except Exception as exc:  # The module may raise anything at import; report it as a check error.
            raise SettingsError(
                "horsies_django.E008",
                f"HORSIES['EXCEPTION_MAPPER'] cannot import {show(key)}: {type(exc).__name__}: {show(str(exc))}",
                "Use the dotted path of an exception class, e.g. 'requests.Timeout', whose module imports cleanly.",
            ) from exc
        problem = code_spelling_problem(code, "the code")
        if not (isinstance(cls, type) and issubclass(cls, BaseException)) or problem:
            raise SettingsError(
                "horsies_django.E008",
                f"HORSIES['EXCEPTION_MAPPER'] entry {show(key)}: {show(code)} must map an exception class to "
                "an UPPER_SNAKE_CASE error code" + (f" ({problem})" if problem else ""),
                "Use {'myapp.errors.PaymentDeclined': 'PAYMENT_DECLINED'}.",
            )
        mapper[cls] = code
    return mapper


def _default_code(value: Any) -> str | None:
    """`DEFAULT_UNHANDLED_ERROR_CODE`: the code of a raised exception that no mapper names."""
    if value is None:
        return None
    problem = code_spelling_problem(value, "HORSIES['DEFAULT_UNHANDLED_ERROR_CODE']")
    if problem:
        raise SettingsError(
            "horsies_django.E008",
            problem,
            "Use a code such as 'TASK_CRASHED', or remove the key to keep 'UNHANDLED_EXCEPTION'.",
        )
    return str(value)


@lru_cache(maxsize=1)
def get_settings() -> HorsiesSettings:
    """The current settings; a bad value raises `SettingsError` (the system checks report it first)."""
    return parse(getattr(settings, "HORSIES", None))


@receiver(setting_changed)
def _forget_settings(*, setting: str, **kwargs: Any) -> None:
    if setting in ("HORSIES", "DATABASES"):
        get_settings.cache_clear()
