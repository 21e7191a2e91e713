"""The group committer: batching, per-caller results, and isolating a poisoned operation."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import pytest

from pigeon.domain.errors import InvalidInput, PigeonError, Unavailable
from pigeon.services.committer import GatherPolicy, GroupCommitter, Publish
from pigeon.services.ports import StorageError, StorageUnreachable
from tests.support import eventually


class Handler:
    """Doubles each op; ops equal to ``poison`` make the whole transaction fail."""

    def __init__(self, poison: int | None = None, fail_times: int = 0) -> None:
        self.poison = poison
        self.fail_times = fail_times
        self.batches: list[list[int]] = []
        self.published: list[list[int]] = []

    async def __call__(self, ops: Sequence[Any]) -> tuple[list[Any], Publish]:
        await asyncio.sleep(0.001)  # a transaction takes time; more ops queue meanwhile
        if self.fail_times:
            self.fail_times -= 1
            raise StorageError("deadlock detected")
        if self.poison in ops:
            raise StorageError("invalid byte sequence")
        self.batches.append(list(ops))
        results: list[Any] = [InvalidInput("odd", "odd") if op % 2 else op * 2 for op in ops]

        def publish() -> None:
            self.published.append(list(ops))

        return results, publish


async def run(committer: GroupCommitter, ops: list[int]) -> list[Any]:
    committer.start()
    try:
        return await asyncio.gather(*(committer.submit(op) for op in ops), return_exceptions=True)
    finally:
        await committer.stop()


async def test_queued_operations_share_commits_and_get_their_own_results() -> None:
    handler = Handler()
    results = await run(GroupCommitter(handler, max_batch=64), list(range(100)))
    assert [r for r in results if not isinstance(r, PigeonError)] == [
        n * 2 for n in range(0, 100, 2)
    ]
    assert all(isinstance(r, InvalidInput) for r in results[1::2])
    assert len(handler.batches) < 10  # 100 operations, a handful of commits
    assert sorted(op for batch in handler.batches for op in batch) == list(range(100))
    assert handler.published == handler.batches


async def test_batch_size_is_capped() -> None:
    handler = Handler()
    await run(GroupCommitter(handler, max_batch=8), list(range(0, 64, 2)))
    assert max(len(batch) for batch in handler.batches) == 8


async def test_a_transient_failure_is_retried() -> None:
    handler = Handler(fail_times=1)
    assert await run(GroupCommitter(handler), [2, 4]) == [4, 8]


async def test_a_poisoned_operation_fails_alone() -> None:
    handler = Handler(poison=6)
    results = await run(GroupCommitter(handler, retries=1), [2, 4, 6, 8])
    assert results[:2] == [4, 8]
    assert results[3] == 16
    assert isinstance(results[2], Unavailable)


async def test_stopping_fails_what_is_still_queued() -> None:
    committer = GroupCommitter(Handler())
    future = committer.submit(2)
    await committer.stop()
    with pytest.raises(Unavailable):
        await future


async def test_an_unreachable_database_fails_the_batch_without_trying_each_operation() -> None:
    calls = 0

    async def unreachable(ops: Sequence[Any]) -> tuple[list[Any], Publish]:
        nonlocal calls
        calls += 1
        raise StorageUnreachable("cannot reach the database")

    results = await run(GroupCommitter(unreachable, retries=1), [2, 4, 6, 8])
    assert all(isinstance(r, Unavailable) for r in results)
    assert calls == 3  # the batch, its retry, and one operation alone: not four more


async def test_workers_keep_each_partition_in_order_and_overlap_the_rest() -> None:
    """Four workers: a key's operations commit in submission order, several batches at once."""
    in_flight = 0
    most_in_flight = 0
    committed: list[int] = []

    async def handler(ops: Sequence[Any]) -> tuple[list[Any], Publish]:
        nonlocal in_flight, most_in_flight
        in_flight += 1
        most_in_flight = max(most_in_flight, in_flight)
        await asyncio.sleep(0.002)  # a round trip to the database
        committed.extend(ops)
        in_flight -= 1

        return list(ops), lambda: None

    committer = GroupCommitter(handler, max_batch=4, workers=4, partition=lambda op: str(op % 8))
    committer.start()
    try:
        ops = list(range(400))
        assert await asyncio.gather(*(committer.submit(op) for op in ops)) == ops
    finally:
        await committer.stop()
    assert most_in_flight > 1
    for key in range(8):
        assert [op for op in committed if op % 8 == key] == list(range(key, 400, 8))


# -- lazy operations and gathering ------------------------------------------------------


class Recorder:
    """Records each batch and when it started; answers every op with itself."""

    def __init__(self) -> None:
        self.batches: list[list[Any]] = []
        self.started: list[float] = []

    async def __call__(self, ops: Sequence[Any]) -> tuple[list[Any], Publish]:
        self.started.append(asyncio.get_running_loop().time())
        self.batches.append(list(ops))
        return list(ops), lambda: None


async def test_lazy_operations_ride_along_with_the_next_eager_batch() -> None:
    handler = Recorder()
    committer = GroupCommitter(handler, lazy_delay=10.0)  # far longer than the test
    committer.start()
    try:
        acks = [committer.submit_lazy(f"ack{n}") for n in range(3)]
        await asyncio.sleep(0.05)  # the committer had time to commit them alone, and did not
        assert handler.batches == []
        assert await committer.submit("send") == "send"
        assert await asyncio.gather(*acks) == ["ack0", "ack1", "ack2"]
    finally:
        await committer.stop()
    assert handler.batches == [["send", "ack0", "ack1", "ack2"]]


async def test_lazy_operations_alone_commit_once_the_oldest_has_waited_the_delay() -> None:
    handler = Recorder()
    committer = GroupCommitter(handler, lazy_delay=0.05)
    committer.start()
    loop = asyncio.get_running_loop()
    try:
        queued_at = loop.time()
        first = committer.submit_lazy("ack1")
        await asyncio.sleep(0.02)
        second = committer.submit_lazy("ack2")
        assert await asyncio.wait_for(asyncio.gather(first, second), 5) == ["ack1", "ack2"]
    finally:
        await committer.stop()
    assert handler.batches == [["ack1", "ack2"]]
    assert handler.started[0] - queued_at >= 0.05  # not before the oldest's delay ran out


async def test_hurried_lazy_operations_commit_without_waiting_for_the_delay() -> None:
    """What a connection's end does (``MessagingService.commit_acks_now``)."""
    handler = Recorder()
    committer = GroupCommitter(handler, lazy_delay=10.0)  # far longer than the test
    committer.start()
    try:
        acks = [committer.submit_lazy(f"ack{n}") for n in range(2)]
        # The committer is waiting for the delay now (its wake-up future is set).
        await eventually(lambda: committer._workers[0].wakeup is not None)
        committer.hurry()
        assert await asyncio.wait_for(asyncio.gather(*acks), 5) == ["ack0", "ack1"]
    finally:
        await committer.stop()
    assert handler.batches == [["ack0", "ack1"]]


async def test_stopping_fails_lazy_operations_still_waiting() -> None:
    committer = GroupCommitter(Recorder(), lazy_delay=10.0)
    committer.start()
    future = committer.submit_lazy("ack")
    await committer.stop()
    with pytest.raises(Unavailable):
        await future


async def test_a_stream_of_work_is_gathered_but_a_lone_operation_is_not_delayed() -> None:
    handler = Recorder()
    committer = GroupCommitter(handler, gather=GatherPolicy(wait=0.02, enough=100))
    committer.start()
    loop = asyncio.get_running_loop()
    try:
        # After an idle spell: committed at once, though gathering is on.
        submitted = loop.time()
        await committer.submit("lone")
        assert handler.started[-1] - submitted < 0.015

        # A stream, one operation every 2 ms: batches wait 20 ms and hold several.
        results = []
        for n in range(60):
            results.append(committer.submit(n))
            await asyncio.sleep(0.002)
        assert await asyncio.gather(*results) == list(range(60))
    finally:
        await committer.stop()
    streamed = handler.batches[1:]
    assert sum(map(len, streamed)) == 60
    assert max(map(len, streamed)) >= 4
    assert len(streamed) <= 30  # without gathering: one commit per operation


async def test_gathering_ends_as_soon_as_enough_work_is_queued() -> None:
    """A long gather wait does not hold a batch that already has ``enough`` operations."""
    handler = Recorder()
    committer = GroupCommitter(handler, gather=GatherPolicy(wait=30.0, enough=5))
    committer.start()
    try:
        results = [committer.submit(0)]
        # The committer is gathering now: the batch waits for more.
        await eventually(lambda: committer._workers[0].gather_until > 0)
        results += [committer.submit(n) for n in range(1, 5)]
        assert await asyncio.wait_for(asyncio.gather(*results), 5) == list(range(5))
    finally:
        await committer.stop()
    assert handler.batches == [[0, 1, 2, 3, 4]]
