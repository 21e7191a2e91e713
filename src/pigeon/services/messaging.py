"""Sending, acknowledging and reading messages: the hot path.

Every operation here goes through the group committer, so a batch of sends,
acks and read marks costs one transaction and a handful of statements.
``send``, ``ack`` and ``mark_read`` return the committer's future rather than
being coroutines: the gateway answers from a callback on it, so a message
costs no task of its own.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from pigeon.domain.chats import ChatKind, Message, MessageKind
from pigeon.domain.delivery import BatchFacts, InboxEntry, SendKey, SentRecord
from pigeon.domain.errors import InvalidInput, NotFound, PigeonError
from pigeon.domain.events import Receipt, ReceiptType
from pigeon.domain.ids import new_id
from pigeon.services import changes, fanout, forwarding
from pigeon.services.accounts import Principal
from pigeon.services.changes import ChangeOperation, ChangePolicy, ChangeResult
from pigeon.services.committer import GatherPolicy, GroupCommitter, Publish
from pigeon.services.fanout import Queued
from pigeon.services.forwarding import ForwardPolicy
from pigeon.services.ports import Bus, Clock, UnitOfWork, UnitOfWorkFactory


def chat_not_found() -> NotFound:
    """The one answer for a chat that does not exist and a chat the caller is not in."""
    return NotFound("chat_not_found", "No such chat.")


@dataclass(slots=True, frozen=True)
class SendMessage:
    principal: Principal
    chat_id: str
    client_message_id: str
    body: str
    attachments: list[Any] = field(default_factory=list)
    reply_to: str | None = None
    # A reply's excerpt of the quoted message, from the sender's client (the
    # server never reads text); and the (chat, message) a forward forwards.
    reply_excerpt: str | None = None
    forwarded_from: tuple[str, str] | None = None
    mentions: tuple[str, ...] = ()  # user ids; each must be a member of the chat
    # The id the message gets if this send is new. Made with the command, on
    # the caller's task, so the one committer task does not spend ~8 us per
    # message on it while every other send waits (a retry's id goes unused).
    message_id: str = field(default_factory=new_id)


@dataclass(slots=True, frozen=True)
class SendResult:
    """What a send became; ``duplicate`` when this device already sent that clientMessageId."""

    message_id: str
    chat_id: str
    seq: int
    created_at: datetime
    duplicate: bool = False


@dataclass(slots=True, frozen=True)
class Ack:
    principal: Principal
    up_to: int


@dataclass(slots=True, frozen=True)
class MarkRead:
    principal: Principal
    chat_id: str
    up_to_seq: int


@dataclass(slots=True, frozen=True)
class ReadResult:
    """The read mark as stored: the one asked for, clamped to the chat's last seq."""

    up_to_seq: int


# What the committer applies, and one result per operation of a batch.
Operation = SendMessage | Ack | MarkRead | ChangeOperation
BatchResult = SendResult | ReadResult | ChangeResult | PigeonError | None


@dataclass(slots=True, frozen=True)
class DeliveryPolicy:
    undelivered_ttl: timedelta = timedelta(days=30)
    max_message_length: int = 65536
    max_batch: int = 256
    # Batches committed at once; more than one only where the database takes
    # concurrent writers. Each device's operations stay on one, in order.
    commit_workers: int = 1
    # How long an ack may wait to ride with other work before it commits alone.
    ack_delay: timedelta = timedelta(milliseconds=50)
    # How long a batch waits for more while work arrives faster than that.
    gather: GatherPolicy = field(default_factory=GatherPolicy)
    on_commit: Callable[[int, float], None] = lambda size, seconds: None
    # Reactions, edits and deletes for everyone (services/changes.py).
    changes: ChangePolicy = field(default_factory=ChangePolicy)
    forwarding: ForwardPolicy = field(default_factory=ForwardPolicy)


class MessagingService:
    def __init__(
        self,
        uow: UnitOfWorkFactory,
        bus: Bus,
        clock: Clock,
        policy: DeliveryPolicy,
        batch_uow: UnitOfWorkFactory | None = None,
    ) -> None:
        self._uow = uow
        # The committer may have a unit of work of its own (SQLite: a faster path).
        self._batch_uow = batch_uow or uow
        self._bus = bus
        self._clock = clock
        self._policy = policy
        self.committer = GroupCommitter(
            self._apply_batch,
            max_batch=policy.max_batch,
            on_commit=policy.on_commit,
            workers=policy.commit_workers,
            partition=_partition,
            lazy_delay=policy.ack_delay.total_seconds(),
            gather=policy.gather,
        )

    def send(self, command: SendMessage) -> asyncio.Future[SendResult]:
        """Queue a message; the future resolves once it is committed (or fails with why not)."""
        limit = self._policy.max_message_length
        if len(command.body) > limit:
            raise InvalidInput("message_too_long", f"A message has at most {limit} characters.")
        if not command.body.strip() and not command.attachments:
            raise InvalidInput("empty_message", "A message needs text or an attachment.")
        forwarding.check(command, self._policy.forwarding)
        return self.committer.submit(command)

    def change(self, command: ChangeOperation) -> asyncio.Future[ChangeResult]:
        """Queue a reaction, an edit or a delete; it commits after the device's earlier sends."""
        changes.check(command, self._policy.changes)
        return self.committer.submit(command)

    def ack(self, command: Ack) -> asyncio.Future[None]:
        """Drop the device's queue up to ``up_to``; delivered receipts go to the senders.

        Nobody waits for it, so it rides along with the next batch (or commits
        alone within ``ack_delay``): at ordinary load an ack costs no commit of
        its own. If it never commits (a crash), the entries stay queued and
        come again; the client drops what it has (at least once, never lost).
        """
        return self.committer.submit_lazy(command)

    def commit_acks_now(self) -> None:
        """A connection ended: its acks commit now, not within ``ack_delay``, so the
        device's next connection does not get back what it acked on this one."""
        self.committer.hurry()

    async def settle_acks(self, device_id: str) -> None:
        """Commit the device's acks still waiting in the committer, and wait for them.

        A device's new connection calls this before its first queue read: the
        acks its previous connection sent may still wait for their ride, and
        without this the new connection would get back what it acked.
        """
        waiting = self.committer.lazy_waiting(
            lambda op: isinstance(op, Ack) and op.principal.device_id == device_id
        )
        if waiting:
            self.committer.hurry()
            await asyncio.gather(*waiting, return_exceptions=True)

    def mark_read(self, command: MarkRead) -> asyncio.Future[ReadResult]:
        return self.committer.submit(command)

    async def pending(self, device_id: str, after_seq: int, limit: int) -> list[InboxEntry]:
        """The device's queued events after ``after_seq``, oldest first."""
        async with self._uow(read_only=True) as uow:
            return await uow.delivery.pending(device_id, after_seq, limit)

    async def purge_expired(self) -> dict[str, int]:
        """Drop queue entries past their time, messages no queue holds, old send records."""
        now = self._clock.now()
        async with self._uow(housekeeping=True) as uow:
            counts = await uow.delivery.purge_expired(now, now - self._policy.undelivered_ttl)
            await uow.commit()
        return counts

    # -- the batch -------------------------------------------------------------

    async def _apply_batch(self, ops: Sequence[Operation]) -> tuple[list[BatchResult], Publish]:
        now = self._clock.now()
        batch = _Batch(ops, now, now + self._policy.undelivered_ttl, self._policy.forwarding)
        async with self._batch_uow() as uow:
            await batch.apply_acks(uow)
            facts = await uow.delivery.batch_facts(
                batch.chat_ids(), batch.send_keys(), batch.sender_ids()
            )
            members = facts.members
            batch.apply_sends_check(members)
            await batch.apply_reads(uow, members)
            await batch.apply_sends(uow, facts)
            entries = await fanout.assign_all_seqs(
                uow, batch.messages, batch.queued, batch.expires_at
            )
            batch.record_sends()
            await uow.delivery.insert_batch(batch.messages, batch.sent_records, entries)
            await uow.media.link(batch.links)
            entries = await batch.apply_changes(uow, members, entries, self._policy.changes)
            await uow.commit()

        return batch.results, lambda: self._bus.publish(entries)


class _Batch:
    """The state of one batch while it is applied; results line up with ``ops``."""

    def __init__(
        self,
        ops: Sequence[Operation],
        now: datetime,
        expires_at: datetime,
        forwarding: ForwardPolicy,
    ) -> None:
        self.ops = ops
        self.forwarding = forwarding
        self.now = now
        self.expires_at = expires_at
        self.results: list[BatchResult] = [None] * len(ops)
        # A send repeated within the batch: (its index, the first one's index).
        self.repeats: list[tuple[int, int]] = []
        self.fresh: list[tuple[int, SendMessage, Message]] = []  # new messages, not yet numbered
        self.queued: list[Queued] = []
        self.messages: list[Message] = []
        self.sent_records: list[SentRecord] = []
        self.links: list[tuple[str, str, str]] = []

    def chat_ids(self) -> list[str]:
        return sorted({op.chat_id for op in self.ops if not isinstance(op, Ack)})

    def send_keys(self) -> list[SendKey]:
        return sorted({_send_key(op) for op in self.ops if isinstance(op, SendMessage)})

    def sender_ids(self) -> list[str]:
        return sorted({op.principal.user_id for op in self.ops if isinstance(op, SendMessage)})

    # -- changes: after the sends are written, so a message changed in its own batch is found
    async def apply_changes(
        self,
        uow: UnitOfWork,
        members: dict[str, dict[str, list[str]]],
        entries: list[InboxEntry],
        policy: ChangePolicy,
    ) -> list[InboxEntry]:
        """The entries to publish: the batch's, less messages deleted, plus the changes'."""
        ops = [(i, op) for i, op in enumerate(self.ops) if isinstance(op, _CHANGE_OPERATIONS)]
        if not ops:
            return entries
        applied = await changes.apply(uow, ops, members, self.now, self.expires_at, policy)
        for index, result in applied.results.items():
            self.results[index] = result
        kept = [e for e in entries if e.message is None or e.message.id not in applied.deleted]
        return kept + applied.entries

    # -- acks: drop acked entries, delete fully delivered messages, tell senders
    async def apply_acks(self, uow: UnitOfWork) -> None:
        up_to: dict[str, int] = {}
        user_of: dict[str, str] = {}
        for op in self.ops:
            if isinstance(op, Ack):
                device = op.principal.device_id
                up_to[device] = max(up_to.get(device, 0), op.up_to)
                user_of[device] = op.principal.user_id
        if not up_to:
            return
        outcome = await uow.delivery.remove_acked(up_to)
        receipts: dict[tuple[str, str, str], int] = {}
        for entry in outcome.removed:
            reader = user_of[entry.device_id]
            if entry.sender_id is None or entry.sender_id == reader:
                continue
            key = (entry.chat_id, entry.sender_id, reader)
            receipts[key] = max(receipts.get(key, 0), entry.seq)
        for (chat_id, sender, reader), seq in sorted(receipts.items()):
            event = Receipt(chat_id, ReceiptType.DELIVERED, reader, seq, self.now)
            devices = outcome.sender_devices.get(sender, [])
            self.queued += [Queued(d, sender, event=event) for d in devices]

    # -- reads: raise the member's read mark, tell the senders of what it covers
    async def apply_reads(self, uow: UnitOfWork, members: dict[str, dict[str, list[str]]]) -> None:
        for index, op in enumerate(self.ops):
            if not isinstance(op, MarkRead):
                continue
            chat_members = members.get(op.chat_id, {})
            reader = op.principal.user_id
            if reader not in chat_members:
                self.results[index] = chat_not_found()
                continue
            chat = await uow.chats.get(op.chat_id)
            up_to = min(op.up_to_seq, chat.last_seq if chat else 0)
            before = await uow.chats.raise_read_seq(op.chat_id, reader, up_to)
            if before is not None:
                senders = await uow.delivery.senders_between(op.chat_id, before, up_to)
                if chat is not None and chat.kind is ChatKind.DIRECT and senders:
                    senders = await _receipts_on(uow, reader, senders)
                self._tell_read(op, chat_members, senders, up_to)
            self.results[index] = ReadResult(up_to)

    def _tell_read(
        self, op: MarkRead, members: dict[str, list[str]], senders: set[str], up_to: int
    ) -> None:
        """As WhatsApp does: the receipt goes to the devices of those whose messages were
        read (nobody else learns who read what), and to the reader's other devices, which
        keep their read state in step."""
        reader = op.principal.user_id
        event = Receipt(op.chat_id, ReceiptType.READ, reader, up_to, self.now)
        self.queued += [
            Queued(d, reader, event=event) for d in members[reader] if d != op.principal.device_id
        ]
        for sender in sorted(senders - {reader}):  # a sender who left the chat is not told
            self.queued += [Queued(d, sender, event=event) for d in members.get(sender, [])]

    # -- sends: dedupe, authorize, number, queue for every other device
    def apply_sends_check(self, members: dict[str, dict[str, list[str]]]) -> None:
        for index, op in enumerate(self.ops):
            if not isinstance(op, SendMessage):
                continue
            chat_members = members.get(op.chat_id, {})
            if op.principal.user_id not in chat_members:
                self.results[index] = chat_not_found()
            elif any(user_id not in chat_members for user_id in op.mentions):
                self.results[index] = InvalidInput(
                    "invalid_mentions", "Only members of the chat can be mentioned."
                )

    async def apply_sends(self, uow: UnitOfWork, facts: BatchFacts) -> None:
        """The sends that passed ``apply_sends_check``: repeats answered, new messages
        queued for their recipients. Seqs come after (``record_sends``), allocated
        with the queue entries' in one round trip."""
        sends = [
            (i, op)
            for i, op in enumerate(self.ops)
            if isinstance(op, SendMessage) and self.results[i] is None
        ]
        first_in_batch: dict[SendKey, int] = {}
        fresh: list[tuple[int, SendMessage, Message]] = []
        for index, op in sends:
            key = _send_key(op)
            record = facts.earlier_sends.get(key)
            if record is not None:
                self.results[index] = _result(record, duplicate=True)
            elif key in first_in_batch:
                self.repeats.append((index, first_in_batch[key]))  # see record_sends
            else:
                first_in_batch[key] = index
                fresh.append((index, op, _new_message(op, self.now)))
        fresh = await self._settle_forwards(uow, fresh)
        fresh = await self._attach(uow, fresh)
        self._set_expiry(fresh, facts.timers)
        self.fresh = fresh
        for _, op, message in fresh:
            self.messages.append(message)
            sender_device = op.principal.device_id
            for user_id, device_ids in facts.members[op.chat_id].items():
                if (op.chat_id, user_id, op.principal.user_id) in facts.blocks:
                    continue  # accepted, never delivered: one tick forever, as in WhatsApp
                self.queued += [
                    Queued(d, user_id, message=message) for d in device_ids if d != sender_device
                ]

    def record_sends(self) -> None:
        """The new messages' send records and answers, once they have their seqs."""
        for index, op, message in self.fresh:
            record = SentRecord(
                sender_device_id=op.principal.device_id,
                client_message_id=op.client_message_id,
                message_id=message.id,
                chat_id=message.chat_id,
                seq=message.seq,
                created_at=message.created_at,
                sender_id=op.principal.user_id,
                has_attachments=bool(message.attachments),
                forward_hops=message.forward_hops,
                forwarded_from=op.forwarded_from[1] if op.forwarded_from else None,
                expires_at=message.expires_at,
            )
            self.sent_records.append(record)
            self.results[index] = _result(record, duplicate=False)
        for index, first in self.repeats:  # the first send's answer, marked as a repeat
            original = self.results[first]
            self.results[index] = (
                SendResult(
                    original.message_id, original.chat_id, original.seq, original.created_at, True
                )
                if isinstance(original, SendResult)
                else original
            )

    def _set_expiry(
        self, fresh: list[tuple[int, SendMessage, Message]], timers: dict[str, int]
    ) -> None:
        """Messages sent while their chat's disappearing timer is on expire with it."""
        for _, _, message in fresh:
            seconds = timers.get(message.chat_id)
            if seconds:
                message.expires_at = self.now + timedelta(seconds=seconds)

    async def _settle_forwards(
        self, uow: UnitOfWork, fresh: list[tuple[int, SendMessage, Message]]
    ) -> list[tuple[int, SendMessage, Message]]:
        """Count forwards' hops and quote replies; refuse forwards of what the sender cannot see."""
        wanted = [f for f in fresh if f[1].forwarded_from is not None or f[1].reply_excerpt]
        if not wanted:
            return fresh
        refused = await forwarding.settle(uow, wanted, self.now, self.forwarding)
        for index, error in refused.items():
            self.results[index] = error
        return [f for f in fresh if f[0] not in refused]

    async def _attach(
        self, uow: UnitOfWork, fresh: list[tuple[int, SendMessage, Message]]
    ) -> list[tuple[int, SendMessage, Message]]:
        """Put attachment metadata on messages; refuse attachments the sender cannot read."""
        wanted = [(i, op, m) for i, op, m in fresh if op.attachments]
        if not wanted:
            return fresh
        found = await uow.media.get_many(sorted({a for _, op, _ in wanted for a in op.attachments}))
        readable: dict[str, set[str]] = {}
        for _, op, _ in wanted:
            user = op.principal.user_id
            if user not in readable:
                mine = [
                    a for _, o, _ in wanted if o.principal.user_id == user for a in o.attachments
                ]
                readable[user] = await uow.media.readable(sorted(set(mine)), user)
        kept = []
        for index, op, message in fresh:
            ids = list(dict.fromkeys(op.attachments))
            if any(a not in readable.get(op.principal.user_id, set()) for a in ids):
                self.results[index] = NotFound("attachment_not_found", "No such attachment.")
                continue
            message.attachments = [found[a].metadata() for a in ids]
            self.links += [(a, message.id, message.chat_id) for a in ids]
            kept.append((index, op, message))
        return kept


async def _receipts_on(uow: UnitOfWork, reader: str, senders: set[str]) -> set[str]:
    """The senders a 1:1 read receipt goes to: none if the reader turned read receipts
    off, and never one who turned them off (off works both ways; groups keep them)."""
    privacy = await uow.people.privacy(sorted(senders | {reader}))
    if not privacy[reader].read_receipts:
        return set()
    return {sender for sender in senders if privacy[sender].read_receipts}


# A tuple, made once: ``A | B | C`` in the loop made two union objects per operation.
_CHANGE_OPERATIONS = (changes.React, changes.EditMessage, changes.DeleteMessage)


def _send_key(op: SendMessage) -> SendKey:
    return (op.principal.device_id, op.chat_id, op.client_message_id)


def _partition(op: Operation) -> str:
    """Which committer takes ``op``: each device's sends, acks and reads commit in the order
    it sent them (messages from different devices have no order until they get their seqs)."""
    return op.principal.device_id


def _new_message(op: SendMessage, now: datetime) -> Message:
    return Message(
        id=op.message_id,
        chat_id=op.chat_id,
        seq=0,
        kind=MessageKind.TEXT,
        sender_id=op.principal.user_id,
        sender_device_id=op.principal.device_id,
        body=op.body,
        created_at=now,
        attachments=[],
        reply_to=op.reply_to,
        mentions=list(dict.fromkeys(op.mentions)),
    )


def _result(record: SentRecord, duplicate: bool) -> SendResult:
    return SendResult(record.message_id, record.chat_id, record.seq, record.created_at, duplicate)
