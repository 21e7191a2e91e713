"""Chats, members and roles, and the rules of who may change what."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any


class ChatKind(StrEnum):
    DIRECT = "direct"
    GROUP = "group"


class Role(StrEnum):
    ADMIN = "admin"
    MEMBER = "member"


class MessageKind(StrEnum):
    TEXT = "text"
    SYSTEM = "system"


GROUP_NAME_MAX_LENGTH = 100
# Disappearing messages: off, 24 hours, 7 days, 90 days (seconds), as WhatsApp offers.
DISAPPEARING_TIMERS = (0, 86_400, 604_800, 7_776_000)


@dataclass(slots=True)
class Chat:
    id: str
    kind: ChatKind
    name: str
    created_by: str
    created_at: datetime
    last_seq: int = 0
    direct_key: str | None = None
    disappear_seconds: int = 0  # 0: messages do not disappear


@dataclass(slots=True)
class Member:
    chat_id: str
    user_id: str
    role: Role
    joined_at: datetime
    read_seq: int = 0


@dataclass(slots=True)
class Message:
    """A message as stored until every recipient device has acked it."""

    id: str
    chat_id: str
    seq: int
    kind: MessageKind
    sender_id: str | None
    sender_device_id: str | None
    body: str
    created_at: datetime
    attachments: list[Any] = field(default_factory=list)
    reply_to: str | None = None
    system: dict[str, Any] | None = None
    forward_hops: int = 0  # 0: not forwarded
    # A reply's quote: the excerpt the sender's client gave, and the quoted sender.
    quote: dict[str, Any] | None = None
    expires_at: datetime | None = None  # sent while the chat's disappearing timer was on
    mentions: list[str] = field(default_factory=list)  # user ids, each a member when sent


def direct_key(user_a: str, user_b: str) -> str:
    """The one key a pair of users' 1:1 chat has, whoever created it."""
    first, second = sorted((user_a, user_b))
    return f"{first}:{second}"


def may_set_disappearing(chat: Chat, actor: Member) -> bool:
    """Any member of a 1:1 chat; an admin of a group."""
    return chat.kind is ChatKind.DIRECT or actor.role is Role.ADMIN


def may_add(actor: Member) -> bool:
    return actor.role is Role.ADMIN


def may_remove(actor: Member, target_user_id: str) -> bool:
    """Admins remove anyone; everyone may remove themselves (leave)."""
    return actor.role is Role.ADMIN or actor.user_id == target_user_id
