"""Lookups that arrive while a read runs share the next read (services/batching.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence

import pytest

from pigeon.services.batching import BatchedLookup
from pigeon.services.ports import StorageError
from tests.support import tasks_made_before_have_started


class GatedReads:
    """A read per call, each held until the test opens it; records the keys it read."""

    def __init__(self, fail_on: str | None = None) -> None:
        self.reads: list[list[str]] = []
        self.gates: list[asyncio.Event] = []
        self.fail_on = fail_on

    async def read(self, keys: Sequence[str]) -> Mapping[str, str]:
        self.reads.append(list(keys))
        gate = asyncio.Event()
        self.gates.append(gate)
        await gate.wait()
        if self.fail_on in keys:
            raise StorageError("the database is away")
        return {key: key.upper() for key in keys if not key.startswith("missing")}

    async def started(self, count: int) -> None:
        """Until ``count`` reads have begun (bounded: the reader runs within a few turns)."""
        for _ in range(100):
            if len(self.reads) >= count:
                return
            await tasks_made_before_have_started()  # one turn of the loop
        raise AssertionError(f"{len(self.reads)} reads began, not {count}")


async def test_a_lookup_alone_is_read_at_once_and_those_arriving_meanwhile_together() -> None:
    reads = GatedReads()
    lookup = BatchedLookup(reads.read, "none")
    first = asyncio.ensure_future(lookup.get("a"))
    await reads.started(1)
    later = [asyncio.ensure_future(lookup.get(key)) for key in ("b", "missing", "b", "c")]
    await tasks_made_before_have_started()
    # They wait for the read under way (held by its gate), not for a batch to fill.
    assert reads.reads == [["a"]]
    reads.gates[0].set()
    assert await first == "A"
    await reads.started(2)
    reads.gates[1].set()
    assert [await answer for answer in later] == ["B", "none", "B", "C"]
    assert reads.reads == [["a"], ["b", "missing", "c"]]  # one key read once


async def test_a_read_takes_at_most_its_share_of_keys() -> None:
    reads = GatedReads()
    lookup = BatchedLookup(reads.read, "none", most=2)
    first = asyncio.ensure_future(lookup.get("a"))
    await reads.started(1)
    later = [asyncio.ensure_future(lookup.get(key)) for key in "bcde"]
    await tasks_made_before_have_started()
    for count in (1, 2):
        reads.gates[count - 1].set()
        await reads.started(count + 1)
    reads.gates[2].set()
    assert [await first] + [await answer for answer in later] == ["A", "B", "C", "D", "E"]
    assert reads.reads == [["a"], ["b", "c"], ["d", "e"]]


async def test_a_failed_read_fails_its_lookups_only() -> None:
    reads = GatedReads(fail_on="bad")
    lookup = BatchedLookup(reads.read, "none")
    first = asyncio.ensure_future(lookup.get("a"))
    await reads.started(1)
    failing = [asyncio.ensure_future(lookup.get(key)) for key in ("bad", "b")]
    reads.gates[0].set()
    await reads.started(2)
    after = asyncio.ensure_future(lookup.get("c"))
    reads.gates[1].set()
    for answer in failing:
        with pytest.raises(StorageError):
            await answer
    await reads.started(3)
    reads.gates[2].set()
    assert (await first, await after) == ("A", "C")


async def test_a_caller_that_left_does_not_stop_the_others() -> None:
    reads = GatedReads()
    lookup = BatchedLookup(reads.read, "none")
    first = asyncio.ensure_future(lookup.get("a"))
    await reads.started(1)
    leaving = asyncio.ensure_future(lookup.get("b"))
    staying = asyncio.ensure_future(lookup.get("c"))
    await tasks_made_before_have_started()
    leaving.cancel()
    reads.gates[0].set()
    await reads.started(2)
    reads.gates[1].set()
    assert (await first, await staying) == ("A", "C")
    assert reads.reads == [["a"], ["c"]]  # who left is not read
