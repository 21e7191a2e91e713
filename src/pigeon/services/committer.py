"""Group commit: every write on the hot path shares one transaction with its neighbours.

Sends, acks and read marks are queued; one task takes everything queued,
applies it in a single transaction and then answers each caller. While a
commit is in flight new work piles up for the next one, so under load many
messages share one commit.

Two things keep ordinary load from paying a commit per operation:

- **Lazy operations** (acks): nobody waits for them. They ride along with the
  next batch of eager work, or are committed on their own once the oldest has
  waited ``lazy_delay``. An ack lost to a crash in that window only means the
  entries come again, and the client drops what it already has.
- **Gathering** (``GatherPolicy``): when eager work arrives faster than one
  operation per ``wait`` (a moving average of the gaps between arrivals) and
  the queue holds fewer than ``enough`` operations, the committer waits up
  to ``wait`` (less if ``enough`` arrive meanwhile) before taking them, so
  the next few share the commit. After an idle spell the average gap is
  long and it never waits: a lone message is committed at once.

Where the database takes concurrent writers (PostgreSQL), several such
workers can run, each with its own queues: an operation goes to the worker
its partition key picks (the device that sent it), so each device's work
stays in order while another worker's batch waits for its round trips.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
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

    __slots__ = ("future", "op", "queued_at")

    def __init__(self, op: Any, queued_at: float) -> None:
        self.op = op
        self.queued_at = queued_at
        self.future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

    def resolve(self, value: Any) -> None:
        if not self.future.done():
            self.future.set_result(value)

    def fail(self, error: BaseException) -> None:
        if not self.future.done():
            self.future.set_exception(error)


@dataclass(slots=True, frozen=True)
class GatherPolicy:
    """When a batch waits for more work before it starts (see the module's docstring)."""

    wait: float = 0.0  # seconds; 0 never waits
    enough: int = 8  # eager operations that start a batch without waiting


# Weight of the newest gap in the moving average of gaps between arrivals
# (a stream of work is recognised after ~20 arrivals), and the longest gap
# counted (an hour of silence is no more idle than a second).
_GAP_WEIGHT = 0.2
_GAP_CAP = 1.0


class _Worker:
    """One committing task's queues: eager work, and lazy work waiting for a ride."""

    __slots__ = (
        "arrival_gap",
        "eager",
        "gather_until",
        "hurried",
        "last_arrival",
        "lazy",
        "wakeup",
    )

    def __init__(self) -> None:
        self.eager: deque[Pending] = deque()
        self.lazy: deque[Pending] = deque()
        self.hurried = False  # commit the lazy work without waiting for its delay
        self.wakeup: asyncio.Future[None] | None = None
        self.last_arrival = 0.0
        self.arrival_gap = _GAP_CAP  # seconds between eager arrivals, on average
        self.gather_until = 0  # while gathering: the eager count that ends the wait

    def arrived(self, now: float) -> None:
        gap = min(now - self.last_arrival, _GAP_CAP)
        self.last_arrival = now
        self.arrival_gap += _GAP_WEIGHT * (gap - self.arrival_gap)

    def wake(self) -> None:
        wakeup = self.wakeup
        if wakeup is not None and not wakeup.done():
            wakeup.set_result(None)


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
        lazy_delay: float = 0.0,
        gather: GatherPolicy = GatherPolicy(),
    ) -> None:
        self._handler = handler
        self._on_commit = on_commit
        self._max_batch = max_batch
        self._retries = retries
        self._partition = partition
        self._lazy_delay = lazy_delay
        self._gather = gather
        self._workers = [_Worker() for _ in range(workers)]
        self._tasks: list[asyncio.Task[None]] = []
        self.batches = 0
        self.operations = 0

    def start(self) -> None:
        if not self._tasks:
            self._tasks = [
                asyncio.create_task(self._run(worker), name=f"group-committer-{index}")
                for index, worker in enumerate(self._workers)
            ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        stopping = Unavailable("unavailable", "The server is stopping.")
        for worker in self._workers:
            for queue in (worker.eager, worker.lazy):
                while queue:
                    queue.popleft().fail(stopping)

    def submit(self, op: Any) -> asyncio.Future[Any]:
        """Queue ``op``; the future resolves with its result once its batch has committed.

        A future rather than a coroutine: a caller may add a callback instead of
        awaiting, so a hot command costs no task of its own.
        """
        return self._queue(op, lazy=False)

    def submit_lazy(self, op: Any) -> asyncio.Future[Any]:
        """Queue ``op`` to ride along with the next batch; committed within ``lazy_delay``."""
        return self._queue(op, lazy=self._lazy_delay > 0)

    def lazy_waiting(self, match: Callable[[Any], bool]) -> list[asyncio.Future[Any]]:
        """The futures of the lazy work queued now for which ``match`` holds."""
        return [p.future for w in self._workers for p in w.lazy if match(p.op)]

    def hurry(self) -> None:
        """Commit the lazy work queued now, without waiting for its delay."""
        for worker in self._workers:
            if worker.lazy:
                worker.hurried = True
                worker.wake()

    def _queue(self, op: Any, lazy: bool) -> asyncio.Future[Any]:
        workers = self._workers
        worker = (
            workers[0] if len(workers) == 1 else workers[hash(self._partition(op)) % len(workers)]
        )
        now = time.monotonic()
        pending = Pending(op, now)
        if lazy:
            worker.lazy.append(pending)
            if len(worker.lazy) == 1:  # the first lazy one sets the deadline
                worker.wake()
        else:
            worker.eager.append(pending)
            worker.arrived(now)
            if len(worker.eager) >= worker.gather_until:
                worker.wake()
        return pending.future

    async def _run(self, worker: _Worker) -> None:
        while True:
            await self._wait_for_work(worker)
            await self._apply(self._take(worker))

    async def _wait_for_work(self, worker: _Worker) -> None:
        """Until eager work is queued or the oldest lazy work is due; then maybe gather."""
        loop = asyncio.get_running_loop()
        while not worker.eager:
            timer = None
            if worker.lazy:
                due = worker.lazy[0].queued_at + self._lazy_delay - time.monotonic()
                if due <= 0 or worker.hurried:
                    worker.hurried = False
                    return
                timer = loop.call_later(due, worker.wake)
            worker.wakeup = loop.create_future()
            try:
                await worker.wakeup
            finally:
                worker.wakeup = None
                if timer is not None:
                    timer.cancel()
        gather = self._gather
        if 0 < worker.arrival_gap < gather.wait and len(worker.eager) < gather.enough:
            await self._gather_more(worker, loop)

    async def _gather_more(self, worker: _Worker, loop: asyncio.AbstractEventLoop) -> None:
        """Wait ``wait`` for more eager work, or until ``enough`` of it is queued."""
        worker.gather_until = self._gather.enough
        worker.wakeup = loop.create_future()
        timer = loop.call_later(self._gather.wait, worker.wake)
        try:
            await worker.wakeup
        finally:
            worker.wakeup = None
            worker.gather_until = 0
            timer.cancel()

    def _take(self, worker: _Worker) -> list[Pending]:
        """Eager work first, then lazy work to fill the batch."""
        batch: list[Pending] = []
        for queue in (worker.eager, worker.lazy):
            while queue and len(batch) < self._max_batch:
                batch.append(queue.popleft())
        worker.hurried = False
        return batch

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
