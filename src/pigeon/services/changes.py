"""Reactions, edits and deletes for everyone: changes to a message already sent.

They go through the group committer like sends, so each device's changes
commit in the order it made them and after its sends. A change is checked
against the message's send record (``sent_messages``), which outlives the
message itself (deleted once delivered); the server never reads the text.
Each accepted change is queued as an event of its own for every device of
the chat but the one that made it, so devices that were offline converge.

A change to a message the caller cannot change, whoever they are (an
outsider, a removed member, a member changing another's message), gets the
one answer an unknown message gets: ``message_not_found``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from pigeon.domain.changes import ChangeKind, MessageChange, MessageRecord, is_reaction
from pigeon.domain.chats import ChatKind, Role
from pigeon.domain.delivery import InboxEntry
from pigeon.domain.errors import InvalidInput, NotFound, PigeonError
from pigeon.services import fanout
from pigeon.services.accounts import Principal
from pigeon.services.fanout import Queued
from pigeon.services.ports import UnitOfWork


@dataclass(slots=True, frozen=True)
class React:
    principal: Principal
    chat_id: str
    message_id: str
    emoji: str  # empty: remove the caller's reaction


@dataclass(slots=True, frozen=True)
class EditMessage:
    principal: Principal
    chat_id: str
    message_id: str
    text: str


@dataclass(slots=True, frozen=True)
class DeleteMessage:
    principal: Principal
    chat_id: str
    message_id: str


ChangeOperation = React | EditMessage | DeleteMessage


@dataclass(slots=True, frozen=True)
class ChangeResult:
    """When the change was made (what the other devices are told as ``at``)."""

    at: datetime


@dataclass(slots=True, frozen=True)
class ChangePolicy:
    edit_window: timedelta = timedelta(minutes=15)
    delete_window: timedelta = timedelta(hours=48)
    max_message_length: int = 65536


def message_not_found() -> NotFound:
    """The one answer for a message that does not exist and one the caller may not change."""
    return NotFound("message_not_found", "No such message.")


def check(op: ChangeOperation, policy: ChangePolicy) -> None:
    """What can be refused before the committer: the input alone."""
    if isinstance(op, React) and not is_reaction(op.emoji):
        raise InvalidInput("invalid_reaction", "A reaction is one emoji (or empty, to remove it).")
    if isinstance(op, EditMessage):
        limit = policy.max_message_length
        if len(op.text) > limit:
            raise InvalidInput("message_too_long", f"A message has at most {limit} characters.")
        if not op.text.strip():
            raise InvalidInput("empty_message", "An edit needs text; delete the message instead.")


@dataclass(slots=True)
class AppliedChanges:
    """One batch's changes: a result per operation, the queued events, deleted messages."""

    results: dict[int, ChangeResult | PigeonError] = field(default_factory=dict)
    entries: list[InboxEntry] = field(default_factory=list)
    deleted: set[str] = field(default_factory=set)


async def apply(
    uow: UnitOfWork,
    ops: Sequence[tuple[int, ChangeOperation]],
    members: dict[str, dict[str, list[str]]],
    now: datetime,
    expires_at: datetime,
    policy: ChangePolicy,
) -> AppliedChanges:
    """Apply ``ops`` (with their index in the batch) after the batch's sends were written,
    so a message sent and changed in one batch is found like any other."""
    applied = AppliedChanges()
    queued: list[Queued] = []
    for index, op in ops:
        chat_members = members.get(op.chat_id, {})
        actor = op.principal.user_id
        record = None
        if actor in chat_members:
            record = await uow.changes.find(op.chat_id, op.message_id)
        if record is None or record.gone(now) or record.message_id in applied.deleted:
            applied.results[index] = message_not_found()
            continue
        outcome = await _change(uow, op, record, now, policy)
        if isinstance(outcome, PigeonError):
            applied.results[index] = outcome
            continue
        if outcome.kind is ChangeKind.DELETED:
            applied.deleted.add(record.message_id)
        applied.results[index] = ChangeResult(now)
        device = op.principal.device_id
        for user_id, device_ids in chat_members.items():
            queued += [
                Queued(d, user_id, event=outcome, expires_at=record.expires_at)
                for d in device_ids
                if d != device
            ]
    applied.entries = await fanout.enqueue(uow, queued, expires_at)
    return applied


async def _change(
    uow: UnitOfWork,
    op: ChangeOperation,
    record: MessageRecord,
    now: datetime,
    policy: ChangePolicy,
) -> MessageChange | PigeonError:
    """Check ``op`` against the message and apply it; the event to queue, or why not."""
    actor = op.principal.user_id
    if isinstance(op, React):
        return MessageChange(
            ChangeKind.REACTION, op.chat_id, op.message_id, actor, now, emoji=op.emoji
        )
    if isinstance(op, EditMessage):
        if record.sender_id != actor:
            return message_not_found()
        if record.has_attachments:
            return InvalidInput("message_not_editable", "Only text messages can be edited.")
        if now - record.created_at > policy.edit_window:
            return InvalidInput("edit_window_closed", "This message is too old to edit.")
        await uow.changes.replace_text(op.message_id, op.text)
        return MessageChange(ChangeKind.EDITED, op.chat_id, op.message_id, actor, now, text=op.text)
    if record.sender_id != actor and not await _is_group_admin(uow, op.chat_id, actor):
        return message_not_found()
    if now - record.created_at > policy.delete_window:
        return InvalidInput("delete_window_closed", "This message is too old to delete.")
    await uow.changes.mark_deleted(op.message_id, now)
    await uow.changes.drop_queued(op.message_id)
    return MessageChange(ChangeKind.DELETED, op.chat_id, op.message_id, actor, now)


async def _is_group_admin(uow: UnitOfWork, chat_id: str, user_id: str) -> bool:
    chat = await uow.chats.get(chat_id)
    if chat is None or chat.kind is not ChatKind.GROUP:
        return False
    member = await uow.chats.member(chat_id, user_id)
    return member is not None and member.role is Role.ADMIN
