"""Periodic tasks: HORSIES['SCHEDULES'] and @app.periodic, sent by every worker when a slot falls due.

`run_schedules()` sends what is due and says when the next slot is, so that a worker can sleep
until then. Each slot is sent once however many workers run this. A worker that finds a slot due moves the
schedule's row forward with a compare-and-set (`UPDATE ... WHERE last_slot_at = <what it read>`) and
sends the task in the same transaction. Only the worker whose update changed the row sends; a send
that fails rolls the move back, so the slot stays due. See docs/schedules.md.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter
from django.conf import settings
from django.core.checks import CheckMessage, Error
from django.db import DatabaseError, transaction
from django.utils import timezone

from .app import Horsies, TaskFunction
from .app import app as default_app
from .conf import get_settings, name_problem, show
from .types.codec import CodecError
from .types.results import Err, Ok, TaskSendError

if TYPE_CHECKING:
    from django.db.models import QuerySet

    from .models import Schedule

logger = logging.getLogger("horsies_django")

CATCH_UP_MODES = ("none", "latest", "all")
# catch_up="all" sends at most this many missed slots of one schedule per tick; later ticks send the rest.
MAX_CATCH_UP = 100
# catch_up="none" still sends a slot seen this late (or two heartbeats, when that is longer).
ON_TIME_S = 60.0
MIN_EVERY = timedelta(seconds=1)
MAX_EVERY = timedelta(days=366)  # longer periods are a cron's job; 1e300 s would overflow a datetime
# A task with a parameter of this name is told which slot it runs for (unless the schedule sets it).
SLOT_PARAMETER = "scheduled_at"
KEYS = frozenset({"task", "cron", "every", "args", "kwargs", "timezone", "catch_up"})
MAX_LENGTH = 200  # of Schedule.name and Schedule.spec
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class ScheduleError(ValueError):
    """A schedule that cannot work; reported by `manage.py check` and skipped by the scheduler."""

    def __init__(self, check_id: str, message: str, hint: str) -> None:
        super().__init__(message)
        self.check_id = check_id
        self.hint = hint


@dataclass(frozen=True)
class PeriodicSchedule:
    """A validated schedule: which task, with what arguments, at which slots."""

    name: str
    task: TaskFunction[Any, Any]
    spec: str  # what the admin shows; a change starts the schedule over from now
    cron: str | None
    every: timedelta | None
    tz: ZoneInfo
    catch_up: str
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    passes_slot: bool = False
    repeats_in_fold: bool = False  # cron whose minute or hour is "*": it also runs in the repeated hour

    def next_after(self, moment: datetime) -> datetime:
        """The first slot strictly after `moment`, in UTC."""
        if self.every is not None:
            return EPOCH + ((moment - EPOCH) // self.every + 1) * self.every
        slots = croniter(self.cron, moment.astimezone(self.tz))
        while True:
            slot: datetime = slots.get_next(datetime)
            if not self._skipped(slot):
                return slot.astimezone(UTC)

    def latest_until(self, moment: datetime) -> datetime:
        """The last slot at or before `moment`, in UTC."""
        if self.every is not None:
            return EPOCH + ((moment - EPOCH) // self.every) * self.every
        # croniter's get_prev() is strictly before its start; one microsecond later includes `moment`.
        slots = croniter(self.cron, (moment + timedelta(microseconds=1)).astimezone(self.tz))
        while True:
            slot: datetime = slots.get_prev(datetime)
            if not self._skipped(slot):
                return slot.astimezone(UTC)

    def slots(self, first: datetime, until: datetime, limit: int) -> list[datetime]:
        """Up to `limit` slots from `first` (itself a slot) to `until`, oldest first."""
        found: list[datetime] = []
        slot = first
        while slot <= until and len(found) < limit:
            found.append(slot)
            slot = self.next_after(slot)
        return found

    def call(self, slot: datetime) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """The arguments of the task sent for `slot`."""
        if not self.passes_slot:
            return self.args, self.kwargs
        return self.args, {**self.kwargs, SLOT_PARAMETER: slot}

    def _skipped(self, slot: datetime) -> bool:
        # When clocks go back an hour repeats. As in cron, a job with a fixed hour and minute runs in
        # its first pass only (a nightly 01:30 report runs once); "*/15 * * * *" runs in both.
        return slot.fold == 1 and not self.repeats_in_fold and slot.replace(fold=0).utcoffset() != slot.utcoffset()


# -- reading the declarations ---------------------------------------------------------------


def parse_schedule(name: object, entry: object, *, app: Horsies, now: datetime, where: str = "") -> PeriodicSchedule:
    """Validate one entry of HORSIES['SCHEDULES'] (or of `app.periodic_schedules()`)."""
    where = where or f"HORSIES['SCHEDULES'][{show(name)}]"
    if not isinstance(name, str) or name_problem(name, MAX_LENGTH):
        raise ScheduleError(
            "horsies_django.E020",
            f"{where}: a schedule name must be a string of 1 to {MAX_LENGTH} characters, without NUL",
            "Name each schedule, e.g. 'nightly-report'.",
        )
    if not isinstance(entry, Mapping):
        raise ScheduleError(
            "horsies_django.E020",
            f"{where} must be a dict, got {type(entry).__name__}",
            "Use {'task': 'send_report', 'cron': '0 3 * * *'}.",
        )
    unknown = set(entry) - KEYS
    if unknown:
        raise ScheduleError(
            "horsies_django.E020",
            f"{where} has unknown key(s) {sorted(map(show, unknown))}",
            f"Known keys are {sorted(KEYS)}.",
        )
    task_name = entry.get("task")
    task = app.get_task(task_name) if isinstance(task_name, str) else None
    if task is None:
        known = app.list_tasks()
        shown = ", ".join(known[:20]) + (", ..." if len(known) > 20 else "")
        raise ScheduleError(
            "horsies_django.E021",
            f"{where}: 'task' must name a registered task, got {show(task_name)}",
            f"Use the name given to @app.task(...) in a tasks.py module. Registered tasks: {shown or 'none'}.",
        )
    cron, every = entry.get("cron"), entry.get("every")
    if (cron is None) == (every is None):
        raise ScheduleError(
            "horsies_django.E022",
            f"{where} needs exactly one of 'cron' and 'every'",
            "Use 'cron': '*/5 * * * *' for wall-clock times, or 'every': timedelta(seconds=30) for a fixed interval.",
        )
    tz = _zone(entry.get("timezone", "UTC"), where)
    catch_up = entry.get("catch_up", "latest")
    if catch_up not in CATCH_UP_MODES:
        raise ScheduleError(
            "horsies_django.E026",
            f"{where}: 'catch_up' must be one of {', '.join(map(repr, CATCH_UP_MODES))}, got {show(catch_up)}",
            "'none' skips missed slots, 'latest' (the default) sends the most recent one, 'all' sends every one.",
        )
    args, kwargs = entry.get("args", ()), entry.get("kwargs", {})
    if not isinstance(args, list | tuple) or not isinstance(kwargs, Mapping) or not all(map(_is_str, kwargs)):
        raise ScheduleError(
            "horsies_django.E027",
            f"{where}: 'args' must be a list and 'kwargs' a dict with string keys",
            "Use 'args': [1, 2] and 'kwargs': {'report': 'daily'}.",
        )
    if cron is not None:
        minute, hour = _cron_fields(cron, where)
        period = None
        spec = cron if tz.key == "UTC" else f"{cron} ({tz.key})"
    else:
        period = _period(every, where)
        if tz.key != "UTC":
            raise ScheduleError(
                "horsies_django.E025",
                f"{where}: 'timezone' applies to 'cron' only; 'every' counts real time",
                "Remove 'timezone', or use 'cron' for times of day in that zone.",
            )
        minute = hour = "*"
        spec = f"every {_human(period)}"
    try:
        bound = set(task.signature.signature.bind_partial(*args, **kwargs).arguments)
    except TypeError as exc:
        raise ScheduleError(
            "horsies_django.E027",
            f"{where}: 'args' and 'kwargs' do not fit task {task.name!r}: {exc}",
            "Give the arguments the task's function takes.",
        ) from None
    schedule = PeriodicSchedule(
        name=name,
        task=task,
        spec=spec[:MAX_LENGTH],
        cron=cron,
        every=period,
        tz=tz,
        catch_up=catch_up,
        args=tuple(args),
        kwargs=dict(kwargs),
        passes_slot=SLOT_PARAMETER in task.signature.parameters and SLOT_PARAMETER not in bound,
        repeats_in_fold=minute.startswith("*") or hour.startswith("*"),
    )
    try:
        first = schedule.next_after(now)
    except (ValueError, KeyError, OverflowError) as exc:  # croniter's errors are ValueErrors
        raise ScheduleError(
            "horsies_django.E023", f"{where}: cron {show(cron)} never matches: {exc}", "Check the day and month fields."
        ) from None
    try:
        task.signature.encode_arguments_json(*schedule.call(first))
    except CodecError as exc:
        raise ScheduleError(
            "horsies_django.E027",
            f"{where}: the arguments cannot be sent to task {task.name!r}: {exc}",
            "Give values the task's annotations accept (JSON, or the annotated types).",
        ) from None
    return schedule


def declared_schedules(
    app: Horsies | None = None, now: datetime | None = None
) -> tuple[dict[str, PeriodicSchedule], list[ScheduleError]]:
    """The valid schedules from the settings and `@app.periodic`, by name, and the errors of the rest."""
    app = app or default_app
    now = now or timezone.now()
    raw = getattr(settings, "HORSIES", None)
    from_settings = raw.get("SCHEDULES", {}) if isinstance(raw, dict) else {}
    errors: list[ScheduleError] = []
    if not isinstance(from_settings, Mapping):
        errors.append(
            ScheduleError(
                "horsies_django.E020",
                "HORSIES['SCHEDULES'] must be a dict of schedules by name",
                "Use {'nightly-report': {'task': 'send_report', 'cron': '0 3 * * *'}}.",
            )
        )
        from_settings = {}
    entries = [(name, entry, f"HORSIES['SCHEDULES'][{show(name)}]") for name, entry in from_settings.items()]
    for name, entry in app.periodic_schedules().items():
        where = f"@app.periodic(name={show(name)}) on task {show(entry.get('task'))}"
        if name in from_settings:
            errors.append(
                ScheduleError(
                    "horsies_django.E028",
                    f"{where}: HORSIES['SCHEDULES'] also has a schedule named {show(name)}",
                    "Give one of them another name (@app.periodic(name=...)); until then the settings' one runs.",
                )
            )
            continue
        entries.append((name, entry, where))
    schedules: dict[str, PeriodicSchedule] = {}
    for name, entry, where in entries:
        try:
            schedules[name] = parse_schedule(name, entry, app=app, now=now, where=where)
        except ScheduleError as exc:
            errors.append(exc)
    return schedules, errors


def check_schedules(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """The system check: one error per schedule that cannot work (`horsies_django.E020`...)."""
    return [Error(str(exc), hint=exc.hint, id=exc.check_id) for exc in declared_schedules()[1]]


def _is_str(value: object) -> bool:
    return isinstance(value, str)


def _zone(value: object, where: str) -> ZoneInfo:
    if isinstance(value, ZoneInfo):
        return value
    try:
        if isinstance(value, str):
            return ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        pass
    raise ScheduleError(
        "horsies_django.E025",
        f"{where}: 'timezone' must be an IANA time zone name, got {show(value)}",
        "Use a name such as 'UTC', 'Europe/Istanbul' or 'America/New_York'.",
    )


def _cron_fields(cron: object, where: str) -> tuple[str, str]:
    """The minute and hour fields of a valid 5-field (or, with seconds last, 6-field) expression."""
    fields: list[str] = []
    try:
        if isinstance(cron, str) and croniter.is_valid(cron):
            fields = [str(f) for f in croniter(cron).expressions]
    except (ValueError, KeyError, TypeError):
        fields = []
    if len(fields) not in (5, 6):
        raise ScheduleError(
            "horsies_django.E023",
            f"{where}: 'cron' must be a cron expression, got {show(cron)}",
            "Use five fields, minute hour day-of-month month day-of-week, e.g. '0 3 * * *' or '*/5 * * * *' "
            "(a sixth field, seconds, may follow).",
        )
    return fields[0], fields[1]


def _period(every: object, where: str) -> timedelta:
    period = None
    if isinstance(every, timedelta):
        period = every
    elif (
        isinstance(every, int | float)
        and not isinstance(every, bool)
        and MIN_EVERY.total_seconds() <= every <= MAX_EVERY.total_seconds()  # NaN fails both
    ):
        period = timedelta(seconds=every)
    if period is None or not MIN_EVERY <= period <= MAX_EVERY:
        raise ScheduleError(
            "horsies_django.E024",
            f"{where}: 'every' must be a timedelta or a number of seconds from 1 second to 366 days, got {show(every)}",
            "Use 'every': timedelta(minutes=5) or 'every': 300.",
        )
    return period


def _human(period: timedelta) -> str:
    seconds = period.total_seconds()
    parts = []
    for unit, size in (("d", 86_400), ("h", 3_600), ("m", 60)):
        count, seconds = divmod(seconds, size)
        if count:
            parts.append(f"{int(count)}{unit}")
    if seconds or not parts:
        parts.append(f"{seconds:g}s")
    return "".join(parts)


# -- sending --------------------------------------------------------------------------------

_reported: set[str] = set()


class _SendFailedError(Exception):
    def __init__(self, error: TaskSendError) -> None:
        super().__init__(error.message)
        self.error = error


@dataclass(frozen=True, slots=True)
class Tick:
    """What one run of the scheduler did: tasks sent, and the earliest slot still to send
    (of the declared, unpaused schedules), or None when there is none."""

    sent: int
    next_at: datetime | None


def run_due_schedules(now: datetime, *, app: Horsies | None = None) -> int:
    """Send every schedule slot that is due at `now`; return how many tasks were sent."""
    return run_schedules(now, app=app).sent


def run_schedules(now: datetime, *, app: Horsies | None = None) -> Tick:
    """Send every schedule slot that is due at `now`; say how many were sent and when the next is due.

    Invalid schedules are logged (once per process) and skipped. A database error propagates, for
    the worker to report; any other error skips only the schedule it came from.
    """
    schedules, errors = declared_schedules(app, now)
    for error in errors:
        if str(error) not in _reported:
            _reported.add(str(error))
            logger.error("schedule skipped (%s): %s. %s", error.check_id, error, error.hint)
    database = get_settings().database
    rows = _sync(schedules, now, database)
    sent = 0
    tried = False
    for name, schedule in schedules.items():
        row = rows.get(name)
        if row is None or row.paused or row.next_run_at is None or row.next_run_at > now:
            continue
        tried = True
        try:
            sent += _send_due(schedule, row, now, database)
        except DatabaseError:
            raise
        except Exception:
            logger.exception("schedule name=%s failed; it is tried again at the next tick", name)
    return Tick(sent=sent, next_at=_next_slot(schedules, rows, database, reread=tried))


def _next_slot(
    schedules: Mapping[str, PeriodicSchedule], rows: Mapping[str, Schedule], database: str, *, reread: bool
) -> datetime | None:
    """The earliest slot still to send. After sends the rows have moved (here or in a worker that won
    the race), so they are read again; otherwise the rows in hand are current."""
    from django.db.models import Min

    from .models import Schedule

    if reread:
        earliest: datetime | None = (
            Schedule.objects.using(database)
            .filter(name__in=list(schedules), paused=False, next_run_at__isnull=False)
            .aggregate(earliest=Min("next_run_at"))["earliest"]
        )
        return earliest
    due = [
        row.next_run_at
        for name, row in rows.items()
        if name in schedules and not row.paused and row.next_run_at is not None
    ]
    return min(due, default=None)


def _sync(schedules: Mapping[str, PeriodicSchedule], now: datetime, database: str) -> dict[str, Schedule]:
    """Make the rows match the declarations; return them by name.

    A new schedule (or one whose spec changed, or that was resumed) starts from `now`: its first
    slot is the next one, and older ones are never sent. Rows of schedules no longer declared stay,
    with their paused flag, but lose their next run; if the schedule comes back it starts over.
    """
    from .models import Schedule

    manager = Schedule.objects.using(database)
    rows = {row.name: row for row in manager.all()}
    missing = [
        Schedule(name=s.name, task_name=s.task.name, spec=s.spec, next_run_at=s.next_after(now))
        for s in schedules.values()
        if s.name not in rows
    ]
    changed = bool(missing)
    if missing:  # Several workers may create them at once; the first insert wins.
        manager.bulk_create(missing, ignore_conflicts=True)
    for name, row in rows.items():
        schedule = schedules.get(name)
        this = manager.filter(name=name)
        if schedule is None:
            changed |= row.next_run_at is not None and bool(this.update(next_run_at=None, updated_at=now))
        elif row.spec != schedule.spec:
            this.filter(spec=row.spec).update(
                spec=schedule.spec,
                task_name=schedule.task.name,
                next_run_at=schedule.next_after(now),
                updated_at=now,
            )
            changed = True
        elif row.task_name != schedule.task.name:
            changed |= bool(this.update(task_name=schedule.task.name, updated_at=now))
        elif row.next_run_at is None:
            changed |= bool(this.filter(next_run_at=None).update(next_run_at=schedule.next_after(now), updated_at=now))
    if changed:
        rows = {row.name: row for row in manager.all()}
    return rows


def _announce_change(database: str) -> None:
    """Wake the workers that sleep until a schedule's next slot: it may have moved. Only pausing and
    resuming do this; a change of the declarations reaches a worker with its new settings, and
    announcing it would set workers of a half-done deploy waking each other in turn."""
    from .broker import get_broker

    get_broker(database).announce_schedule_change()


def _send_due(schedule: PeriodicSchedule, row: Schedule, now: datetime, database: str) -> int:
    """Send the due slots of one schedule, as its catch-up mode says; return how many were sent."""
    cursor = row.next_run_at
    assert cursor is not None
    latest = schedule.latest_until(now)
    on_time = max(ON_TIME_S, 2 * get_settings().worker.heartbeat_s)
    if schedule.catch_up == "all":
        slots = schedule.slots(cursor, now, MAX_CATCH_UP)
    elif schedule.catch_up == "latest" or (now - latest).total_seconds() <= on_time:
        slots = [latest] if latest >= cursor else []
    else:
        slots = []
    if schedule.catch_up != "all" and slots != [cursor]:
        logger.info(
            "schedule name=%s: slots from %s to %s were missed; catch_up=%s sends %s",
            schedule.name,
            cursor.isoformat(),
            latest.isoformat(),
            schedule.catch_up,
            "the latest" if slots else "none of them",
        )
    if not slots:
        # Skip to the next slot after now. Two workers doing this at once write the same value.
        _rows(database, schedule.name, row.last_slot_at, cursor).update(
            next_run_at=schedule.next_after(now), updated_at=now
        )
        return 0
    sent = 0
    last = row.last_slot_at
    for slot in slots:
        following = schedule.next_after(slot)
        if not _send_slot(schedule, slot, now, database, previous=(last, cursor), following=following):
            break
        sent += 1
        last, cursor = slot, following
    return sent


def _rows(database: str, name: str, last_slot_at: datetime | None, next_run_at: datetime | None) -> QuerySet[Schedule]:
    """The schedule's row, if it is unpaused and still where this worker read it (the compare part)."""
    from .models import Schedule

    return Schedule.objects.using(database).filter(
        name=name, paused=False, last_slot_at=last_slot_at, next_run_at=next_run_at
    )


def _slot_key(name: str, slot: datetime) -> str:
    key = f"schedule:{name}:{slot.astimezone(UTC).isoformat()}"
    return key if len(key) <= 255 else f"schedule:{hashlib.sha256(key.encode()).hexdigest()}"


def _send_slot(
    schedule: PeriodicSchedule,
    slot: datetime,
    now: datetime,
    database: str,
    *,
    previous: tuple[datetime | None, datetime],
    following: datetime,
) -> bool:
    """Claim `slot` with a compare-and-set and send its task, in one transaction; True if sent here."""
    args, kwargs = schedule.call(slot)
    try:
        with transaction.atomic(using=database):
            # The first statement writes, so on SQLite the transaction waits for the write lock here,
            # and on PostgreSQL a second worker's update waits for this one, then matches no row.
            this = _rows(database, schedule.name, *previous)
            if not this.update(last_slot_at=slot, last_run_at=now, next_run_at=following, updated_at=now):
                logger.debug("schedule name=%s slot=%s: taken by another worker, or paused", schedule.name, slot)
                return False
            # The key is a unique row per schedule and slot in the task table: a backstop, in the
            # database's own constraint, behind the compare-and-set above.
            match schedule.task.with_options(idempotency_key=_slot_key(schedule.name, slot)).send(*args, **kwargs):
                case Ok(handle):
                    task_id = handle.task_id
                case Err(error):
                    raise _SendFailedError(error)
            this.model.objects.using(database).filter(name=schedule.name).update(last_task_id=task_id)
    except _SendFailedError as exc:
        logger.error(
            "schedule name=%s slot=%s: send failed (%s: %s); the slot is tried again at the next tick",
            schedule.name,
            slot.isoformat(),
            exc.error.code,
            exc.error.message,
        )
        return False
    logger.info("schedule sent name=%s slot=%s task_id=%s", schedule.name, slot.isoformat(), task_id)
    return True


# -- pausing (the admin's actions) ------------------------------------------------------------


def pause(names: Iterable[str]) -> list[str]:
    """Pause these schedules; return the names that were running. A paused schedule sends nothing."""
    from .models import Schedule

    database = get_settings().database
    manager = Schedule.objects.using(database)
    now = timezone.now()
    paused = [name for name in names if manager.filter(name=name, paused=False).update(paused=True, updated_at=now)]
    if paused:
        _announce_change(database)
    return paused


def resume(names: Iterable[str], *, now: datetime | None = None, app: Horsies | None = None) -> list[str]:
    """Resume these schedules; return the names that were paused. The slots missed while paused are
    skipped, whatever the catch-up mode: the schedule goes on from its next slot after `now`."""
    from .models import Schedule

    database = get_settings().database
    manager = Schedule.objects.using(database)
    now = now or timezone.now()
    schedules = declared_schedules(app, now)[0]
    resumed = []
    for name in names:
        schedule = schedules.get(name)
        next_run = schedule.next_after(now) if schedule is not None else None
        if manager.filter(name=name, paused=True).update(paused=False, next_run_at=next_run, updated_at=now):
            resumed.append(name)
    if resumed:
        _announce_change(database)
    return resumed
