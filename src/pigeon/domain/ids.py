"""Opaque, time-ordered identifiers.

Ids are ULIDs: 48 bits of millisecond time and 80 random bits, so they sort by
creation time (good for B-tree inserts) and cannot be guessed from each other.
Every message takes two, so they are made here rather than through the
``ulid`` package's objects (3.0 against 1.8 µs an id).
"""

from __future__ import annotations

import base64
import os
import time

from ulid import ULID

# ULIDs are written in Crockford's base32; base64.b32encode writes RFC 4648's.
_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_FROM_RFC4648 = bytes.maketrans(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", _CROCKFORD.encode())
_RANDOM_BYTES = 10  # 80 bits: exactly 16 base32 characters, no padding

# The time part of this millisecond's ids (a tuple: replaced whole, so threads agree).
_this_millisecond: tuple[int, str] = (-1, "")


def new_id() -> str:
    """A fresh 26-character ULID string."""
    randomness = base64.b32encode(os.urandom(_RANDOM_BYTES)).translate(_FROM_RFC4648)
    return _time_part(time.time_ns() // 1_000_000) + randomness.decode()


def _time_part(milliseconds: int) -> str:
    global _this_millisecond
    cached = _this_millisecond
    if cached[0] != milliseconds:
        # 48 bits as ten 5-bit characters, the first holding the top 3 bits.
        text = "".join(_CROCKFORD[(milliseconds >> shift) & 31] for shift in range(45, -5, -5))
        cached = _this_millisecond = (milliseconds, text)
    return cached[1]


def is_valid_id(value: str) -> bool:
    """Whether ``value`` has the shape of an id, so bad ids can be refused early."""
    if len(value) != 26:
        return False
    try:
        ULID.from_str(value)
    except ValueError:
        return False
    return True
