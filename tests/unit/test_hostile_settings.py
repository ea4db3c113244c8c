"""Hostile `HORSIES` values: each is a system check error with an id and a hint, never a traceback,
never a value that passes `manage.py check` and breaks at run time (a datetime overflow, a row the
database refuses). Table-driven; no database."""

from __future__ import annotations

import re
import subprocess
import sys
from datetime import timedelta
from typing import Any

import pytest
from django.core.checks import Error, Tags, run_checks
from django.test import override_settings

from horsies_django.conf import SettingsError, parse
from tests.conftest import ROOT

NAN, INF = float("nan"), float("inf")
HUGE_INT = 10**400  # math.isfinite() and float() raise OverflowError on it


class Unprintable:
    def __repr__(self) -> str:
        raise RuntimeError("no repr")

    __str__ = __repr__


HOSTILE_NUMBERS: list[Any] = [
    -1, NAN, INF, -INF, 1e12, 1e300, HUGE_INT, -HUGE_INT, "5", None, True, [1], {}, Unprintable(), "\x00", "\ud800",
]  # fmt: skip

NOT_NONE = [v for v in HOSTILE_NUMBERS if v is not None]  # where None means "the default"

# (key path, values refused). Every number of the settings is here with its bounds.
NUMBERS: list[tuple[str, tuple[str, ...], list[Any]]] = [
    ("concurrency", ("WORKER", "concurrency"), [0, 2.5, 10_000, *HOSTILE_NUMBERS]),
    ("heartbeat_s", ("WORKER", "heartbeat_s"), [0, 7200, *HOSTILE_NUMBERS]),
    ("lease_s", ("WORKER", "lease_s"), [0, 86_401, *HOSTILE_NUMBERS]),
    ("max_crash_reruns", ("WORKER", "max_crash_reruns"), [0.5, 1_000_001, *HOSTILE_NUMBERS]),
    ("poll_interval_s", ("WORKER", "poll_interval_s"), [0, 3601, *NOT_NONE]),
    ("MAX_PAYLOAD_BYTES", ("MAX_PAYLOAD_BYTES",), [0, 2**40, 1.5, *HOSTILE_NUMBERS]),
    ("completed_days", ("RETENTION", "completed_days"), [1_000_000, *HOSTILE_NUMBERS]),
    ("failed_days", ("RETENTION", "failed_days"), [1_000_000, *HOSTILE_NUMBERS]),
    ("IDEMPOTENCY_WINDOW_S", ("IDEMPOTENCY_WINDOW_S",), [1e12, *HOSTILE_NUMBERS]),
    ("CLUSTER_MAX_CONCURRENCY", ("CLUSTER_MAX_CONCURRENCY",), [2**31, 1.0, *NOT_NONE]),
    ("queue priority", ("QUEUES", "q", "priority"), [0, 1001, 2.0, *HOSTILE_NUMBERS]),
    ("queue max_concurrency", ("QUEUES", "q", "max_concurrency"), [2**31, *NOT_NONE]),
]  # fmt: skip

# The heartbeat a lease must outlast twice; set beside lease_s so that E003 (not E006) is what fails.
LEASE_COMPANIONS = {"lease_s": {"heartbeat_s": 0.01}, "heartbeat_s": {"lease_s": 86_400}}


def nest(path: tuple[str, ...], value: Any) -> dict[str, Any]:
    raw: dict[str, Any] = {}
    node = raw
    for key in path[:-1]:
        node = node.setdefault(key, {})
    node[path[-1]] = value
    if path[0] == "WORKER":
        raw["WORKER"].update({k: v for k, v in LEASE_COMPANIONS.get(path[-1], {}).items() if k != path[-1]})
    return raw


NUMBER_CASES = [
    pytest.param(nest(path, value), id=f"{name}={type(value).__name__}:{i}")
    for name, path, values in NUMBERS
    for i, value in enumerate(values)
]

RAISES_AT_IMPORT = "tests.hostile.raises_at_import.Declined"
OTHER_CASES = [
    pytest.param(["x"], "E001", id="horsies-list"),
    pytest.param({1: 2, "x": 3}, "E002", id="unknown-keys-of-mixed-types"),
    pytest.param({"DATABASE": ["x"]}, "E007", id="database-list"),
    pytest.param({"DATABASE": {"x": 1}}, "E007", id="database-dict"),
    pytest.param({"DATABASE": "\x00"}, "E007", id="database-nul"),
    pytest.param({"DATABASE": Unprintable()}, "E007", id="database-unprintable"),
    pytest.param({"QUEUES": {"q" * 101: {}}}, "E004", id="queue-name-too-long"),
    pytest.param({"QUEUES": {"q\x00": {}}}, "E004", id="queue-name-nul"),
    pytest.param({"QUEUES": {"\ud800": {}}}, "E004", id="queue-name-surrogate"),
    pytest.param({"QUEUES": {1: {}}}, "E004", id="queue-name-int"),
    pytest.param({"QUEUES": {"q": {1: 2, "x": 3}}}, "E002", id="queue-options-mixed-keys"),
    pytest.param({"WORKER": {1: 2, "x": 3}}, "E002", id="worker-mixed-keys"),
    pytest.param({"RETENTION": Unprintable()}, "E010", id="retention-unprintable"),
    pytest.param({"POLL_ONLY": Unprintable()}, "E009", id="poll-only-unprintable"),
    pytest.param({"EXCEPTION_MAPPER": {RAISES_AT_IMPORT: "DECLINED"}}, "E008", id="mapper-module-raises"),
    pytest.param({"EXCEPTION_MAPPER": {"no.such.module.Error": "X"}}, "E008", id="mapper-missing-module"),
    pytest.param({"EXCEPTION_MAPPER": {"\x00": "X"}}, "E008", id="mapper-path-nul"),
    pytest.param({"EXCEPTION_MAPPER": {"builtins.ValueError": "C" * 101}}, "E008", id="mapper-code-too-long"),
    pytest.param({"EXCEPTION_MAPPER": {"builtins.ValueError": "C\x00"}}, "E008", id="mapper-code-nul"),
    pytest.param({"EXCEPTION_MAPPER": {"builtins.ValueError": "\ud800"}}, "E008", id="mapper-code-surrogate"),
    pytest.param({"EXCEPTION_MAPPER": {Unprintable(): "X"}}, "E008", id="mapper-unprintable-key"),
    pytest.param({"EXCEPTION_MAPPER": {"builtins.len": "X"}}, "E008", id="mapper-not-an-exception"),
]  # fmt: skip


@pytest.mark.parametrize("raw", NUMBER_CASES)
def test_out_of_range_number_is_e003(raw: dict[str, Any]) -> None:
    with pytest.raises(SettingsError) as info:
        parse(raw)
    assert info.value.check_id == "horsies_django.E003", str(info.value)
    assert info.value.hint


@pytest.mark.parametrize(("raw", "check_id"), OTHER_CASES)
def test_hostile_value_is_a_settings_error(raw: Any, check_id: str) -> None:
    with pytest.raises(SettingsError) as info:
        parse(raw)
    assert info.value.check_id == f"horsies_django.{check_id}", str(info.value)
    assert len(str(info.value)) < 400  # shown values are shortened


@pytest.mark.parametrize(
    ("raw", "check_id"),
    [*[pytest.param(p.values[0], "E003", id=p.id) for p in NUMBER_CASES[::5]], *OTHER_CASES],
)
def test_system_check_reports_it(raw: Any, check_id: str) -> None:
    with override_settings(HORSIES=raw):
        messages = run_checks(tags=[Tags.compatibility])
    assert [(type(m), m.id) for m in messages] == [(Error, f"horsies_django.{check_id}")]


@pytest.mark.parametrize(
    "raw",
    [
        {"WORKER": {"concurrency": 1024, "heartbeat_s": 3600, "lease_s": 86_400, "max_crash_reruns": 1000}},
        {"RETENTION": {"completed_days": 36_500, "failed_days": 0}, "IDEMPOTENCY_WINDOW_S": 3650 * 86_400},
        {"MAX_PAYLOAD_BYTES": 256 * 1024 * 1024, "CLUSTER_MAX_CONCURRENCY": 1_000_000},
        {"QUEUES": {"q" * 100: {"priority": 1000, "max_concurrency": 1_000_000}}},
    ],
    ids=["worker-max", "retention-max", "payload-max", "queue-max"],
)
def test_the_bounds_themselves_are_accepted(raw: dict[str, Any]) -> None:
    parse(raw)


SCHEDULE_CASES = [
    pytest.param({"every": 1e300}, "E024", id="every-1e300"),
    pytest.param({"every": HUGE_INT}, "E024", id="every-huge-int"),
    pytest.param({"every": NAN}, "E024", id="every-nan"),
    pytest.param({"every": INF}, "E024", id="every-inf"),
    pytest.param({"every": timedelta(days=367)}, "E024", id="every-367-days"),
    pytest.param({"every": timedelta.max}, "E024", id="every-timedelta-max"),
    pytest.param({"every": 0.5}, "E024", id="every-half-second"),
    pytest.param({"every": Unprintable()}, "E024", id="every-unprintable"),
    pytest.param({"every": 60, "catch_up": ["all"]}, "E026", id="catch-up-list"),
    pytest.param({"cron": "\x00"}, "E023", id="cron-nul"),
    pytest.param({"every": 60, "timezone": "\x00"}, "E025", id="timezone-nul"),
    pytest.param({"every": 60, "timezone": "\ud800"}, "E025", id="timezone-surrogate"),
]


@pytest.mark.parametrize(("entry", "check_id"), SCHEDULE_CASES)
def test_hostile_schedule_is_a_check_error(entry: dict[str, Any], check_id: str) -> None:
    with override_settings(HORSIES={"SCHEDULES": {"s": {"task": "tests.add", "args": [1, 2], **entry}}}):
        messages = run_checks(tags=[Tags.compatibility])
    assert [m.id for m in messages] == [f"horsies_django.{check_id}"], messages


@pytest.mark.parametrize(
    "name", ["", "n" * 201, "a\x00b", "\ud800", 7], ids=["empty", "long", "nul", "surrogate", "int"]
)
def test_hostile_schedule_name_is_e020(name: Any) -> None:
    with override_settings(HORSIES={"SCHEDULES": {name: {"task": "tests.add", "every": 60, "args": [1, 2]}}}):
        messages = run_checks(tags=[Tags.compatibility])
    assert [m.id for m in messages] == ["horsies_django.E020"]


def test_unlisted_queue_is_e011_with_file_and_line() -> None:
    with override_settings(HORSIES={"QUEUES": {"default": {}}}):
        messages = run_checks(tags=[Tags.compatibility])
    assert messages and {m.id for m in messages} == {"horsies_django.E011"}
    # Each names the task and where it is defined: .../tasks.py:<line>.
    assert all(re.search(r"tasks\.py:\d+: queue '", m.msg) for m in messages), [m.msg for m in messages]


@pytest.mark.parametrize(
    ("settings_module", "check_id"),
    [("tests.settings_unlisted_queue", "E011")],
)
def test_worker_does_not_start_with_a_check_error(settings_module: str, check_id: str) -> None:
    env = {"DJANGO_SETTINGS_MODULE": settings_module, "PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}
    proc = subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), "horsies_worker", "--burst"],
        env=env, cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode != 0
    assert f"horsies_django.{check_id}" in proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    assert re.search(r"tests/taskapp/tasks\.py:\d+", proc.stderr)
