"""Push registrations and what a push says: plain data, and the checks of a subscription."""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from cryptography.hazmat.primitives.asymmetric import ec

from pigeon.domain.errors import Unprocessable


class PushKind(StrEnum):
    WEBPUSH = "webpush"
    FCM = "fcm"
    APNS = "apns"


class InvalidPushRegistration(Unprocessable):
    """A registration that cannot be used: answered 422 with its code, nothing stored."""


@dataclass(slots=True, frozen=True)
class PushRegistration:
    """Where one device is woken up: a Web Push subscription, an FCM token or an APNs token."""

    device_id: str
    user_id: str
    kind: PushKind
    created_at: datetime
    endpoint: str = ""  # webpush: the push service's URL for this subscription
    p256dh: str = ""  # webpush: the browser's P-256 public key (base64url, uncompressed)
    auth: str = ""  # webpush: the 16-byte auth secret (base64url)
    token: str = ""  # fcm and apns: the device token
    topic: str = ""  # apns: the app's bundle id
    sandbox: bool = False  # apns: the development environment


@dataclass(slots=True, frozen=True)
class PushNotice:
    """What one push says. No message text: only what wakes the app, unless previews are on.

    ``collapse_key`` is the same for every push of a device, so a push service
    that still holds an older one replaces it (the latest unread count wins).
    """

    type: str  # "message"
    chat_id: str
    sender_id: str
    unread: int
    up_to_seq: int  # the device's inbox seq this push covers
    sender_name: str | None = None  # only when the recipient turned previews on

    def payload(self) -> dict[str, str | int]:
        payload: dict[str, str | int] = {
            "type": self.type,
            "chatId": self.chat_id,
            "senderId": self.sender_id,
            "unread": self.unread,
        }
        if self.sender_name is not None:
            payload["senderName"] = self.sender_name
        return payload


@dataclass(slots=True, frozen=True)
class PendingPush:
    """What a device's queue holds that no push covered yet (read when a push is due).

    Only messages that may wake the user count: from others, and not in a chat
    the user muted (unless the message mentions them).
    """

    up_to_seq: int
    unread: int
    chat_id: str
    sender_id: str
    sender_name: str = ""


def b64url_decode(value: str) -> bytes:
    """Base64url with or without padding, as browsers write subscription keys."""
    try:
        return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    except (binascii.Error, ValueError) as exc:
        raise ValueError("not base64url") from exc


P256_POINT_BYTES = 65  # 0x04 || X (32 bytes) || Y (32 bytes)
AUTH_SECRET_BYTES = 16  # RFC 8291, section 3.2


def check_webpush_keys(p256dh: str, auth: str) -> None:
    """Refuse keys no push could be encrypted to (RFC 8291): a point off the curve, say."""
    try:
        point = b64url_decode(p256dh)
        if len(point) != P256_POINT_BYTES or point[0] != 4:
            raise ValueError("not an uncompressed point")
        ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), point)
    except ValueError as exc:
        raise InvalidPushRegistration(
            "invalid_push_key",
            "keys.p256dh is not a P-256 public key (65 bytes, uncompressed, base64url).",
        ) from exc
    try:
        secret = b64url_decode(auth)
    except ValueError:
        secret = b""
    if len(secret) != AUTH_SECRET_BYTES:
        raise InvalidPushRegistration(
            "invalid_push_auth", "keys.auth is not a 16-byte secret (base64url)."
        )


# -- preferences (shared by all of a user's devices) --------------------------------


@dataclass(slots=True, frozen=True)
class NotificationSettings:
    push: bool = True  # wake my devices at all
    previews: bool = False  # put the sender's name in a push (never message text)


class MuteDuration(StrEnum):
    EIGHT_HOURS = "8h"
    ONE_WEEK = "1w"
    ALWAYS = "always"


MUTE_SECONDS = {MuteDuration.EIGHT_HOURS: 8 * 3600, MuteDuration.ONE_WEEK: 7 * 24 * 3600}


@dataclass(slots=True, frozen=True)
class ChatMute:
    """A chat of mine that sends me no pushes (except mentions) until ``muted_until``
    (None: always)."""

    chat_id: str
    muted_until: datetime | None
