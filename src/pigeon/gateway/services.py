"""What the gateway needs from the rest of Pigeon, in one place."""

from __future__ import annotations

from dataclasses import dataclass

from pigeon.services.accounts import AccountService
from pigeon.services.broadcasts import BroadcastService
from pigeon.services.chats import ChatService
from pigeon.services.media import MediaService
from pigeon.services.messaging import MessagingService
from pigeon.services.notifications import NotificationService
from pigeon.services.ports import Bus
from pigeon.services.presence import PresenceService


@dataclass(slots=True, frozen=True)
class GatewayServices:
    accounts: AccountService
    messaging: MessagingService
    chats: ChatService
    presence: PresenceService
    bus: Bus
    media: MediaService
    notifications: NotificationService  # muteChat (push notifications)
    broadcasts: BroadcastService
