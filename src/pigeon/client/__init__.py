"""``pigeon.client``: an async Python SDK for Pigeon servers.

Register a device over HTTP with :class:`PigeonClient`, then open a live
:class:`Connection` (WebSocket) to send messages, manage chats and receive
events::

    from pigeon.client import PigeonClient, MessageEvent

    async with PigeonClient("http://127.0.0.1:8080") as client:
        await client.request_code("+14155550123")
        session = await client.verify("+14155550123", input("code: "), "my laptop")
        async with client.connect(session) as conn:
            chat = await conn.create_chat([friend_user_id])
            await conn.send_message(chat.chat_id, "hello")
            async for event in conn.events():
                if isinstance(event, MessageEvent):
                    print(event.sender_id, event.text)
                    for f in event.attachments:  # now, before the ack: see events()
                        await client.download_attachment(session, f.attachment_id, f.file_name)

Files: ``client.upload_file(session, path)`` returns an :class:`Attachment` to
pass to ``send_message(chat_id, text, attachments=[...])``.

Delivery: the server delivers at least once; the connection drops what it has
already handed out, so the application sees each message once, in order per
chat. An event is acked when the application asks for the next one. With
``connect(session, store=LocalStore(path))`` every message and receipt is
written to a local SQLite file before it is handed out and acked, and the
store answers history, last messages and unread counts. See docs/client.md.
"""

from pigeon.client._connection import Connection, ReconnectPolicy
from pigeon.client._errors import (
    ApiError,
    AuthenticationError,
    CommandError,
    ConnectionClosed,
    NetworkError,
    PigeonError,
    RequestTimeout,
    SendFailed,
    StoreError,
)
from pigeon.client._http import PigeonClient, websocket_url
from pigeon.client._models import (
    Attachment,
    BroadcastList,
    BroadcastSent,
    ChatDetails,
    ChatMember,
    ChatSummary,
    CodeSent,
    Contact,
    ContactLookup,
    ContactMatch,
    CreatedChat,
    DrainedEvent,
    Event,
    MessageDeletedEvent,
    MessageEditedEvent,
    MessageEvent,
    Presence,
    PresenceEvent,
    Profile,
    ReactionEvent,
    ReceiptEvent,
    SentMessage,
    Session,
    StatusEvent,
    TypingEvent,
    UploadStatus,
)
from pigeon.client._store import LocalStore, MemberReceipts, StoredMessage

__all__ = [
    "ApiError",
    "Attachment",
    "AuthenticationError",
    "BroadcastList",
    "BroadcastSent",
    "ChatDetails",
    "ChatMember",
    "ChatSummary",
    "CodeSent",
    "CommandError",
    "Connection",
    "ConnectionClosed",
    "Contact",
    "ContactLookup",
    "ContactMatch",
    "CreatedChat",
    "DrainedEvent",
    "Event",
    "LocalStore",
    "MemberReceipts",
    "MessageDeletedEvent",
    "MessageEditedEvent",
    "MessageEvent",
    "NetworkError",
    "PigeonClient",
    "PigeonError",
    "Presence",
    "PresenceEvent",
    "Profile",
    "ReactionEvent",
    "ReceiptEvent",
    "ReconnectPolicy",
    "RequestTimeout",
    "SendFailed",
    "SentMessage",
    "Session",
    "StatusEvent",
    "StoreError",
    "StoredMessage",
    "TypingEvent",
    "UploadStatus",
    "websocket_url",
]
