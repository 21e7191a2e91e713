"""Opaque, time-ordered identifiers.

Ids are ULIDs: 48 bits of millisecond time and 80 random bits, so they sort by
creation time (good for B-tree inserts) and cannot be guessed from each other.
"""

from ulid import ULID


def new_id() -> str:
    """A fresh 26-character ULID string."""
    return str(ULID())


def is_valid_id(value: str) -> bool:
    """Whether ``value`` has the shape of an id, so bad ids can be refused early."""
    if len(value) != 26:
        return False
    try:
        ULID.from_str(value)
    except ValueError:
        return False
    return True
