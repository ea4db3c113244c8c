"""Task ids: version 7 UUIDs, ordered by the millisecond they were made."""

from __future__ import annotations

import time
import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from horsies_django.types.ids import new_task_id, uuid7_from

MAX_MS = (1 << 48) - 1


@given(st.integers(min_value=0, max_value=MAX_MS), st.integers(min_value=0, max_value=(1 << 80) - 1))
def test_a_millisecond_and_random_bits_make_an_rfc_version_7_uuid(unix_ms: int, random_bits: int) -> None:
    made = uuid7_from(unix_ms, random_bits)
    assert made.version == 7
    assert made.variant == uuid.RFC_4122
    assert made.int >> 80 == unix_ms
    assert uuid.UUID(str(made)) == made


@given(
    st.integers(min_value=0, max_value=MAX_MS - 1),
    st.integers(min_value=0, max_value=(1 << 80) - 1),
    st.integers(min_value=0, max_value=(1 << 80) - 1),
)
def test_a_later_millisecond_sorts_after_an_earlier_one_whatever_the_random_bits(
    unix_ms: int, earlier_bits: int, later_bits: int
) -> None:
    earlier, later = uuid7_from(unix_ms, earlier_bits), uuid7_from(unix_ms + 1, later_bits)
    assert earlier < later
    assert earlier.hex < later.hex  # as SQLite stores and compares them


@given(st.integers(min_value=0, max_value=(1 << 80) - 1))
def test_74_random_bits_are_kept(random_bits: int) -> None:
    kept = uuid7_from(0, random_bits).int
    assert kept & ((1 << 62) - 1) == random_bits & ((1 << 62) - 1)
    assert (kept >> 64) & 0xFFF == (random_bits >> 64) & 0xFFF


@pytest.mark.parametrize("unix_ms", [-1, 1 << 48, 1 << 64])
def test_a_millisecond_outside_48_bits_is_refused(unix_ms: int) -> None:
    with pytest.raises(ValueError, match="48 bits"):
        uuid7_from(unix_ms, 0)


@pytest.mark.parametrize(
    ("unix_ms", "random_bits"),
    [
        (float("nan"), 0), (float("inf"), 0), (1.5, 0), ("1", 0), (None, 0), (b"\x00", 0),
        (0, float("nan")), (0, 1.5), (0, "\ud800"), (0, None),
    ],
)  # fmt: skip
def test_hostile_inputs_raise_and_never_make_an_id(unix_ms: object, random_bits: object) -> None:
    with pytest.raises((ValueError, TypeError)):
        uuid7_from(unix_ms, random_bits)  # type: ignore[arg-type]


def test_random_bits_beyond_80_are_ignored_and_negative_ones_still_make_a_valid_id() -> None:
    for random_bits in (1 << 200, -1, -(1 << 100)):
        made = uuid7_from(5, random_bits)
        assert (made.version, made.variant, made.int >> 80) == (7, uuid.RFC_4122, 5)


def test_new_ids_carry_the_current_millisecond_and_do_not_repeat() -> None:
    before = time.time_ns() // 1_000_000
    ids = [new_task_id() for _ in range(10_000)]
    after = time.time_ns() // 1_000_000
    assert len(set(ids)) == len(ids)
    assert all(before <= made.int >> 80 <= after for made in ids)
