"""The one schema both engines share. Migrations in ``migrations/`` must match it."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect

ID = sa.String(26)


class UtcDateTime(sa.TypeDecorator[datetime]):
    """Timestamps are stored and returned as timezone-aware UTC on both engines."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

users = sa.Table(
    "users",
    metadata,
    sa.Column("id", ID, primary_key=True),
    sa.Column("phone", sa.String(16), nullable=False, unique=True),
    sa.Column("name", sa.Text, nullable=False, server_default=""),
    sa.Column("about", sa.Text, nullable=False, server_default=""),
    sa.Column("country", sa.String(2)),
    sa.Column("location", sa.Text),
    sa.Column("pin_hash", sa.Text),
    sa.Column("pin_reset_requested_at", UtcDateTime),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("last_seen_at", UtcDateTime),
)

devices = sa.Table(
    "devices",
    metadata,
    sa.Column("id", ID, primary_key=True),
    sa.Column(
        "user_id", ID, sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True
    ),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("platform", sa.String(16), nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("last_seen_at", UtcDateTime, nullable=False),
    sa.Column("access_token_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("access_expires_at", UtcDateTime, nullable=False),
    sa.Column("refresh_token_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("refresh_expires_at", UtcDateTime, nullable=False),
)

verification_codes = sa.Table(
    "verification_codes",
    metadata,
    sa.Column("phone", sa.String(16), primary_key=True),
    sa.Column("purpose", sa.String(16), primary_key=True),
    sa.Column("code_hash", sa.String(64), nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("expires_at", UtcDateTime, nullable=False, index=True),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
)

# -- chats and delivery ---------------------------------------------------------

chats = sa.Table(
    "chats",
    metadata,
    sa.Column("id", ID, primary_key=True),
    sa.Column("kind", sa.String(8), nullable=False),
    sa.Column("name", sa.Text, nullable=False, server_default=""),
    # "<smaller user id>:<larger user id>" for 1:1 chats, so each pair has one.
    sa.Column("direct_key", sa.String(53), unique=True),
    sa.Column("created_by", ID, nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
    # The last message seq handed out in this chat; seqs increase strictly.
    sa.Column("last_seq", sa.BigInteger, nullable=False, server_default="0"),
    # Disappearing messages (migration 0010): seconds a message lives, 0 for off.
    sa.Column("disappear_seconds", sa.Integer, nullable=False, server_default="0"),
)

chat_members = sa.Table(
    "chat_members",
    metadata,
    sa.Column("chat_id", ID, sa.ForeignKey("chats.id", ondelete="CASCADE"), primary_key=True),
    sa.Column(
        "user_id", ID, sa.ForeignKey("users.id", ondelete="CASCADE"), primary_key=True, index=True
    ),
    sa.Column("role", sa.String(8), nullable=False),
    sa.Column("joined_at", UtcDateTime, nullable=False),
    sa.Column("read_seq", sa.BigInteger, nullable=False, server_default="0"),
)

messages = sa.Table(
    "messages",
    metadata,
    sa.Column("id", ID, primary_key=True),
    sa.Column("chat_id", ID, sa.ForeignKey("chats.id", ondelete="CASCADE"), nullable=False),
    sa.Column("seq", sa.BigInteger, nullable=False),
    sa.Column("kind", sa.String(8), nullable=False),
    sa.Column("sender_id", ID),
    sa.Column("sender_device_id", ID),
    sa.Column("body", sa.Text, nullable=False, server_default=""),
    sa.Column("attachments", sa.JSON, nullable=False),
    sa.Column("reply_to", ID),
    sa.Column("system", sa.JSON),
    sa.Column("created_at", UtcDateTime, nullable=False),
    # Forwarding and replies (migration 0010): how many times it was forwarded
    # (0: not), and the quote of a reply as the sender's client gave it.
    sa.Column("forward_hops", sa.Integer, nullable=False, server_default="0"),
    sa.Column("quote", sa.JSON),
    # Sent while the chat's disappearing timer was on: gone from every queue then.
    sa.Column("expires_at", UtcDateTime),
    # The user ids the sender mentioned (migration 0013); null: none.
    sa.Column("mentions", sa.JSON),
    sa.UniqueConstraint("chat_id", "seq", name="uq_messages_chat_id_seq"),
)

# What a sender device's clientMessageId became. It outlives the message (which
# is deleted once delivered) so a late retry still gets the same answer.
sent_messages = sa.Table(
    "sent_messages",
    metadata,
    # A clientMessageId is unique per sender device and chat (as Matrix's txnId per room).
    sa.Column("sender_device_id", ID, primary_key=True),
    sa.Column("chat_id", ID, primary_key=True),
    sa.Column("client_message_id", sa.String(64), primary_key=True),
    sa.Column("message_id", ID, nullable=False),
    sa.Column("seq", sa.BigInteger, nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False, index=True),
    # Who sent it: read receipts go to the senders of the seqs they cover
    # (null in records written before migration 0007).
    sa.Column("sender_id", ID),
    sa.Index("ix_sent_messages_chat_id_seq", "chat_id", "seq"),
    # Message changes (migration 0010): what the server must know of a message
    # after it is gone from every queue, to check a reaction, an edit or a
    # delete (never its text). Only messages without attachments can be edited.
    sa.Column("has_attachments", sa.Boolean, nullable=False, server_default=sa.false()),
    # How many times the message was forwarded before this send (0: not forwarded).
    sa.Column("forward_hops", sa.Integer, nullable=False, server_default="0"),
    # Set when it was deleted for everyone: later changes find no message.
    sa.Column("deleted_at", UtcDateTime),
    # The message this one forwards: a message forwarded many times goes to
    # one chat at a time, which the sender's earlier forwards of it tell.
    sa.Column("forwarded_from", ID),
    # A disappearing message's expiry: its send record goes then too.
    sa.Column("expires_at", UtcDateTime, index=True),
    sa.Index("ix_sent_messages_message_id", "message_id"),
    sa.Index("ix_sent_messages_forwarded_from", "forwarded_from"),
)

# Each device's durable delivery queue. A row is deleted when the device acks it.
inbox = sa.Table(
    "inbox",
    metadata,
    # No foreign key (migration 0014): entries are written only under the lock
    # of the device's counter, whose cascade a device's deletion waits on, and
    # whoever deletes a device deletes its entries (checking cost a third of a
    # PostgreSQL batch's insert).
    sa.Column("device_id", ID, primary_key=True),
    sa.Column("seq", sa.BigInteger, primary_key=True),
    # No foreign key (migration 0006): a message is deleted only once no entry
    # refers to it, and its entries are inserted with it; checking cost more
    # than a tenth of a PostgreSQL batch.
    sa.Column("message_id", ID, index=True),
    # Events that are not messages (receipts) carry their payload here.
    sa.Column("event", sa.JSON),
    sa.Column("expires_at", UtcDateTime, nullable=False, index=True),
)

# The last inbox seq handed out per device (kept apart from ``devices`` so that
# fan-out locks only these small rows).
inbox_counters = sa.Table(
    "inbox_counters",
    metadata,
    sa.Column("device_id", ID, sa.ForeignKey("devices.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("last_seq", sa.BigInteger, nullable=False, server_default="0"),
)

# -- media ------------------------------------------------------------------------

# One row per stored content; the object's key in the blob store is the hash.
blobs = sa.Table(
    "blobs",
    metadata,
    sa.Column("hash", sa.String(64), primary_key=True),
    sa.Column("size", sa.BigInteger, nullable=False),
    # Bumped whenever an upload uses the blob, so the purge leaves fresh ones alone.
    sa.Column("last_used_at", UtcDateTime, nullable=False),
)

attachments = sa.Table(
    "attachments",
    metadata,
    sa.Column("id", ID, primary_key=True),
    # Null once the uploader's account is deleted while others' messages carry it.
    sa.Column("uploader_id", ID, sa.ForeignKey("users.id", ondelete="CASCADE")),
    sa.Column("blob_hash", sa.String(64), sa.ForeignKey("blobs.hash"), nullable=False, index=True),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("mime_type", sa.String(127), nullable=False),
    sa.Column("file_name", sa.Text, nullable=False),
    sa.Column("width", sa.Integer),
    sa.Column("height", sa.Integer),
    sa.Column("thumbnail", sa.LargeBinary),
    sa.Column("created_at", UtcDateTime, nullable=False),
    # Set while no message carries the attachment; cleared when one does.
    sa.Column("expires_at", UtcDateTime, index=True),
)

# Which messages (and so which chats) carry an attachment: who may read it.
attachment_links = sa.Table(
    "attachment_links",
    metadata,
    sa.Column(
        "attachment_id",
        ID,
        sa.ForeignKey("attachments.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    # Indexed on its own: deleting a message looks its links up by message.
    sa.Column(
        "message_id",
        ID,
        sa.ForeignKey("messages.id", ondelete="CASCADE"),
        primary_key=True,
        index=True,
    ),
    sa.Column("chat_id", ID, nullable=False, index=True),
)

uploads = sa.Table(
    "uploads",
    metadata,
    sa.Column("id", ID, primary_key=True),
    sa.Column("uploader_id", ID, sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("sha256", sa.String(64), nullable=False),
    sa.Column("file_name", sa.Text, nullable=False),
    sa.Column("offset", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("expires_at", UtcDateTime, nullable=False, index=True),
)

# -- broadcast lists ---------------------------------------------------------------

# A user's broadcast lists: private to their owner, who sends to every recipient
# at once as separate 1:1 messages.
broadcast_lists = sa.Table(
    "broadcast_lists",
    metadata,
    sa.Column("id", ID, primary_key=True),
    sa.Column(
        "owner_id", ID, sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True
    ),
    sa.Column("name", sa.Text, nullable=False, server_default=""),
    sa.Column("created_at", UtcDateTime, nullable=False),
)

broadcast_recipients = sa.Table(
    "broadcast_recipients",
    metadata,
    sa.Column(
        "list_id", ID, sa.ForeignKey("broadcast_lists.id", ondelete="CASCADE"), primary_key=True
    ),
    sa.Column(
        "user_id", ID, sa.ForeignKey("users.id", ondelete="CASCADE"), primary_key=True, index=True
    ),
)

# -- people (contacts, blocks, privacy) -------------------------------------------

# The caller's contacts: users whose numbers were in an uploaded address book.
# Only matched users' ids are kept; a number that matched nobody is never stored.
contacts = sa.Table(
    "contacts",
    metadata,
    sa.Column("owner_id", ID, sa.ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    # Indexed on its own: deleting a user cascades here by contact.
    sa.Column(
        "contact_id",
        ID,
        sa.ForeignKey("users.id", ondelete="CASCADE"),
        primary_key=True,
        index=True,
    ),
    sa.Column("added_at", UtcDateTime, nullable=False),
)

blocks = sa.Table(
    "blocks",
    metadata,
    sa.Column("blocker_id", ID, sa.ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    # Indexed on its own: each batch of sends looks its senders up here.
    sa.Column(
        "blocked_id",
        ID,
        sa.ForeignKey("users.id", ondelete="CASCADE"),
        primary_key=True,
        index=True,
    ),
    sa.Column("created_at", UtcDateTime, nullable=False),
)

# A user's privacy settings; no row means the defaults (domain.people.Privacy).
privacy_settings = sa.Table(
    "privacy_settings",
    metadata,
    sa.Column("user_id", ID, sa.ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("last_seen", sa.String(8), nullable=False),
    sa.Column("photo", sa.String(8), nullable=False),
    sa.Column("about", sa.String(8), nullable=False),
    sa.Column("statuses", sa.String(16), nullable=False),
    sa.Column("read_receipts", sa.Boolean, nullable=False),
    sa.Column("groups", sa.String(8), nullable=False),
    sa.Column("updated_at", UtcDateTime, nullable=False),
)

# A user's profile photo: an image attachment they uploaded. While it is one,
# the media purge keeps it; when replaced or removed it expires like any
# unsent attachment, and its blob is freed by the usual rules.
profile_photos = sa.Table(
    "profile_photos",
    metadata,
    sa.Column("user_id", ID, sa.ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    sa.Column(
        "attachment_id",
        ID,
        sa.ForeignKey("attachments.id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    sa.Column("set_at", UtcDateTime, nullable=False),
)

# Status updates: a text (with its colour and font) or an attachment of the
# author's (with a caption), gone at ``expires_at`` (24 hours by the server's
# clock) or when the author deletes it. Like a message body, the text is
# stored for delivery and never read by the server.
statuses = sa.Table(
    "statuses",
    metadata,
    sa.Column("id", ID, primary_key=True),
    sa.Column(
        "author_id", ID, sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True
    ),
    sa.Column("text", sa.Text, nullable=False, server_default=""),
    sa.Column("background", sa.String(7)),
    sa.Column("font", sa.Integer),
    sa.Column("attachment_id", ID, sa.ForeignKey("attachments.id", ondelete="CASCADE"), index=True),
    sa.Column("caption", sa.Text, nullable=False, server_default=""),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("expires_at", UtcDateTime, nullable=False, index=True),
)

# Who saw a status, and when (viewers with read receipts off are not recorded).
status_views = sa.Table(
    "status_views",
    metadata,
    sa.Column("status_id", ID, sa.ForeignKey("statuses.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("viewer_id", ID, sa.ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("viewed_at", UtcDateTime, nullable=False),
)

# Whose statuses a user muted: a client preference, kept here so all the
# user's devices share it. The server does not filter by it.
status_mutes = sa.Table(
    "status_mutes",
    metadata,
    sa.Column("owner_id", ID, sa.ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    sa.Column(
        "muted_id",
        ID,
        sa.ForeignKey("users.id", ondelete="CASCADE"),
        primary_key=True,
        index=True,
    ),
    sa.Column("created_at", UtcDateTime, nullable=False),
)

# A user's recovery email: the verified address, and a new one waiting for the
# code sent to it (only the code's keyed hash is stored).
recovery_emails = sa.Table(
    "recovery_emails",
    metadata,
    sa.Column("user_id", ID, sa.ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("email", sa.String(254)),
    sa.Column("verified_at", UtcDateTime),
    sa.Column("pending_email", sa.String(254)),
    sa.Column("code_hash", sa.String(64)),
    sa.Column("code_expires_at", UtcDateTime),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    # A PIN reset confirmed by a code sent to the verified address.
    sa.Column("reset_code_hash", sa.String(64)),
    sa.Column("reset_expires_at", UtcDateTime),
    sa.Column("reset_attempts", sa.Integer, nullable=False, server_default="0"),
)

# The users on a user's status lists: "except" (my contacts except these) and
# "only" (only these), used when the status privacy setting names the list.
status_lists = sa.Table(
    "status_lists",
    metadata,
    sa.Column("owner_id", ID, sa.ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("list", sa.String(8), primary_key=True),
    sa.Column(
        "user_id", ID, sa.ForeignKey("users.id", ondelete="CASCADE"), primary_key=True, index=True
    ),
)

# -- push notifications (issue 18) ---------------------------------------------------

# Where each device is woken up while it has no live connection, and how far
# its pushes got. The due pushes themselves are not stored: they are the
# device's queue entries past ``pushed_seq`` (the queue is already durable).
push_registrations = sa.Table(
    "push_registrations",
    metadata,
    sa.Column("device_id", ID, sa.ForeignKey("devices.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("user_id", ID, nullable=False),
    sa.Column("kind", sa.String(8), nullable=False),
    sa.Column("endpoint", sa.Text, nullable=False, server_default=""),
    sa.Column("p256dh", sa.Text, nullable=False, server_default=""),
    sa.Column("auth", sa.Text, nullable=False, server_default=""),
    sa.Column("token", sa.Text, nullable=False, server_default=""),
    sa.Column("topic", sa.Text, nullable=False, server_default=""),
    sa.Column("sandbox", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("created_at", UtcDateTime, nullable=False),
    # The last inbox seq a sent push covered.
    sa.Column("pushed_seq", sa.BigInteger, nullable=False, server_default="0"),
    # No push before this (coalescing), and none while another worker's claim lasts.
    sa.Column("next_at", UtcDateTime),
    sa.Column("lease_until", UtcDateTime),
)

# Each user's notification preferences; no row: the defaults (push on, previews off).
notification_settings = sa.Table(
    "notification_settings",
    metadata,
    sa.Column("user_id", ID, sa.ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("push", sa.Boolean, nullable=False, server_default=sa.true()),
    sa.Column("previews", sa.Boolean, nullable=False, server_default=sa.false()),
)

# Chats a user muted: no pushes from them (except mentions) until ``muted_until``
# (null: always). Shared by all the user's devices.
chat_mutes = sa.Table(
    "chat_mutes",
    metadata,
    sa.Column("chat_id", ID, sa.ForeignKey("chats.id", ondelete="CASCADE"), primary_key=True),
    sa.Column(
        "user_id", ID, sa.ForeignKey("users.id", ondelete="CASCADE"), primary_key=True, index=True
    ),
    sa.Column("muted_until", UtcDateTime),
)
