"""Task ids: UUIDs whose leading bits are the time they were made (RFC 9562, version 7).

A random (version 4) primary key lands each new row on a random leaf of the primary-key index, so
every send dirties a different page, which the database must log and later write back. Ids that
grow with time land on the newest leaf, which the next sends dirty again: fewer distinct pages per
checkpoint on SQLite, fewer full-page images in PostgreSQL's WAL. 74 random bits per millisecond
keep them unguessable and, in practice, unique.
"""

from __future__ import annotations

import os
import time
import uuid

_VERSION_7 = 0x7 << 76
_VARIANT_RFC = 0b10 << 62
_RAND_A_MASK = 0xFFF << 64
_RAND_B_MASK = (1 << 62) - 1


def uuid7_from(unix_ms: int, random_80_bits: int) -> uuid.UUID:
    """The version 7 UUID of a millisecond and 80 random bits (of which 74 are kept)."""
    if not 0 <= unix_ms < 1 << 48:
        raise ValueError(f"unix_ms must fit in 48 bits, got {unix_ms}")
    return uuid.UUID(
        int=(unix_ms << 80)
        | _VERSION_7
        | (random_80_bits & _RAND_A_MASK)
        | _VARIANT_RFC
        | (random_80_bits & _RAND_B_MASK)
    )


def new_task_id() -> uuid.UUID:
    """A new task id: version 7, ordered by the millisecond it was made."""
    return uuid7_from(time.time_ns() // 1_000_000, int.from_bytes(os.urandom(10), "big"))
