"""Ids: ULIDs that sort by the millisecond they were made in and repeat never."""

from __future__ import annotations

import time

from ulid import ULID

from pigeon.domain.ids import is_valid_id, new_id


def test_an_id_is_a_ulid_of_the_millisecond_it_was_made_in() -> None:
    before = time.time_ns() // 1_000_000
    made = new_id()
    after = time.time_ns() // 1_000_000
    parsed = ULID.from_str(made)
    assert str(parsed) == made
    assert is_valid_id(made)
    assert before <= int(parsed.timestamp * 1000 + 0.5) <= after


def test_ids_never_repeat_and_later_milliseconds_sort_later() -> None:
    made = [new_id() for _ in range(50_000)]
    assert len(set(made)) == len(made)
    first = made[0]
    deadline = time.monotonic() + 1
    while (later := new_id())[:10] == first[:10] and time.monotonic() < deadline:
        pass  # until the clock has moved to the next millisecond
    assert later > first


def test_the_time_part_covers_all_48_bits() -> None:
    from pigeon.domain.ids import _time_part

    assert _time_part(0) == "0" * 10
    assert _time_part(2**48 - 1) == "7" + "Z" * 9  # the largest time a ULID holds
    assert ULID.from_str(_time_part(1_796_538_106_956) + "0" * 16).milliseconds == 1_796_538_106_956
