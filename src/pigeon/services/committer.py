"""Group commit: every write on the hot path shares one transaction with its neighbours.

Sends, acks and read marks are queued; one task takes everything queued,
applies it in a single transaction and then answers each caller. While a
commit is in flight new work piles up for the next one, so under load many
messages share one commit, and at low load a message waits for nobody.

Where the database takes concurrent writers (PostgreSQL), several such
workers can run, each with its own queue: an operation goes to the worker its
partition key picks (the device that sent it), so each device's work stays in
order while another worker's batch waits for its round trips.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import structlog

from pigeon.domain.errors import PigeonError, Unavailable
from pigeon.services.ports import StorageError, StorageUnreachable

log = structlog.get_logger(__name__)

# Tells the world what a batch committed (hands its entries to the bus). It
# must not block: it runs on the committer's serial path.
Publish = Callable[[], None]
# Applies a batch of operations in one transaction and commits it. Returns one
# result per operation (a value, or the PigeonError to answer with) and the
# batch's Publish.
BatchHandler = Callable[[Sequence[Any]], Awaitable[tuple[Sequence[Any], Publish]]]


class Pending:
    """One queued operation and the future its caller awaits."""

    __slots__ = ("future", "op")

    def __init__(self, op: Any) -> None:
        self.op = op
        self.future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

    def resolve(self, value: Any) -> None:
        if not self.future.done():
            self.future.set_result(value)

    def fail(self, error: BaseException) -> None:
        if not self.future.done():
            self.future.set_exception(error)


class GroupCommitter:
    """Runs ``handler`` over batches of at most ``max_batch`` queued operations.

    Callers are answered only after their batch committed, with their own
    result: one caller's error (not a member, say) does not fail the others.
    """

    def __init__(
        self,
        handler: BatchHandler,
        max_batch: int = 256,
        retries: int = 2,
        on_commit: Callable[[int, float], None] = lambda size, seconds: None,
        workers: int = 1,
        partition: Callable[[Any], str] = lambda op: "",
    ) -> None:
        self._handler = handler
        self._on_commit = on_commit
        self._max_batch = max_batch
        self._retries = retries
        self._partition = partition
        self._queues: list[asyncio.Queue[Pending]] = [asyncio.Queue() for _ in range(workers)]
        self._tasks: list[asyncio.Task[None]] = []
        self.batches = 0
        self.operations = 0

    def start(self) -> None:
        if not self._tasks:
            self._tasks = [
                asyncio.create_task(self._run(queue), name=f"group-committer-{index}")
                for index, queue in enumerate(self._queues)
            ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        for queue in self._queues:
            while not queue.empty():
                queue.get_nowait().fail(Unavailable("unavailable", "The server is stopping."))

    def submit(self, op: Any) -> asyncio.Future[Any]:
        """Queue ``op``; the future resolves with its result once its batch has committed.

        A future rather than a coroutine: a caller may add a callback instead of
        awaiting, so a hot command costs no task of its own.
        """
        pending = Pending(op)
        queues = self._queues
        queue = queues[0] if len(queues) == 1 else queues[hash(self._partition(op)) % len(queues)]
        queue.put_nowait(pending)
        return pending.future

    async def _run(self, queue: asyncio.Queue[Pending]) -> None:
        while True:
            batch = [await queue.get()]
            while len(batch) < self._max_batch and not queue.empty():
                batch.append(queue.get_nowait())
            await self._apply(batch)

    async def _apply(self, batch: list[Pending]) -> None:
        """Commit the batch; if storage keeps refusing it, commit its operations one by one.

        A retry covers conflicts with other nodes (a deadlock, the same
        clientMessageId sent through two nodes). If the batch still fails, one
        operation may be poisoned (data the database rejects): applied alone,
        it fails by itself and its neighbours go through.
        """
        started = time.perf_counter()
        for attempt in range(self._retries + 1):
            try:
                await self._commit(batch, started)
                return
            except StorageError as exc:
                log.warning("commit.retry", attempt=attempt, size=len(batch), error=str(exc))
                if attempt < self._retries:
                    await asyncio.sleep(0.01 * (attempt + 1))
                    continue
                if len(batch) == 1:
                    self._fail(batch, Unavailable("unavailable", "Storage is unavailable."))
                    return
                break
            except Exception:
                log.exception("commit.failed")
                self._fail(batch, Unavailable("unavailable", "The operation failed."))
                return
        for index, pending in enumerate(batch):
            try:
                await self._commit([pending], time.perf_counter())
            except StorageUnreachable:
                # Not one poisoned operation: the database is away. Answer the rest
                # at once (clients retry) instead of trying each one in turn.
                log.warning("commit.storage_unreachable", failed=len(batch) - index)
                self._fail(batch[index:], Unavailable("unavailable", "Storage is unavailable."))
                return
            except Exception as exc:
                log.warning("commit.failed_alone", error=str(exc))
                pending.fail(Unavailable("unavailable", "Storage refused the operation."))

    async def _commit(self, batch: list[Pending], started: float) -> None:
        results, publish = await self._handler([pending.op for pending in batch])
        self.batches += 1
        self.operations += len(batch)
        self._on_commit(len(batch), time.perf_counter() - started)
        for pending, result in zip(batch, results, strict=True):
            if isinstance(result, PigeonError):
                pending.fail(result)
            else:
                pending.resolve(result)
        try:
            publish()
        except Exception:
            log.exception("commit.publish_failed")

    def _fail(self, batch: list[Pending], error: PigeonError) -> None:
        for pending in batch:
            pending.fail(error)
