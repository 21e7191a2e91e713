"""The ports services depend on; adapters (storage, sms, ratelimit, ...) implement them."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from types import TracebackType
from typing import Protocol, Self

from pigeon.domain.broadcasts import BroadcastList
from pigeon.domain.changes import MessageRecord
from pigeon.domain.chats import Chat, Member, Message, Role
from pigeon.domain.delivery import AckOutcome, BatchFacts, InboxEntry, SendKey, SentRecord
from pigeon.domain.events import LiveEvent
from pigeon.domain.media import Attachment, Upload
from pigeon.domain.models import CodePurpose, Device, User, VerificationCode
from pigeon.domain.people import (
    LastSeenAudience,
    Privacy,
    ProfilePhoto,
    Status,
    StatusList,
)
from pigeon.domain.push import (
    ChatMute,
    NotificationSettings,
    PendingPush,
    PushNotice,
    PushRegistration,
)


class StorageError(Exception):
    """The database refused or failed a transaction; it was rolled back.

    Storage adapters raise it instead of their driver's errors, so services can
    retry without knowing which database is behind the port.
    """


class StorageUnreachable(StorageError):
    """No connection to the database could be made at all."""


class Clock(Protocol):
    def now(self) -> datetime:
        """The current time, timezone-aware UTC."""
        ...


class UserRepository(Protocol):
    async def get(self, user_id: str) -> User | None: ...
    async def get_by_phone(self, phone: str) -> User | None: ...
    async def add(self, user: User) -> None: ...
    async def update_profile(self, user_id: str, values: Mapping[str, str | None]) -> None: ...
    async def set_pin(self, user_id: str, pin_hash: str | None) -> None: ...
    async def set_pin_reset_requested(self, user_id: str, at: datetime | None) -> None: ...
    async def set_last_seen(self, user_id: str, at: datetime) -> None: ...
    async def list(self, limit: int, after_id: str | None = None) -> Sequence[User]: ...


class DeviceRepository(Protocol):
    async def add(self, device: Device) -> None: ...
    async def get(self, device_id: str) -> Device | None: ...
    async def get_by_access_hashes(self, token_hashes: Sequence[str]) -> dict[str, Device]:
        """The devices holding these access tokens, by token hash."""

    async def get_by_refresh_hash(self, token_hash: str) -> Device | None: ...
    async def list_for_user(self, user_id: str) -> Sequence[Device]: ...
    async def count_for_user(self, user_id: str) -> int: ...
    async def count(self) -> int: ...
    async def existing(self, device_ids: Sequence[str]) -> set[str]: ...
    async def delete_expired(self, now: datetime) -> list[str]:
        """Delete devices whose refresh token expired; returns their ids."""
        ...

    async def delete(self, device_id: str) -> bool: ...
    async def replace_tokens(self, device: Device) -> None:
        """Store ``device``'s token hashes, expiries and last-seen time."""
        ...


@dataclass(slots=True, frozen=True)
class CodeAttempt:
    """A code as it stood when one verification attempt was claimed against it."""

    code_hash: str
    expires_at: datetime
    attempts: int


class CodeRepository(Protocol):
    async def put(self, code: VerificationCode) -> None:
        """Store ``code``, replacing any earlier code for the same phone and purpose."""
        ...

    async def claim_attempt(
        self, phone: str, purpose: CodePurpose, max_attempts: int
    ) -> CodeAttempt | None:
        """Count one guess, atomically, unless ``max_attempts`` are already used.

        Returns None when there is no code or its guesses are used up, so that
        concurrent guesses can never evaluate more than ``max_attempts``.
        """
        ...

    async def consume(self, phone: str, purpose: CodePurpose, code_hash: str) -> bool:
        """Delete the code if it is still there; True for exactly one caller."""
        ...

    async def exists(self, phone: str, purpose: CodePurpose) -> bool: ...
    async def purge_expired(self, now: datetime) -> int: ...


class ChatRepository(Protocol):
    async def add(self, chat: Chat, members: Sequence[Member]) -> None: ...
    async def add_direct(self, chat: Chat, members: Sequence[Member]) -> Chat:
        """Add a 1:1 chat, or return the same pair's chat if it appeared meanwhile."""
        ...

    async def get(self, chat_id: str) -> Chat | None: ...
    async def get_direct(self, key: str) -> Chat | None: ...
    async def add_directs(self, pairs: Sequence[tuple[Chat, Sequence[Member]]]) -> dict[str, Chat]:
        """Add many 1:1 chats at once; by key, the chat stored (ours or an earlier one)."""
        ...

    async def get_directs(self, keys: Sequence[str]) -> dict[str, Chat]:
        """The 1:1 chats of these keys that exist, by key (one query)."""
        ...

    async def rename(self, chat_id: str, name: str) -> None: ...
    async def set_disappearing(self, chat_id: str, seconds: int) -> None: ...
    async def member(self, chat_id: str, user_id: str) -> Member | None: ...
    async def members(self, chat_id: str) -> Sequence[Member]: ...
    async def count_members(self, chat_id: str) -> int: ...
    async def add_member(self, member: Member) -> None: ...
    async def remove_member(self, chat_id: str, user_id: str) -> None: ...
    async def set_role(self, chat_id: str, user_id: str, role: Role) -> None: ...
    async def memberships(self, user_id: str) -> Sequence[tuple[Chat, Member]]: ...
    async def raise_read_seq(self, chat_id: str, user_id: str, seq: int) -> int | None:
        """Move the member's read mark up to ``seq``; the mark it had, or None if it was
        already there (or the user is no member)."""
        ...

    async def contacts(self, user_id: str) -> set[str]:
        """Users who share at least one chat with ``user_id`` (not the user)."""
        ...

    async def sharing_a_chat(self, user_ids: Sequence[str]) -> dict[str, set[str]]:
        """``contacts`` of each of ``user_ids`` in one read; users with none are left out."""
        ...


class DeliveryRepository(Protocol):
    """The hot path's queries; each takes a whole batch so a batch costs a few round trips."""

    async def find_sent(
        self, keys: Sequence[tuple[str, str, str]]
    ) -> dict[tuple[str, str, str], SentRecord]:
        """Earlier sends by (sender device, chat, clientMessageId)."""
        ...

    async def member_devices(self, chat_ids: Sequence[str]) -> dict[str, dict[str, list[str]]]:
        """chat -> member user -> that user's device ids (members without devices included)."""
        ...

    async def devices_of(self, user_ids: Sequence[str]) -> dict[str, list[str]]: ...
    async def disappearing(self, chat_ids: Sequence[str]) -> dict[str, int]:
        """The chats among ``chat_ids`` whose messages disappear, with their timers."""
        ...

    async def direct_blocks(
        self, chat_ids: Sequence[str], sender_ids: Sequence[str]
    ) -> set[tuple[str, str, str]]:
        """(chat, blocker, blocked) for the 1:1 chats among ``chat_ids`` whose other
        member blocked one of ``sender_ids``."""
        ...

    async def batch_facts(
        self, chat_ids: Sequence[str], send_keys: Sequence[SendKey], sender_ids: Sequence[str]
    ) -> BatchFacts:
        """``member_devices`` and ``disappearing`` of ``chat_ids``, ``find_sent`` of
        ``send_keys`` and ``direct_blocks`` of ``sender_ids`` in them, in one read."""
        ...

    async def allocate_chat_seqs(self, counts: Mapping[str, int]) -> dict[str, int]:
        """Reserve ``n`` seqs per chat; returns each chat's new last seq."""
        ...

    async def allocate_inbox_seqs(self, counts: Mapping[str, int]) -> dict[str, int]:
        """Reserve ``n`` inbox seqs per device; returns each device's new last seq."""
        ...

    async def allocate_seqs(
        self, chat_counts: Mapping[str, int], device_counts: Mapping[str, int]
    ) -> tuple[dict[str, int], dict[str, int]]:
        """``allocate_chat_seqs`` and then ``allocate_inbox_seqs``, in one round trip."""
        ...

    async def insert_messages(self, messages: Sequence[Message]) -> None: ...
    async def insert_inbox(self, entries: Sequence[InboxEntry]) -> None: ...
    async def insert_batch(
        self, messages: Sequence[Message], sent: Sequence[SentRecord], entries: Sequence[InboxEntry]
    ) -> None:
        """Insert a batch's messages, their send records and queue entries, in that order."""
        ...

    async def remove_acked(self, acks: Mapping[str, int]) -> AckOutcome:
        """Delete each device's entries up to its seq, then the messages no queue holds
        any more; returns the message entries removed and their senders' devices."""
        ...

    async def senders_between(self, chat_id: str, after_seq: int, up_to_seq: int) -> set[str]:
        """Users who sent the chat's messages with seqs in ``(after_seq, up_to_seq]``, as far
        as the send records (kept for the undelivered TTL) remember."""
        ...

    async def pending(self, device_id: str, after_seq: int, limit: int) -> list[InboxEntry]: ...
    async def purge_expired(self, now: datetime, sent_before: datetime) -> dict[str, int]: ...


class MediaRepository(Protocol):
    async def use_blob(self, sha256: str, size: int, now: datetime) -> bool: ...
    async def add(self, attachment: Attachment) -> None: ...
    async def get_many(self, attachment_ids: Sequence[str]) -> dict[str, Attachment]: ...
    async def readable(self, attachment_ids: Sequence[str], user_id: str) -> set[str]: ...
    async def link(self, links: Sequence[tuple[str, str, str]]) -> None: ...
    async def add_upload(self, upload: Upload) -> None: ...
    async def get_upload(self, upload_id: str) -> Upload | None: ...
    async def advance_upload(self, upload_id: str, expected: int, offset: int) -> bool: ...
    async def delete_upload(self, upload_id: str) -> None: ...
    async def purge(
        self, now: datetime, blob_grace_before: datetime
    ) -> tuple[list[str], list[str]]: ...


class PeopleRepository(Protocol):
    """Contacts (matched users' ids only), blocks and privacy settings."""

    async def users_by_phones(self, phones: Sequence[str]) -> list[User]: ...
    async def add_contacts(
        self, owner_id: str, contact_ids: Sequence[str], now: datetime
    ) -> None: ...
    async def contacts_of(self, owner_id: str) -> list[User]: ...
    async def has_as_contact(self, owner_ids: Sequence[str], contact_id: str) -> set[str]: ...
    async def contact_ids(self, owner_id: str, among: Sequence[str]) -> set[str]: ...
    async def owners_of(self, contact_id: str) -> list[str]: ...
    async def block(self, blocker_id: str, blocked_id: str, now: datetime) -> None: ...
    async def unblock(self, blocker_id: str, blocked_id: str) -> None: ...
    async def blocked_by(self, blocker_id: str) -> list[tuple[str, datetime]]: ...
    async def blockers_among(self, user_ids: Sequence[str], blocked_id: str) -> set[str]: ...
    async def blocked_among(self, blocker_id: str, user_ids: Sequence[str]) -> set[str]: ...
    async def privacy(self, user_ids: Sequence[str]) -> dict[str, Privacy]: ...
    async def last_seen_audiences(
        self, owner_ids: Sequence[str], viewer_ids: Sequence[str]
    ) -> dict[str, LastSeenAudience]:
        """For each owner: their last-seen setting, which of the viewers they blocked
        and which they keep as contacts (one read for all)."""
        ...

    async def set_privacy(self, user_id: str, privacy: Privacy, now: datetime) -> None: ...
    async def photos(self, user_ids: Sequence[str]) -> dict[str, ProfilePhoto]: ...
    async def status_list(self, owner_id: str, which: StatusList) -> list[str]: ...
    async def set_status_list(
        self, owner_id: str, which: StatusList, user_ids: Sequence[str]
    ) -> None: ...
    async def lists_with(
        self, owner_ids: Sequence[str], user_id: str
    ) -> dict[str, set[StatusList]]: ...
    async def set_photo(
        self, user_id: str, attachment_id: str | None, now: datetime
    ) -> str | None: ...


class StatusRepository(Protocol):
    async def add(self, status: Status) -> None: ...
    async def get(self, status_id: str, now: datetime) -> Status | None: ...
    async def current_of(self, author_ids: Sequence[str], now: datetime) -> list[Status]: ...
    async def delete(self, status_ids: Sequence[str], now: datetime) -> None: ...
    async def expired(self, now: datetime) -> list[str]: ...
    async def add_view(self, status_id: str, viewer_id: str, now: datetime) -> None: ...
    async def views(self, status_id: str) -> list[tuple[str, datetime]]: ...
    async def mute(self, owner_id: str, muted_id: str, now: datetime) -> None: ...
    async def unmute(self, owner_id: str, muted_id: str) -> None: ...
    async def muted(self, owner_id: str) -> list[str]: ...


class ErasureRepository(Protocol):
    async def erase_user(self, user_id: str, phone: str) -> list[str]:
        """Delete the user and every row naming them or their devices; their device ids.

        The user must have left their chats first. Attachments other people's
        messages carry stay, without their uploader.
        """
        ...


class BroadcastRepository(Protocol):
    async def add(self, broadcast: BroadcastList) -> None: ...
    async def get(self, list_id: str) -> BroadcastList | None:
        """The list with its recipients (whoever owns it: the caller checks)."""
        ...

    async def list_for_owner(self, owner_id: str) -> Sequence[BroadcastList]: ...
    async def update(self, list_id: str, name: str | None, recipients: list[str] | None) -> None:
        """Rename and/or replace the recipients (None leaves that part as it is)."""
        ...

    async def delete(self, list_id: str) -> None: ...


class BlobStore(Protocol):
    """Content-addressed object storage: the key of an object is its SHA-256."""

    async def put(self, key: str, path: Path, content_type: str) -> None:
        """Store the file at ``path`` under ``key``, all or nothing."""
        ...

    async def exists(self, key: str) -> bool: ...
    def read(self, key: str, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        """The object's bytes ``start..end`` (inclusive), in chunks."""
        ...

    async def delete(self, key: str) -> None: ...
    async def close(self) -> None: ...


class MessageChangeRepository(Protocol):
    """What reactions, edits and deletes for everyone need (storage/changes.py)."""

    async def find(self, chat_id: str, message_id: str) -> MessageRecord | None: ...
    async def last_forward(
        self, message_id: str, user_id: str, since: datetime
    ) -> datetime | None: ...
    async def mark_deleted(self, message_id: str, at: datetime) -> None: ...
    async def drop_queued(self, message_id: str) -> int: ...
    async def replace_text(self, message_id: str, text: str) -> None: ...


class UnitOfWork(Protocol):
    """One transaction over all repositories; rolled back unless ``commit`` is called."""

    @property
    def users(self) -> UserRepository: ...
    @property
    def devices(self) -> DeviceRepository: ...
    @property
    def codes(self) -> CodeRepository: ...
    @property
    def chats(self) -> ChatRepository: ...
    @property
    def delivery(self) -> DeliveryRepository: ...
    @property
    def media(self) -> MediaRepository: ...
    @property
    def people(self) -> PeopleRepository: ...
    @property
    def push(self) -> PushRepository: ...
    @property
    def changes(self) -> MessageChangeRepository: ...
    @property
    def erasure(self) -> ErasureRepository: ...
    @property
    def broadcasts(self) -> BroadcastRepository: ...
    @property
    def statuses(self) -> StatusRepository: ...
    @property
    def recovery_emails(self) -> RecoveryEmailRepository: ...

    async def __aenter__(self) -> Self: ...
    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...
    async def commit(self) -> None: ...


class UnitOfWorkFactory(Protocol):
    def __call__(self, *, read_only: bool = False, housekeeping: bool = False) -> UnitOfWork:
        """A new unit of work.

        ``read_only`` ones never block writers and never wait for them.
        ``housekeeping`` ones (purges) may scan whole tables: on SQLite they
        run on a pooled connection in a worker thread, not on the writer the
        requests share, so the event loop never waits for them.
        """
        ...


class RateLimiter(Protocol):
    async def hit(self, rule: str, key: str, cost: int = 1) -> None:
        """Count ``cost`` events against ``rule`` for ``key``; raise RateLimited when over
        (then none of them counts against the rule's item that refused)."""
        ...

    async def retry_after(self, rule: str, key: str) -> int:
        """Seconds until ``rule`` allows ``key`` another event (0 if it does now)."""
        ...


class PinHasher(Protocol):
    async def hash(self, pin: str) -> str: ...
    async def verify(self, pin_hash: str, pin: str) -> bool: ...


@dataclass(slots=True, frozen=True)
class SmsMessage:
    to: str
    template: str
    body: str


class SmsProvider(Protocol):
    async def send(self, message: SmsMessage) -> None:
        """Hand ``message`` to the carrier; raise PigeonError on refusal or outage."""
        ...


@dataclass(slots=True, frozen=True)
class EmailMessage:
    to: str
    template: str
    subject: str
    text: str
    html: str


class EmailProvider(Protocol):
    async def send(self, message: EmailMessage) -> None:
        """Hand ``message`` to the mail server; raise PigeonError on refusal or outage."""
        ...


class EmailTemplates(Protocol):
    def render(
        self, template: str, locale: str | None, params: Mapping[str, str]
    ) -> tuple[str, str, str]:
        """(subject, text, html)."""
        ...


@dataclass(slots=True, frozen=True)
class RecoveryEmail:
    """A user's recovery email: the verified address, and one waiting for its code."""

    user_id: str
    email: str | None = None
    verified_at: datetime | None = None
    pending_email: str | None = None
    code_hash: str | None = None
    code_expires_at: datetime | None = None
    attempts: int = 0
    reset_code_hash: str | None = None
    reset_expires_at: datetime | None = None
    reset_attempts: int = 0


class RecoveryEmailRepository(Protocol):
    async def get(self, user_id: str) -> RecoveryEmail | None: ...
    async def put(self, record: RecoveryEmail) -> None: ...
    async def delete(self, user_id: str) -> None: ...


class SmsTemplates(Protocol):
    def render(self, template: str, locale: str | None, params: Mapping[str, str]) -> str: ...


class Subscriber(Protocol):
    """A live connection of one device, as the bus sees it. Calls must not block."""

    device_id: str
    user_id: str

    def deliver(self, entries: Sequence[InboxEntry]) -> None:
        """New queued events (already durable), in inbox order."""
        ...

    def notify(self, event: LiveEvent) -> None:
        """An event that is not queued (typing, presence)."""
        ...

    def close(self, code: int, reason: str) -> None: ...

    def resync(self) -> None:
        """Read the queue again: the bus may have dropped events (it was down, say)."""
        ...


class Bus(Protocol):
    """Carries events to live connections, on whichever node holds them.

    Nothing is durable here: queued events are committed before they are
    published, and a connection that missed a publish reads them back from
    its queue. So publishing never blocks its caller (the committer) and never
    fails it: an adapter sends in the background and drops what it cannot
    send. Each device's publishes arrive in order or are detected as a gap.
    """

    def publish(self, entries: Sequence[InboxEntry]) -> None:
        """Committed queue entries for any devices: one call per committed batch."""
        ...

    def notify(self, user_ids: Sequence[str], event: LiveEvent) -> None:
        """Tell every live connection of these users (typing, presence)."""
        ...

    def disconnect(self, device_id: str, code: int, reason: str) -> None:
        """Close the device's connection wherever it is (a revoked device)."""
        ...

    async def attach(self, subscriber: Subscriber) -> None:
        """Route the device's events to ``subscriber``; its older connection on any node
        is closed (4409)."""
        ...

    async def detach(self, subscriber: Subscriber) -> None:
        """Stop routing to ``subscriber`` (unless a newer connection replaced it already)."""
        ...

    def local_devices(self) -> list[str]:
        """Devices with a live connection on this node."""
        ...

    @property
    def connections(self) -> int:
        """Live connections on this node."""
        ...


class Presence(Protocol):
    """Who has a live connection anywhere: the directory every node shares."""

    async def online_users(self, user_ids: Sequence[str]) -> set[str]:
        """Those users with a live connection on any node."""
        ...


class DeliveryFeedback(Protocol):
    """Hears which published entries found no live connection: their devices need a push.

    Called by the bus, on the publisher's path: it must not block or await
    (a push is sent from a task of its own, never inside the committer).
    """

    def unreached(self, entries: Sequence[InboxEntry]) -> None: ...


# -- push notifications (issue 18) ------------------------------------------------


@dataclass(slots=True, frozen=True)
class PushState:
    """A device's registration and how far its pushes got.

    ``pushed_seq`` is the last inbox seq a sent push covered; ``next_at`` the
    earliest time of the next push (coalescing); ``lease_until`` how long a
    worker that claimed the device may take before another may try.
    """

    registration: PushRegistration
    pushed_seq: int
    next_at: datetime | None
    lease_until: datetime | None
    claimed: bool = False


class PushRepository(Protocol):
    async def put(self, registration: PushRegistration) -> None:
        """Store the device's registration, replacing any earlier one."""
        ...

    async def get(self, device_id: str) -> PushRegistration | None: ...
    async def delete(self, device_id: str, token: str | None = None) -> bool:
        """Delete the device's registration (only if it still has ``token``, when given)."""
        ...

    async def due(self) -> list[str]:
        """Devices whose queues hold messages that no sent push covered."""
        ...

    async def claim(self, device_id: str, now: datetime, lease_until: datetime) -> PushState | None:
        """Take the device's next push, unless another worker holds it or it is too soon
        after the last; the state either way (``claimed`` says which), None if unregistered."""
        ...

    async def pending(
        self, device_id: str, user_id: str, after_seq: int, now: datetime
    ) -> PendingPush | None:
        """Others' messages in the device's queue after ``after_seq``, outside chats the
        user muted (a mention of the user counts anyway): the latest and the unread count
        (None: nothing to push)."""
        ...

    async def settings(self, user_id: str) -> NotificationSettings: ...
    async def put_settings(self, user_id: str, settings: NotificationSettings) -> None: ...
    async def mute(self, chat_id: str, user_id: str, until: datetime | None) -> None:
        """Mute the chat for the user until ``until`` (None: always), replacing a mute."""
        ...

    async def unmute(self, chat_id: str, user_id: str) -> None: ...
    async def mutes(self, user_id: str, now: datetime) -> list[ChatMute]:
        """The user's chats muted at ``now``."""
        ...

    async def purge_mutes(self, now: datetime) -> int:
        """Delete mutes that ended, and those of chats the user is no longer in."""
        ...

    async def covered(self, device_id: str, up_to_seq: int, next_at: datetime | None) -> None:
        """Record a push sent up to ``up_to_seq`` (or none needed) and end the claim."""
        ...


class PushOutcome(StrEnum):
    SENT = "sent"
    RETRY = "retry"  # 429, 5xx, no answer: try again later
    GONE = "gone"  # the token or subscription no longer exists: forget it
    DROPPED = "dropped"  # refused for good (another 4xx, an endpoint now private)


@dataclass(slots=True, frozen=True)
class PushResult:
    outcome: PushOutcome
    retry_after: float | None = None  # seconds, from Retry-After
    detail: str = ""


class PushSender(Protocol):
    """One push service (Web Push, FCM, APNs); never raises for what the service answers."""

    async def send(self, registration: PushRegistration, notice: PushNotice) -> PushResult: ...


class EndpointCheck(Protocol):
    async def check(self, endpoint: str) -> None:
        """Raise InvalidPushRegistration unless ``endpoint`` may be sent to (the SSRF rule)."""
        ...
