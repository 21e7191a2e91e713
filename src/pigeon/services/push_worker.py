"""Sends the pushes that are due: to devices an event found no live connection for.

The bus tells the worker which devices a committed event could not reach
(``DeliveryFeedback.unreached``, on the committer's path: it only notes the
device and returns). Nothing about the push is written in the event's
transaction: the event's queue entry is the durable record, and each
registration keeps ``pushed_seq``, the last queue seq a sent push covered. A
device is due while its queue holds others' messages past that seq, so a
restart between the commit and the send loses nothing: the worker starts by
looking for such devices (``PushRepository.due``).

Per device, a push is claimed in the database before it is sent (a lease, so
two nodes never push one device at once, and a node that died mid-send is
replaced when the lease ends), and ``next_at`` keeps pushes at least
``coalesce`` apart: the events of that window share one push, which carries
the latest unread count. A crash after a send and before it is recorded
sends that push again on restart (at least once); no event is ever pushed
twice otherwise.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta

import structlog

from pigeon.domain.delivery import InboxEntry
from pigeon.domain.push import PushKind, PushNotice
from pigeon.services.ports import (
    Clock,
    PushOutcome,
    PushResult,
    PushSender,
    PushState,
    StorageError,
    UnitOfWorkFactory,
)

log = structlog.get_logger(__name__)

# Called with (provider, what happened): sent, retried, failed, dropped, removed, and
# suppressed (due, but its user turned pushes off).
PushCounter = Callable[[str, str], None]


@dataclass(slots=True, frozen=True)
class PushPolicy:
    coalesce: timedelta
    lease: timedelta  # longer than one send can take
    max_attempts: int
    retry_base: float  # seconds
    retry_max: float
    concurrency: int = 32


class PushWorker:
    """``DeliveryFeedback`` that pushes: one task schedules, one task per device sends."""

    def __init__(
        self,
        uow: UnitOfWorkFactory,
        clock: Clock,
        senders: Mapping[PushKind, PushSender],
        policy: PushPolicy,
        on_result: PushCounter | None = None,
    ) -> None:
        self._uow = uow
        self._clock = clock
        self._senders = senders
        self._policy = policy
        self._on_result = on_result or (lambda provider, what: None)
        self._schedule: list[tuple[float, str]] = []  # (monotonic due time, device)
        self._due: dict[str, float] = {}  # each device's earliest entry in the schedule
        self._attempts: dict[str, int] = {}  # devices whose last try asked for a retry
        self._running: set[str] = set()
        self._again: set[str] = set()  # woken while its push was being sent
        self._wake = asyncio.Event()
        self._slots = asyncio.Semaphore(policy.concurrency)
        self._tasks: set[asyncio.Task[None]] = set()
        self._loop: asyncio.Task[None] | None = None

    # -- DeliveryFeedback --------------------------------------------------------------

    def unreached(self, entries: Sequence[InboxEntry]) -> None:
        """Note the devices that need a push; never blocks (the committer is calling)."""
        for entry in entries:
            message = entry.message
            if message is None:
                continue  # receipts wake nobody: the app shows them when next opened
            if entry.user_id and message.sender_id == entry.user_id:
                continue  # my own message, sent from another of my devices
            self.due_in(entry.device_id, 0)

    def due_in(self, device_id: str, seconds: float) -> None:
        due = time.monotonic() + seconds
        earlier = self._due.get(device_id)
        if earlier is not None and earlier <= due:
            return  # a burst for one device costs one schedule entry
        self._due[device_id] = due
        heapq.heappush(self._schedule, (due, device_id))
        self._wake.set()

    # -- lifecycle ------------------------------------------------------------------

    async def start(self) -> None:
        """Find the pushes a previous run left due, then serve."""
        self._loop = asyncio.create_task(self._run())
        try:
            async with self._uow(read_only=True) as uow:
                due = await uow.push.due()
        except StorageError as exc:
            log.warning("push.recovery_failed", error=str(exc))
            return
        for device_id in due:
            self.due_in(device_id, 0)

    async def stop(self) -> None:
        tasks = [t for t in (self._loop, *self._tasks) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        while True:
            now = time.monotonic()
            while self._schedule and self._schedule[0][0] <= now:
                due, device_id = heapq.heappop(self._schedule)
                if self._due.get(device_id) != due:
                    continue  # superseded by an earlier entry
                del self._due[device_id]
                if device_id in self._running:
                    self._again.add(device_id)
                    continue
                self._running.add(device_id)
                task = asyncio.create_task(self._push(device_id))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
            self._wake.clear()
            timeout = self._schedule[0][0] - now if self._schedule else None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)

    async def _push(self, device_id: str) -> None:
        try:
            async with self._slots:
                await self._push_once(device_id)
        except StorageError as exc:
            log.warning("push.storage_unavailable", device_id=device_id, error=str(exc))
            self.due_in(device_id, self._policy.retry_base)
        except Exception:
            log.exception("push.failed", device_id=device_id)
        finally:
            self._running.discard(device_id)
            if device_id in self._again:
                self._again.discard(device_id)
                self.due_in(device_id, 0)

    async def _push_once(self, device_id: str) -> None:
        # Most unreached devices have no registration: a read (which on SQLite
        # never waits for the one writer the committer uses) says so.
        async with self._uow(read_only=True) as uow:
            if await uow.push.get(device_id) is None:
                return
        now = self._clock.now()
        async with self._uow() as uow:
            state = await uow.push.claim(device_id, now, now + self._policy.lease)
            if state is None:
                return  # no registration: nothing to wake
            if not state.claimed:
                await uow.commit()
                self._later(device_id, state)
                return
            registration = state.registration
            wants = await uow.push.settings(registration.user_id)
            pending = (
                await uow.push.pending(device_id, registration.user_id, state.pushed_seq, now)
                if wants.push
                else None
            )
            if pending is None:  # acked meanwhile, covered already, muted, or pushes off
                await uow.push.covered(device_id, state.pushed_seq, state.next_at)
            sender = await uow.users.get(pending.sender_id) if pending and wants.previews else None
            await uow.commit()
        if pending is None:
            self._attempts.pop(device_id, None)
            if not wants.push:  # the user turned pushes off: say so, for operators and tests
                self._on_result(registration.kind.value, "suppressed")
            return
        notice = PushNotice(
            type="message",
            chat_id=pending.chat_id,
            sender_id=pending.sender_id,
            unread=pending.unread,
            up_to_seq=pending.up_to_seq,
            # The sender's profile name, which the server knows; never message text.
            sender_name=(sender.name if sender is not None else None) if wants.previews else None,
        )
        provider = registration.kind.value
        service = self._senders.get(registration.kind)
        if service is None:
            result = PushResult(PushOutcome.DROPPED, detail=f"{provider} is not configured")
        else:
            result = await service.send(registration, notice)
        await self._record(device_id, state, notice, result)

    async def _record(
        self, device_id: str, state: PushState, notice: PushNotice, result: PushResult
    ) -> None:
        registration = state.registration
        provider = registration.kind.value
        now = self._clock.now()
        attempt = self._attempts.pop(device_id, 0) + 1
        async with self._uow() as uow:
            if result.outcome is PushOutcome.GONE:
                token = registration.token or registration.endpoint
                await uow.push.delete(device_id, token)
                what = "removed"
            elif result.outcome is PushOutcome.RETRY and attempt < self._policy.max_attempts:
                delay = self._backoff(attempt, result.retry_after)
                await uow.push.covered(device_id, state.pushed_seq, now + timedelta(seconds=delay))
                self._attempts[device_id] = attempt
                self.due_in(device_id, delay)
                what = "retried"
            elif result.outcome is PushOutcome.SENT:
                await uow.push.covered(device_id, notice.up_to_seq, now + self._policy.coalesce)
                what = "sent"
            else:  # refused for good, or out of tries: these events get no push
                await uow.push.covered(device_id, notice.up_to_seq, state.next_at)
                what = "failed" if result.outcome is PushOutcome.RETRY else "dropped"
            await uow.commit()
        self._on_result(provider, what)
        log.info(
            "push." + what,
            device_id=device_id,
            provider=provider,
            unread=notice.unread,
            detail=result.detail,
        )

    def _later(self, device_id: str, state: PushState) -> None:
        """Not now (too soon after the last push, or another worker holds it): when then."""
        now = self._clock.now()
        waits = [t for t in (state.next_at, state.lease_until) if t is not None and t > now]
        delay = max(waits).timestamp() - now.timestamp() if waits else 0.0
        self.due_in(device_id, delay + 0.01)

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        """Exponential with full jitter in its upper half; never sooner than Retry-After."""
        ceiling = min(self._policy.retry_max, self._policy.retry_base * 2.0 ** (attempt - 1))
        delay = ceiling * random.uniform(0.5, 1.0)  # noqa: S311 - jitter, not a secret
        if retry_after is not None:
            delay = max(delay, min(retry_after, self._policy.retry_max))
        return delay
