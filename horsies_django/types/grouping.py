"""Error groups: failures with the same code and the same message up to its variable parts.

`normalise("order 1234 for 'bob' failed")` is `"order <n> for '<str>' failed"`, so a thousand
failures that differ only in an id, a number or a quoted value form one group, as in an error
tracker. `group_key()` is the short digest stored beside each failed task (`Task.error_group`),
which the admin's Errors page groups by (with the task name) in one indexed query.
"""

from __future__ import annotations

import hashlib
import re

# Longer messages are cut before grouping: the head says what failed, the tail repeats data.
MAX_MESSAGE = 1_000
GROUP_KEY_LENGTH = 16

_FOLDS: list[tuple[re.Pattern[str], str]] = [
    # Quoted values first, so an id or a number inside quotes folds with its quotes.
    (re.compile(r"'[^'\n]{0,200}'"), "'<str>'"),
    (re.compile(r'"[^"\n]{0,200}"'), '"<str>"'),
    (re.compile(r"\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b"), "<uuid>"),
    (re.compile(r"\b0x[0-9a-fA-F]+\b"), "<hex>"),
    # A hex run with at least one digit and one letter, 8 or more long: hashes, object ids.
    (re.compile(r"\b(?=[0-9a-fA-F]*[0-9])(?=[0-9a-fA-F]*[a-fA-F])[0-9a-fA-F]{8,}\b"), "<hex>"),
    (re.compile(r"\d+(?:[.,:]\d+)*(?:[eE][-+]?\d+)?"), "<n>"),
    (re.compile(r"\s+"), " "),
]


def normalise(message: str) -> str:
    """The message with numbers, ids, hashes and quoted values folded, and whitespace collapsed."""
    text = message[:MAX_MESSAGE]
    for pattern, replacement in _FOLDS:
        text = pattern.sub(replacement, text)
    return text.strip()


def group_key(error_code: str | None, message: str) -> str | None:
    """The group of a failure with this code and message; None for no error code (no failure)."""
    if error_code is None:
        return None
    digest = hashlib.blake2b(f"{error_code}\x00{normalise(message)}".encode("utf-8", "replace"), digest_size=8)
    return digest.hexdigest()
