"""RetryPolicy: which error codes earn another attempt, and how long to wait before it."""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from .codes import BuiltInTaskCode, code_spelling_problem

MAX_RETRIES = 20
MAX_INTERVAL_S = 86_400


@dataclass(frozen=True)
class RetryPolicy:
    """Retry a task whose error code is in `auto_retry_for`, up to `max_retries` more times.

    `fixed`: the n-th retry waits `intervals[n-1]`; there is one interval per retry.
    `exponential`: the n-th retry waits `intervals[0] * 2**(n-1)`; there is one base interval.
    `jitter` moves each wait by up to 25% either way, so that retries of many tasks do not
    arrive together; `max_delay_seconds` caps the wait. Settings that contradict each other
    raise `ValueError` when the policy is built, that is, when the task module is imported.
    """

    # Required in effect; the default only lets a missing list be a ValueError like every other
    # bad setting, as horsies' validation error is, instead of a TypeError.
    auto_retry_for: Sequence[str | BuiltInTaskCode] = ()
    max_retries: int = 3
    intervals: Sequence[float] = field(default=(60, 300, 900))
    backoff_strategy: Literal["fixed", "exponential"] = "fixed"
    jitter: bool = True
    max_delay_seconds: float | None = None

    def __post_init__(self) -> None:
        if isinstance(self.max_retries, bool) or not isinstance(self.max_retries, int):
            raise ValueError(f"max_retries must be a whole number, got {self.max_retries!r}")
        if not 1 <= self.max_retries <= MAX_RETRIES:
            raise ValueError(f"max_retries must be from 1 to {MAX_RETRIES}, got {self.max_retries}")
        if isinstance(self.intervals, (str, bytes)) or not isinstance(self.intervals, Sequence) or not self.intervals:
            raise ValueError(f"intervals must list at least one delay in seconds, got {self.intervals!r}")
        for interval in self.intervals:
            if (
                isinstance(interval, bool)
                or not isinstance(interval, (int, float))
                or not 0 < interval <= MAX_INTERVAL_S
            ):
                raise ValueError(
                    f"each interval must be a number of seconds in (0, {MAX_INTERVAL_S}], got {interval!r}"
                )
        if self.backoff_strategy not in ("fixed", "exponential"):
            raise ValueError(f"backoff_strategy must be 'fixed' or 'exponential', got {self.backoff_strategy!r}")
        if self.backoff_strategy == "fixed" and len(self.intervals) != self.max_retries:
            raise ValueError(
                f"fixed backoff needs one interval per retry: {len(self.intervals)} interval(s) for "
                f"max_retries={self.max_retries}; list {self.max_retries} intervals or use RetryPolicy.fixed(intervals)"
            )
        if self.backoff_strategy == "exponential" and len(self.intervals) != 1:
            raise ValueError(
                f"exponential backoff takes exactly one base interval, got {len(self.intervals)}; "
                "use RetryPolicy.exponential(base_seconds, max_retries=...)"
            )
        if (
            isinstance(self.auto_retry_for, (str, bytes))
            or not isinstance(self.auto_retry_for, (Sequence, frozenset, set))
            or not self.auto_retry_for
        ):
            raise ValueError("auto_retry_for must list at least one error code, e.g. ['UNHANDLED_EXCEPTION']")
        for code in self.auto_retry_for:
            problem = code_spelling_problem(code, "each auto_retry_for entry")
            if problem:
                raise ValueError(problem)
        if self.max_delay_seconds is not None and (
            isinstance(self.max_delay_seconds, bool)
            or not isinstance(self.max_delay_seconds, (int, float))
            or not 0 < self.max_delay_seconds < float("inf")
        ):
            raise ValueError(f"max_delay_seconds must be positive, got {self.max_delay_seconds!r}")
        object.__setattr__(self, "auto_retry_for", frozenset(str(code) for code in self.auto_retry_for))
        object.__setattr__(self, "intervals", tuple(self.intervals))

    @classmethod
    def fixed(
        cls, intervals: Sequence[float], *, auto_retry_for: Sequence[str | BuiltInTaskCode] = (), jitter: bool = True
    ) -> RetryPolicy:
        """One retry per interval, waiting each interval in turn."""
        if isinstance(intervals, (str, bytes)) or not isinstance(intervals, Sequence):
            raise ValueError(f"intervals must list one delay in seconds per retry, got {intervals!r}")
        return cls(
            auto_retry_for=auto_retry_for,
            max_retries=len(intervals),
            intervals=intervals,
            backoff_strategy="fixed",
            jitter=jitter,
        )

    @classmethod
    def exponential(
        cls,
        base_seconds: float,
        *,
        max_retries: int,
        auto_retry_for: Sequence[str | BuiltInTaskCode] = (),
        jitter: bool = True,
        max_delay_seconds: float | None = None,
    ) -> RetryPolicy:
        """Wait `base_seconds`, then twice that, four times that, ..."""
        return cls(
            auto_retry_for=auto_retry_for,
            max_retries=max_retries,
            intervals=(base_seconds,),
            backoff_strategy="exponential",
            jitter=jitter,
            max_delay_seconds=max_delay_seconds,
        )

    def retries(self, error_code: str | None) -> bool:
        """Whether a failure with this code is retried at all (attempts left aside)."""
        return error_code is not None and str(error_code) in self.auto_retry_for

    def delay_seconds(self, retry_number: int, *, rng: random.Random | None = None) -> float:
        """How long to wait before retry number `retry_number` (1 for the first retry)."""
        if self.backoff_strategy == "fixed":
            delay = float(self.intervals[min(retry_number, len(self.intervals)) - 1])
        else:
            delay = float(self.intervals[0]) * 2 ** (retry_number - 1)
        if self.jitter:
            delay *= 1 + (rng or random).uniform(-0.25, 0.25)  # noqa: S311 (spreading load, not security)
        if self.max_delay_seconds is not None:
            delay = min(delay, self.max_delay_seconds)
        return delay


_RATE = re.compile(r"^\s*(\d+)\s*/\s*(\d*\.?\d*)\s*(s|m|h)\s*$")
_UNIT_S = {"s": 1.0, "m": 60.0, "h": 3600.0}


@dataclass(frozen=True)
class RateLimit:
    """At most `count` starts of a task per `period_s` seconds, across all workers."""

    count: int
    period_s: float

    @classmethod
    def parse(cls, spec: str) -> RateLimit:
        """Read "100/m", "10/s", "500/h" or "3/2s" (3 per 2 seconds)."""
        match = _RATE.match(spec) if isinstance(spec, str) else None
        if not match:
            raise ValueError(f"rate_limit must look like '100/m', '10/s', '500/h' or '3/2s', got {spec!r}")
        count, multiple, unit = match.groups()
        period = float(multiple or 1) * _UNIT_S[unit]
        if int(count) < 1 or period <= 0:
            raise ValueError(f"rate_limit needs a positive count and period, got {spec!r}")
        return cls(count=int(count), period_s=period)
