"""settings.HORSIES parsing, the system check that reports it, and the settings cache. No database."""

from typing import Any

import pytest
from django.core.checks import Error, Tags, run_checks
from django.test import override_settings

from horsies_django.conf import (
    DEFAULT_PRIORITY,
    HorsiesSettings,
    QueueSettings,
    SettingsError,
    WorkerSettings,
    get_settings,
    parse,
)


@pytest.mark.parametrize("raw", [None, {}], ids=["none", "empty"])
def test_parse_defaults(raw: Any) -> None:
    parsed = parse(raw)
    assert parsed == HorsiesSettings()
    assert parsed.database == "default"
    assert parsed.queues == {}
    assert parsed.max_payload_bytes == 1_000_000
    assert parsed.worker == WorkerSettings(
        concurrency=4, heartbeat_s=10.0, lease_s=60.0, max_crash_reruns=3, poll_interval_s=None
    )
    assert parsed.poll_only is False
    assert parsed.queue_priority("anything") == DEFAULT_PRIORITY


def test_parse_full_settings() -> None:
    parsed = parse(
        {
            "DATABASE": "default",
            "QUEUES": {"urgent": {"priority": 1, "max_concurrency": 2}, "bulk": {}},
            "WORKER": {"concurrency": 8, "heartbeat_s": 1, "lease_s": 2, "max_crash_reruns": 0, "poll_interval_s": 0.1},
            "MAX_PAYLOAD_BYTES": 2048,
        }
    )
    assert parsed.queues == {
        "urgent": QueueSettings(priority=1, max_concurrency=2),
        "bulk": QueueSettings(priority=DEFAULT_PRIORITY, max_concurrency=None),
    }
    assert parsed.queue_priority("urgent") == 1
    assert parsed.queue_priority("bulk") == DEFAULT_PRIORITY
    assert parsed.worker == WorkerSettings(
        concurrency=8, heartbeat_s=1.0, lease_s=2.0, max_crash_reruns=0, poll_interval_s=0.1
    )
    assert isinstance(parsed.worker.heartbeat_s, float)
    assert parsed.max_payload_bytes == 2048


BAD = [
    ("not-a-dict", ["QUEUES"], "E001"),
    ("string", "HORSIES", "E001"),
    ("unknown-key", {"QUEUE": {}}, "E002"),
    ("unknown-worker-key", {"WORKER": {"concurency": 2}}, "E002"),
    ("concurrency-zero", {"WORKER": {"concurrency": 0}}, "E003"),
    ("concurrency-string", {"WORKER": {"concurrency": "4"}}, "E003"),
    ("concurrency-bool", {"WORKER": {"concurrency": True}}, "E003"),
    ("heartbeat-negative", {"WORKER": {"heartbeat_s": -1}}, "E003"),
    ("crash-reruns-negative", {"WORKER": {"max_crash_reruns": -1}}, "E003"),
    ("poll-zero", {"WORKER": {"poll_interval_s": 0}}, "E003"),
    ("poll-only-string", {"POLL_ONLY": "yes"}, "E009"),
    ("payload-zero", {"MAX_PAYLOAD_BYTES": 0}, "E003"),
    ("priority-zero", {"QUEUES": {"q": {"priority": 0}}}, "E003"),
    ("priority-too-big", {"QUEUES": {"q": {"priority": 5000}}}, "E003"),
    ("priority-fraction", {"QUEUES": {"q": {"priority": 2.7}}}, "E003"),
    ("queue-option-typo", {"QUEUES": {"q": {"priorty": 2}}}, "E002"),
    ("max-concurrency-negative", {"QUEUES": {"q": {"max_concurrency": -1}}}, "E003"),
    ("queues-list", {"QUEUES": ["q"]}, "E004"),
    ("queue-options-int", {"QUEUES": {"q": 5}}, "E004"),
    ("queue-name-empty", {"QUEUES": {"": {}}}, "E004"),
    ("worker-list", {"WORKER": [("concurrency", 2)]}, "E005"),
    ("lease-short", {"WORKER": {"heartbeat_s": 10, "lease_s": 19.9}}, "E006"),
    ("lease-short-default-heartbeat", {"WORKER": {"lease_s": 5}}, "E006"),
    ("unknown-database", {"DATABASE": "replica"}, "E007"),
    ("unknown-listen-database", {"LISTEN_DATABASE": "replica"}, "E007"),
    ("listen-database-list", {"LISTEN_DATABASE": ["default"]}, "E007"),
    ("listen-database-nan", {"LISTEN_DATABASE": float("nan")}, "E007"),
    ("listen-database-surrogate", {"LISTEN_DATABASE": "\ud800"}, "E007"),
    ("listen-database-nul", {"LISTEN_DATABASE": "default\x00"}, "E007"),
]


@pytest.mark.parametrize(("raw", "check_id"), [(raw, cid) for _, raw, cid in BAD], ids=[b[0] for b in BAD])
def test_bad_value_raises_settings_error(raw: Any, check_id: str) -> None:
    with pytest.raises(SettingsError) as info:
        parse(raw)
    assert info.value.check_id == f"horsies_django.{check_id}"
    assert str(info.value)
    assert info.value.hint


def test_messages_name_the_bad_key() -> None:
    with pytest.raises(SettingsError, match="concurency"):
        parse({"WORKER": {"concurency": 2}})
    with pytest.raises(SettingsError, match="heartbeat_s"):
        parse({"WORKER": {"heartbeat_s": "fast"}})
    with pytest.raises(SettingsError, match="replica"):
        parse({"DATABASE": "replica"})


def test_lease_exactly_twice_heartbeat_is_allowed() -> None:
    assert parse({"WORKER": {"heartbeat_s": 5, "lease_s": 10}}).worker.lease_s == 10.0


@pytest.mark.parametrize(("raw", "check_id"), [(raw, cid) for _, raw, cid in BAD], ids=[b[0] for b in BAD])
def test_system_check_reports_bad_setting(raw: Any, check_id: str) -> None:
    with override_settings(HORSIES=raw):
        messages = run_checks(tags=[Tags.compatibility])
    assert len(messages) == 1, messages
    (message,) = messages
    assert isinstance(message, Error)
    assert message.id == f"horsies_django.{check_id}"
    assert message.hint


@pytest.mark.parametrize(
    "raw",
    [
        None,
        {},
        # Every queue the installed apps' tasks use must be listed (else horsies_django.E011).
        {"QUEUES": {"default": {}, "standard": {}, "bulk": {}, "q": {"priority": 3}}, "WORKER": {"concurrency": 1}},
    ],
    ids=["none", "empty", "full"],
)
def test_system_check_is_silent_for_good_setting(raw: Any) -> None:
    with override_settings(HORSIES=raw):
        assert run_checks(tags=[Tags.compatibility]) == []


def test_get_settings_follows_override_settings() -> None:
    before = get_settings()
    assert get_settings() is before  # cached
    with override_settings(HORSIES={"MAX_PAYLOAD_BYTES": 123, "QUEUES": {"q": {"priority": 7}}}):
        inside = get_settings()
        assert inside.max_payload_bytes == 123
        assert inside.queue_priority("q") == 7
        with override_settings(HORSIES={"MAX_PAYLOAD_BYTES": 456}):
            assert get_settings().max_payload_bytes == 456
        assert get_settings().max_payload_bytes == 123
    assert get_settings() == before


def test_get_settings_raises_for_bad_setting() -> None:
    with override_settings(HORSIES={"WORKER": {"concurrency": 0}}):
        with pytest.raises(SettingsError):
            get_settings()
    get_settings()  # a good value again after the override ends


NAN, INF = float("nan"), float("inf")
NON_FINITE = [
    ("worker-concurrency-inf", {"WORKER": {"concurrency": INF}}),
    ("worker-heartbeat-nan", {"WORKER": {"heartbeat_s": NAN}}),
    ("payload-nan", {"MAX_PAYLOAD_BYTES": NAN}),
    ("queue-priority-nan", {"QUEUES": {"q": {"priority": NAN}}}),
]


@pytest.mark.parametrize("raw", [raw for _, raw in NON_FINITE], ids=[n for n, _ in NON_FINITE])
def test_non_finite_number_is_e003(raw: Any) -> None:
    # NaN is not ">= minimum", and infinity is not a whole number: both are bad numbers (E003),
    # never a silently accepted NaN or a bare OverflowError/ValueError out of parse().
    with pytest.raises(SettingsError) as info:
        parse(raw)
    assert info.value.check_id == "horsies_django.E003"


@pytest.mark.parametrize("raw", [raw for _, raw in NON_FINITE], ids=[n for n, _ in NON_FINITE])
def test_system_check_reports_non_finite_number_instead_of_crashing(raw: Any) -> None:
    with override_settings(HORSIES=raw):
        messages = run_checks(tags=[Tags.compatibility])
    assert [m.id for m in messages] == ["horsies_django.E003"]
