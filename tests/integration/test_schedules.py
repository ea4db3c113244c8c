"""Schedules: slots for cron and intervals, time zones and DST, catch-up after an outage, pausing,
exactly-once sends with three worker processes, the system checks and the admin's Pause/Resume.

The scheduler is driven with an explicit `now` (a frozen clock); only the three-worker test uses the
real one. The probe task takes a `scheduled_at` parameter, so every task records the slot it was sent
for and "each slot once" can be checked slot by slot, not just by counting.
"""

from __future__ import annotations

import json
import re
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.contrib.auth.models import Permission, User
from django.core.checks import Tags, run_checks
from django.db import connections
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from horsies_django import Horsies, TaskError, TaskResult, app
from horsies_django.models import Schedule, Task, WorkerProcess
from horsies_django.scheduler import (
    EPOCH,
    PeriodicSchedule,
    check_schedules,
    declared_schedules,
    parse_schedule,
    pause,
    resume,
    run_due_schedules,
)
from tests.conftest import start_worker
from tests.taskapp.tasks import add

pytestmark = pytest.mark.django_db(transaction=True)

T0 = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)  # a Monday
MIN = timedelta(minutes=1)
SEC = timedelta(seconds=1)
CHANGELIST = "admin:horsies_django_schedule_changelist"


def declare(settings: Any, **schedules: Any) -> None:
    settings.HORSIES = {**settings.HORSIES, "SCHEDULES": schedules}


def parse(entry: dict[str, Any], now: datetime = T0) -> PeriodicSchedule:
    return parse_schedule("s", entry, app=app, now=now)


def row(name: str) -> Schedule:
    return Schedule.objects.get(name=name)


def probe_slots(label: str | None = None) -> list[datetime]:
    """The slots of the probe tasks sent so far, oldest first."""
    slots = []
    for arguments in Task.objects.filter(name="tests.scheduled_probe").values_list("arguments", flat=True):
        if label is None or arguments.get("label") == label:
            slots.append(datetime.fromisoformat(arguments["scheduled_at"]))
    return sorted(slots)


# -- slots ----------------------------------------------------------------------------------


def test_every_slots_are_multiples_of_the_interval_since_the_epoch() -> None:
    five = parse({"task": "tests.add", "every": timedelta(minutes=5), "args": [1, 2]})
    assert five.spec == "every 5m"
    assert five.next_after(T0) == T0 + 5 * MIN
    assert five.next_after(T0 - SEC) == T0
    assert five.latest_until(T0) == T0
    assert five.latest_until(T0 + 5 * MIN - SEC) == T0
    assert five.slots(T0, T0 + 12 * MIN, limit=100) == [T0, T0 + 5 * MIN, T0 + 10 * MIN]
    assert five.slots(T0, T0 + 12 * MIN, limit=2) == [T0, T0 + 5 * MIN]

    odd = parse({"task": "tests.add", "every": 90, "args": [1]})
    assert odd.spec == "every 1m30s"
    first = odd.next_after(T0)
    assert T0 < first <= T0 + 90 * SEC and (first - EPOCH).total_seconds() % 90 == 0
    assert parse({"task": "tests.add", "every": timedelta(days=1, hours=2), "args": [1]}).spec == "every 1d2h"


def test_cron_slots() -> None:
    office = parse({"task": "tests.add", "cron": "*/15 9-17 * * mon-fri", "args": [1]})
    assert office.spec == "*/15 9-17 * * mon-fri"
    assert office.next_after(T0) == T0 + 15 * MIN  # strictly after
    assert office.latest_until(T0) == T0  # at or before
    assert office.latest_until(T0 + 14 * MIN + 59 * SEC) == T0
    assert office.next_after(datetime(2026, 3, 2, 17, 45, tzinfo=UTC)) == datetime(2026, 3, 3, 9, 0, tzinfo=UTC)
    friday = datetime(2026, 3, 6, 17, 50, tzinfo=UTC)
    assert office.next_after(friday) == datetime(2026, 3, 9, 9, 0, tzinfo=UTC)
    seconds = parse({"task": "tests.add", "cron": "* * * * * */20", "args": [1]})  # a sixth field: seconds
    assert seconds.slots(T0, T0 + MIN, limit=10) == [T0, T0 + 20 * SEC, T0 + 40 * SEC, T0 + MIN]


def test_cron_runs_in_its_time_zone() -> None:
    nightly = parse({"task": "tests.add", "cron": "0 3 * * *", "timezone": "Europe/Istanbul", "args": [1]})
    assert nightly.spec == "0 3 * * * (Europe/Istanbul)"
    # 03:00 in Istanbul (UTC+3, no DST) is midnight UTC.
    assert nightly.next_after(T0) == datetime(2026, 3, 3, 0, 0, tzinfo=UTC)
    assert nightly.latest_until(T0) == datetime(2026, 3, 2, 0, 0, tzinfo=UTC)


def test_cron_across_daylight_saving_changes() -> None:
    def new_york(cron: str) -> PeriodicSchedule:
        return parse({"task": "tests.add", "cron": cron, "timezone": "America/New_York", "args": [1]})

    # Spring forward (2026-03-08): 02:30 does not exist; it runs when the clock jumps to 03:00 EDT.
    spring = new_york("30 2 * * *")
    assert spring.next_after(datetime(2026, 3, 7, 12, tzinfo=UTC)) == datetime(2026, 3, 8, 7, 0, tzinfo=UTC)
    assert spring.next_after(datetime(2026, 3, 8, 7, tzinfo=UTC)) == datetime(2026, 3, 9, 6, 30, tzinfo=UTC)

    # Fall back (2026-11-01): 01:00-02:00 happens twice. A fixed time runs once, in the first pass...
    nightly = new_york("30 1 * * *")
    first = nightly.next_after(datetime(2026, 10, 31, 12, tzinfo=UTC))
    assert first == datetime(2026, 11, 1, 5, 30, tzinfo=UTC)  # 01:30 EDT
    assert nightly.next_after(first) == datetime(2026, 11, 2, 6, 30, tzinfo=UTC)  # not 01:30 EST
    assert nightly.latest_until(datetime(2026, 11, 1, 7, tzinfo=UTC)) == first
    # ...while a job that runs every half hour keeps running through both passes.
    halves = new_york("*/30 * * * *")
    start = datetime(2026, 11, 1, 4, 50, tzinfo=UTC)
    assert halves.slots(halves.next_after(start), datetime(2026, 11, 1, 7, tzinfo=UTC), limit=10) == [
        datetime(2026, 11, 1, 5, 0, tzinfo=UTC),
        datetime(2026, 11, 1, 5, 30, tzinfo=UTC),
        datetime(2026, 11, 1, 6, 0, tzinfo=UTC),
        datetime(2026, 11, 1, 6, 30, tzinfo=UTC),
        datetime(2026, 11, 1, 7, 0, tzinfo=UTC),
    ]


# -- sending --------------------------------------------------------------------------------


def test_first_run_starts_from_now_and_each_slot_is_sent_once(settings: Any) -> None:
    declare(settings, tick={"task": "tests.add", "every": timedelta(minutes=5), "args": [1, 2]})
    assert run_due_schedules(T0 + 90 * SEC) == 0  # no backfill: T0 is history
    created = row("tick")
    assert (created.task_name, created.spec, created.paused) == ("tests.add", "every 5m", False)
    assert (created.last_slot_at, created.next_run_at) == (None, T0 + 5 * MIN)
    assert run_due_schedules(T0 + 4 * MIN) == 0

    assert run_due_schedules(T0 + 5 * MIN + 2 * SEC) == 1
    assert run_due_schedules(T0 + 5 * MIN + 3 * SEC) == 0
    sent = row("tick")
    assert sent.last_slot_at == T0 + 5 * MIN
    assert sent.last_run_at == T0 + 5 * MIN + 2 * SEC
    assert sent.next_run_at == T0 + 10 * MIN
    task = Task.objects.get()
    assert (task.name, task.arguments, task.id) == ("tests.add", {"a": 1, "b": 2}, sent.last_task_id)
    # A unique row per schedule and slot: the slot's key, under the task table's unique index.
    assert task.idempotency_key == "schedule:tick:" + (T0 + 5 * MIN).isoformat()


def test_a_slot_sent_twice_past_the_compare_and_set_is_still_one_task(settings: Any) -> None:
    declare(settings, tick={"task": "tests.add", "every": timedelta(minutes=5), "args": [1, 2]})
    run_due_schedules(T0 + 90 * SEC)
    assert run_due_schedules(T0 + 5 * MIN + 2 * SEC) == 1
    # Wind the row back, as a lost race or a restored backup might, and send the slot again.
    Schedule.objects.filter(name="tick").update(last_slot_at=None, next_run_at=T0 + 5 * MIN)
    assert run_due_schedules(T0 + 5 * MIN + 3 * SEC) == 1
    assert Task.objects.count() == 1


def test_the_task_is_told_its_slot_unless_the_schedule_sets_it(settings: Any) -> None:
    declare(
        settings,
        told={"task": "tests.scheduled_probe", "cron": "*/5 * * * *", "kwargs": {"label": "a"}},
        fixed={"task": "tests.scheduled_probe", "cron": "*/5 * * * *", "args": ["2000-01-01T00:00:00Z", "b"]},
    )
    run_due_schedules(T0 - MIN)
    assert run_due_schedules(T0) == 2
    arguments = {t["label"]: t for t in Task.objects.values_list("arguments", flat=True)}
    assert arguments == {
        "a": {"scheduled_at": "2026-03-02T10:00:00Z", "label": "a"},
        "b": {"scheduled_at": "2000-01-01T00:00:00Z", "label": "b"},
    }


FIVE_MINUTES = {"task": "tests.scheduled_probe", "every": timedelta(minutes=5)}


@pytest.mark.parametrize(
    ("mode", "back_at", "expected"),
    [
        # Back 2.5 minutes after the 11:00 slot: too late for "none".
        ("none", T0 + 62 * MIN + 30 * SEC, []),
        # Back 30 seconds after it: still on time, so "none" sends it.
        ("none", T0 + 60 * MIN + 30 * SEC, [T0 + 60 * MIN]),
        ("latest", T0 + 62 * MIN + 30 * SEC, [T0 + 60 * MIN]),
        ("all", T0 + 62 * MIN + 30 * SEC, [T0 + k * 5 * MIN for k in range(1, 13)]),
    ],
)
def test_catch_up_after_an_hour_down(settings: Any, mode: str, back_at: datetime, expected: list[datetime]) -> None:
    declare(settings, probe={**FIVE_MINUTES, "catch_up": mode})
    run_due_schedules(T0 - MIN)
    assert run_due_schedules(T0 + 10 * SEC) == 1
    # Every worker is down from 10:00:10 until `back_at`: slots 10:05 ... 11:00 are missed.
    assert run_due_schedules(back_at) == len(expected)
    assert probe_slots() == [T0, *expected]
    after = row("probe")
    assert after.next_run_at == T0 + 65 * MIN
    assert after.last_slot_at == (expected[-1] if expected else T0)
    assert run_due_schedules(back_at + SEC) == 0


def test_catch_up_all_sends_at_most_100_slots_per_tick(settings: Any) -> None:
    declare(settings, fast={"task": "tests.add", "every": 1, "args": [1], "catch_up": "all"})
    run_due_schedules(T0 - SEC / 2)
    assert run_due_schedules(T0 + 60 * MIN) == 100
    assert row("fast").next_run_at == T0 + 100 * SEC
    assert run_due_schedules(T0 + 60 * MIN) == 100
    assert row("fast").last_slot_at == T0 + 199 * SEC
    assert Task.objects.count() == 200


def test_paused_schedules_send_nothing_and_resume_from_their_next_slot(settings: Any) -> None:
    declare(settings, probe={**FIVE_MINUTES, "catch_up": "all"})
    run_due_schedules(T0 - MIN)
    assert run_due_schedules(T0) == 1
    assert pause(["probe", "unknown"]) == ["probe"]
    assert pause(["probe"]) == []
    assert run_due_schedules(T0 + 30 * MIN) == 0
    assert row("probe").last_slot_at == T0

    assert resume(["probe"], now=T0 + 31 * MIN) == ["probe"]
    assert row("probe").next_run_at == T0 + 35 * MIN  # the slots missed while paused are skipped
    assert run_due_schedules(T0 + 36 * MIN) == 1
    assert probe_slots() == [T0, T0 + 35 * MIN]


def test_a_failed_send_is_rolled_back_and_the_slot_stays_due(settings: Any, caplog: Any) -> None:
    declare(settings, tick={"task": "tests.add", "every": 300, "args": [1, 2]})
    run_due_schedules(T0 - MIN)
    settings.HORSIES = {**settings.HORSIES, "MAX_PAYLOAD_BYTES": 5}
    assert run_due_schedules(T0 + SEC) == 0
    assert "PAYLOAD_TOO_LARGE" in caplog.text
    unchanged = row("tick")
    assert (unchanged.last_slot_at, unchanged.last_run_at, unchanged.next_run_at) == (None, None, T0)
    assert not Task.objects.exists()

    settings.HORSIES = {key: value for key, value in settings.HORSIES.items() if key != "MAX_PAYLOAD_BYTES"}
    assert run_due_schedules(T0 + 2 * SEC) == 1
    assert row("tick").last_slot_at == T0


def test_an_invalid_schedule_is_logged_once_and_skipped(settings: Any, caplog: Any) -> None:
    declare(
        settings,
        good={"task": "tests.add", "every": 60, "args": [1]},
        bad={"task": "tests.does_not_exist", "every": 60},
    )
    run_due_schedules(T0 - MIN)
    assert run_due_schedules(T0) == 1
    assert [r.name for r in Schedule.objects.all()] == ["good"]
    logged = [r for r in caplog.records if "tests.does_not_exist" in r.getMessage()]
    assert len(logged) == 1 and logged[0].levelname == "ERROR" and "E021" in logged[0].getMessage()


def test_changing_removing_and_restoring_a_schedule(settings: Any) -> None:
    declare(settings, s={"task": "tests.add", "every": 300, "args": [1]})
    run_due_schedules(T0 - MIN)
    assert run_due_schedules(T0) == 1

    # A new spec starts over from now; what was sent stays recorded.
    declare(settings, s={"task": "tests.user_error", "cron": "0 * * * *", "args": ["X"]})
    assert run_due_schedules(T0 + 7 * MIN) == 0
    changed = row("s")
    assert (changed.spec, changed.task_name) == ("0 * * * *", "tests.user_error")
    assert (changed.last_slot_at, changed.next_run_at) == (T0, T0 + 60 * MIN)

    # Removed from the settings: the row stays, paused, with no next run; nothing is sent.
    pause(["s"])
    declare(settings)
    assert run_due_schedules(T0 + 2 * 60 * MIN) == 0
    removed = row("s")
    assert (removed.paused, removed.next_run_at) == (True, None)

    # Declared again: still paused, as the operator left it.
    declare(settings, s={"task": "tests.user_error", "cron": "0 * * * *", "args": ["X"]})
    assert run_due_schedules(T0 + 3 * 60 * MIN) == 0
    back = row("s")
    assert (back.paused, back.next_run_at, back.last_slot_at) == (True, T0 + 4 * 60 * MIN, T0)


def test_decorator_form() -> None:
    other = Horsies()

    @other.periodic(cron="*/5 * * * *", kwargs={"label": "decorated"}, catch_up="all")
    @other.task("tests.other_probe")
    def other_probe(scheduled_at: datetime, label: str = "") -> TaskResult[str, TaskError]:
        return TaskResult(ok=label)

    schedules, errors = declared_schedules(other, T0)
    assert errors == [] and list(schedules) == ["tests.other_probe"]  # named after its task
    assert schedules["tests.other_probe"].catch_up == "all"
    run_due_schedules(T0 - MIN, app=other)
    assert run_due_schedules(T0 + 6 * MIN, app=other) == 2
    assert sorted(Task.objects.filter(name="tests.other_probe").values_list("arguments", flat=True), key=str) == [
        {"scheduled_at": "2026-03-02T10:00:00Z", "label": "decorated"},
        {"scheduled_at": "2026-03-02T10:05:00Z", "label": "decorated"},
    ]


# -- exactly once ---------------------------------------------------------------------------


def test_schedulers_racing_for_the_same_slot_send_it_once(settings: Any) -> None:
    """Four threads (four connections) run the scheduler at the same instant for 20 slots in a row."""
    declare(settings, race={"task": "tests.scheduled_probe", "every": 60, "kwargs": {"label": "race"}})
    run_due_schedules(T0 - SEC)
    barrier = threading.Barrier(4)
    sent: list[int] = []

    def scheduler() -> None:
        try:
            for k in range(20):
                barrier.wait(timeout=30)
                sent.append(run_due_schedules(T0 + k * MIN + SEC))
        finally:
            connections.close_all()

    threads = [threading.Thread(target=scheduler) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert len(sent) == 80 and sum(sent) == 20
    assert probe_slots() == [T0 + k * MIN for k in range(20)]


@pytest.mark.soak
def test_each_slot_is_sent_once_with_three_workers_running_the_scheduler(monkeypatch: pytest.MonkeyPatch) -> None:
    schedules = {
        "probe-every": {"task": "tests.scheduled_probe", "every": 1, "kwargs": {"label": "every"}, "catch_up": "all"},
        "probe-cron": {
            "task": "tests.scheduled_probe",
            "cron": "* * * * * *",  # every second (the sixth field)
            "kwargs": {"label": "cron"},
            "catch_up": "all",
        },
    }
    monkeypatch.setenv("HORSIES_TEST_SCHEDULES", json.dumps(schedules))
    workers = [start_worker("--pool", "threads", "--concurrency", "2") for _ in range(3)]
    logs: list[str] = []
    try:
        deadline = time.monotonic() + 60
        while WorkerProcess.objects.filter(stopped_at__isnull=True).count() < 3:
            assert time.monotonic() < deadline, "the workers did not start"
            assert all(w.poll() is None for w in workers), "a worker exited"
            time.sleep(0.1)
        started = len(probe_slots())
        while len(probe_slots("every")) < 6 + started or len(probe_slots("cron")) < 6 + started:
            assert time.monotonic() < deadline, f"too few slots sent: {Counter(map(str, probe_slots()))}"
            time.sleep(0.2)
    finally:
        for worker in workers:
            worker.send_signal(signal.SIGTERM)
        for worker in workers:
            logs.append(worker.communicate(timeout=60)[1])
    assert [w.returncode for w in workers] == [0, 0, 0], logs

    for name, label in (("probe-every", "every"), ("probe-cron", "cron")):
        slots = probe_slots(label)
        assert len(slots) == len(set(slots)), f"{label}: a slot was sent twice: {Counter(slots).most_common(3)}"
        # catch_up="all": no slot is skipped either, so the slots are consecutive seconds.
        assert [b - a for a, b in zip(slots, slots[1:], strict=False)] == [SEC] * (len(slots) - 1), slots
        schedule = row(name)
        assert schedule.last_slot_at == slots[-1] and schedule.last_task_id is not None
        last_task = Task.objects.get(pk=schedule.last_task_id)
        assert last_task.arguments["scheduled_at"] == slots[-1].strftime("%Y-%m-%dT%H:%M:%SZ")
    # The workers' logs name each slot once between them, and every task sent.
    sent = re.findall(r"schedule sent name=(\S+) slot=(\S+) task_id=(\S+)", "".join(logs))
    assert len(sent) == len({(name, slot) for name, slot, _ in sent}) == Task.objects.count()
    assert {task_id for *_, task_id in sent} == {str(pk) for pk in Task.objects.values_list("pk", flat=True)}


def _start_scheduling_workers(count: int) -> list[Any]:
    workers = [start_worker("--pool", "threads", "--concurrency", "2") for _ in range(count)]
    deadline = time.monotonic() + 60
    while WorkerProcess.objects.filter(stopped_at__isnull=True).count() < count:
        assert time.monotonic() < deadline, "the workers did not start"
        assert all(w.poll() is None for w in workers), "a worker exited"
        time.sleep(0.1)
    return workers


def _stop(workers: list[Any]) -> list[str]:
    for worker in workers:
        worker.send_signal(signal.SIGTERM)
    logs = [worker.communicate(timeout=60)[1] for worker in workers]
    assert [w.returncode for w in workers] == [0] * len(workers), logs
    return logs


@pytest.mark.soak
def test_workers_sleep_until_the_next_slot_not_until_their_heartbeat(monkeypatch: pytest.MonkeyPatch) -> None:
    """Three workers with a 10 s heartbeat run an every-second schedule: one task a second, each
    slot once, each sent soon after its time. (Woken only at heartbeats, the slots would be sent
    seconds late, and most would be skipped under catch_up="latest".)"""
    schedules = {"punctual": {"task": "tests.scheduled_probe", "every": 1, "kwargs": {"label": "punctual"}}}
    monkeypatch.setenv("HORSIES_TEST_SCHEDULES", json.dumps(schedules))
    monkeypatch.setenv("HORSIES_TEST_HEARTBEAT_S", "10")
    monkeypatch.setenv("HORSIES_TEST_LEASE_S", "30")
    workers = _start_scheduling_workers(3)
    try:
        started = len(probe_slots())
        deadline = time.monotonic() + 60
        while len(probe_slots()) < started + 8:
            assert time.monotonic() < deadline, f"too few slots sent: {probe_slots()}"
            assert all(w.poll() is None for w in workers), "a worker exited"
            time.sleep(0.2)
    finally:
        _stop(workers)
    tasks = Task.objects.filter(name="tests.scheduled_probe")
    slots = probe_slots()
    assert len(slots) == len(set(slots)) == tasks.count(), f"a slot was sent twice: {Counter(slots).most_common(3)}"
    steps = [b - a for a, b in zip(slots, slots[1:], strict=False)]
    # One a second: nearly every step is one second (a slot may be skipped if a loaded machine
    # stalls a worker past the next slot; catch_up="latest" then sends only the newest one).
    assert steps.count(SEC) >= len(steps) // 2, steps
    late = sorted(
        (task.enqueued_at - datetime.fromisoformat(task.arguments["scheduled_at"])).total_seconds() for task in tasks
    )
    assert all(delay >= 0 for delay in late), late  # never before its slot
    assert late[len(late) // 2] < 1.0, late  # a heartbeat is 10 s


def test_resuming_a_schedule_wakes_the_workers(monkeypatch: pytest.MonkeyPatch) -> None:
    """A worker whose only schedule is paused sleeps a whole heartbeat. Resuming wakes it: on
    PostgreSQL with a NOTIFY, at once; on SQLite, which has none, at its next heartbeat."""
    postgres = connections["default"].vendor == "postgresql"
    heartbeat = 30 if postgres else 2
    schedules = {"wake": {"task": "tests.scheduled_probe", "every": 1, "kwargs": {"label": "wake"}}}
    monkeypatch.setenv("HORSIES_TEST_SCHEDULES", json.dumps(schedules))
    monkeypatch.setenv("HORSIES_TEST_HEARTBEAT_S", str(heartbeat))
    monkeypatch.setenv("HORSIES_TEST_LEASE_S", str(heartbeat * 3))
    workers = _start_scheduling_workers(1)
    try:
        deadline = time.monotonic() + 60
        while not probe_slots():
            assert time.monotonic() < deadline, "the schedule sent nothing"
            time.sleep(0.1)
        assert pause(["wake"]) == ["wake"]
        time.sleep(1.5)  # a slot the worker meant to send comes and goes while paused
        before = Task.objects.count()
        time.sleep(1.5)
        assert Task.objects.count() == before  # paused: nothing more is sent
        resumed_at = timezone.now()
        assert resume(["wake"]) == ["wake"]
        deadline = time.monotonic() + 60
        while not Task.objects.filter(enqueued_at__gt=resumed_at).exists():
            assert time.monotonic() < deadline, "nothing was sent after resuming"
            time.sleep(0.05)
        woken_after = Task.objects.filter(enqueued_at__gt=resumed_at).earliest("enqueued_at").enqueued_at - resumed_at
    finally:
        _stop(workers)
    # Without a wakeup the worker would sleep out its heartbeat (30 s) on PostgreSQL.
    assert woken_after < timedelta(seconds=10 if postgres else heartbeat + 10), woken_after


# -- system checks --------------------------------------------------------------------------


def schedule_name(message: str) -> str:
    match = re.match(r"HORSIES\['SCHEDULES'\]\['([^']+)'\]", message)
    assert match, message
    return match.group(1)


def test_each_bad_schedule_is_a_system_check_error_with_a_hint(settings: Any) -> None:
    declare(
        settings,
        **{
            "unknown-task": {"task": "tests.does_not_exist", "every": 60},
            "no-task": {"every": 60},
            "both": {"task": "tests.add", "cron": "* * * * *", "every": 60, "args": [1]},
            "neither": {"task": "tests.add", "args": [1]},
            "bad-cron": {"task": "tests.add", "cron": "61 * * * *", "args": [1]},
            "never": {"task": "tests.add", "cron": "0 0 30 2 *", "args": [1]},
            "bad-every": {"task": "tests.add", "every": 0, "args": [1]},
            "every-as-text": {"task": "tests.add", "every": "5m", "args": [1]},
            "bad-zone": {"task": "tests.add", "cron": "0 3 * * *", "timezone": "Europe/Atlantis", "args": [1]},
            "zone-with-every": {"task": "tests.add", "every": 60, "timezone": "Europe/Istanbul", "args": [1]},
            "bad-catch-up": {"task": "tests.add", "every": 60, "catch_up": "some", "args": [1]},
            "not-json": {"task": "tests.scheduled_probe", "every": 60, "kwargs": {"label": object()}},
            "wrong-args": {"task": "tests.add", "every": 60, "args": [1, 2, 3]},
            "args-not-a-list": {"task": "tests.add", "every": 60, "args": 1},
            "typo": {"task": "tests.add", "every": 60, "args": [1], "catchup": "all"},
            "not-a-dict": "tests.add",
            "fine": {"task": "tests.add", "every": 60, "args": [1, 2]},
        },
    )
    errors = check_schedules()
    found = {schedule_name(e.msg): str(e.id) for e in errors}
    assert found == {
        "unknown-task": "horsies_django.E021",
        "no-task": "horsies_django.E021",
        "both": "horsies_django.E022",
        "neither": "horsies_django.E022",
        "bad-cron": "horsies_django.E023",
        "never": "horsies_django.E023",
        "bad-every": "horsies_django.E024",
        "every-as-text": "horsies_django.E024",
        "bad-zone": "horsies_django.E025",
        "zone-with-every": "horsies_django.E025",
        "bad-catch-up": "horsies_django.E026",
        "not-json": "horsies_django.E027",
        "wrong-args": "horsies_django.E027",
        "args-not-a-list": "horsies_django.E027",
        "typo": "horsies_django.E020",
        "not-a-dict": "horsies_django.E020",
    }
    assert all(e.hint and e.is_serious() for e in errors)
    # Registered with Django: `manage.py check` reports the same errors.
    reported = [str(e.id) for e in run_checks(tags=[Tags.compatibility]) if str(e.id).startswith("horsies_django.E02")]
    assert sorted(reported) == sorted(found.values())


def test_check_messages_say_what_to_do(settings: Any) -> None:
    declare(settings, nightly={"task": "send_report", "cron": "0 3 * * *"})
    [error] = check_schedules()
    assert error.msg == "HORSIES['SCHEDULES']['nightly']: 'task' must name a registered task, got 'send_report'"
    assert error.hint is not None and "tests.add" in error.hint

    settings.HORSIES = {**settings.HORSIES, "SCHEDULES": [{"task": "tests.add"}]}
    [error] = check_schedules()
    assert (error.id, error.msg) == ("horsies_django.E020", "HORSIES['SCHEDULES'] must be a dict of schedules by name")


def test_a_name_in_both_the_settings_and_a_decorator_is_an_error(settings: Any) -> None:
    other = Horsies()
    other.periodic(every=timedelta(minutes=1), name="twice")(other.task("tests.twice", add.fn))
    declare(settings, twice={"task": "tests.twice", "every": 60, "args": [1]})
    schedules, errors = declared_schedules(other, T0)
    assert list(schedules) == ["twice"] and schedules["twice"].args == (1,)  # the settings' one runs
    assert [e.check_id for e in errors] == ["horsies_django.E028"]
    assert "@app.periodic(name='twice')" in str(errors[0])


def test_no_schedules_no_checks_no_rows() -> None:
    assert check_schedules() == []
    assert run_due_schedules(timezone.now()) == 0
    assert not Schedule.objects.exists()


# -- the admin ------------------------------------------------------------------------------


@pytest.fixture
def login() -> Callable[..., Client]:
    def log_in(*perms: str) -> Client:
        user = User.objects.create_user(f"user{User.objects.count()}", password="pw", is_staff=True)
        for codename in perms:
            permission = Permission.objects.get(codename=codename, content_type__app_label="horsies_django")
            user.user_permissions.add(permission)
        client = Client()
        client.force_login(user)
        return client

    return log_in


def act(client: Client, action: str, *names: str, confirm: bool) -> Any:
    data: dict[str, Any] = {"action": action, "_selected_action": list(names)}
    data.update({"post": "yes"} if confirm else {"index": "0"})
    return client.post(reverse(CHANGELIST), data, follow=confirm)


def test_admin_lists_schedules_and_pauses_and_resumes_them_after_confirmation(
    settings: Any, login: Callable[..., Client]
) -> None:
    declare(
        settings,
        nightly={"task": "tests.add", "cron": "0 3 * * *", "timezone": "Europe/Istanbul", "args": [1, 2]},
        often={"task": "tests.add", "every": 60, "args": [1]},
    )
    now = timezone.now()
    run_due_schedules(now - 2 * MIN)
    assert run_due_schedules(now) == 1  # "often"
    Schedule.objects.create(name="retired", task_name="tests.gone", spec="every 1m")
    operator = login("view_schedule", "operate_task")

    page = operator.get(reverse(CHANGELIST)).content.decode()
    for text in ("nightly", "0 3 * * * (Europe/Istanbul)", "every 1m", "retired", "hz-badge--alive", "inactive"):
        assert text in page
    task_url = reverse("admin:horsies_django_task_change", args=[row("often").last_task_id])
    assert task_url in page
    assert 'value="pause_schedules"' in page and 'value="resume_schedules"' in page
    assert 'value="delete_selected"' not in page

    confirm = act(operator, "pause_schedules", "nightly", confirm=False)
    assert confirm.status_code == 200
    assert "Pause schedules" in confirm.content.decode() and "Yes, pause" in confirm.content.decode()
    assert not row("nightly").paused  # nothing changes before the confirmation

    done = act(operator, "pause_schedules", "nightly", confirm=True)
    assert [str(m) for m in done.context["messages"]] == ["1 schedule paused."]
    assert row("nightly").paused and not row("often").paused
    assert "paused" in operator.get(reverse(CHANGELIST)).content.decode()
    paused_only = operator.get(reverse(CHANGELIST) + "?paused__exact=1").content.decode()
    assert "nightly" in paused_only and "often" not in paused_only

    nightly = row("nightly")
    nightly.next_run_at = None
    nightly.save()
    done = act(operator, "resume_schedules", "nightly", "often", confirm=True)
    assert [str(m) for m in done.context["messages"]] == ["1 schedule resumed."]
    resumed = row("nightly")
    assert not resumed.paused and resumed.next_run_at is not None and resumed.next_run_at > now
    assert resumed.next_run_at.astimezone(UTC).hour == 0  # 03:00 in Istanbul

    detail = operator.get(reverse("admin:horsies_django_schedule_change", args=["nightly"])).content.decode()
    assert "Europe/Istanbul" in detail and "catch_up" in detail


def test_admin_schedules_are_read_only_and_pausing_needs_the_permission(
    settings: Any, login: Callable[..., Client]
) -> None:
    declare(settings, often={"task": "tests.add", "every": 60, "args": [1]})
    run_due_schedules(timezone.now())
    viewer = login("view_schedule")
    page = viewer.get(reverse(CHANGELIST)).content.decode()
    assert "often" in page and "pause_schedules" not in page
    act(viewer, "pause_schedules", "often", confirm=True)
    assert not row("often").paused
    assert viewer.get(reverse("admin:horsies_django_schedule_add")).status_code == 403
    assert viewer.get(reverse("admin:horsies_django_schedule_delete", args=["often"])).status_code == 403
    detail = viewer.get(reverse("admin:horsies_django_schedule_change", args=["often"]))
    assert detail.status_code == 200 and 'name="_save"' not in detail.content.decode()
    assert login().get(reverse(CHANGELIST)).status_code == 403
