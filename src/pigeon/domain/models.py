"""Accounts: users, their devices and the codes that prove a phone number."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

# Profile text limits, in code points. They are part of the data model (clients
# lay out their UI for them), so they live here rather than in settings.
NAME_MAX_LENGTH = 64
ABOUT_MAX_LENGTH = 140
LOCATION_MAX_LENGTH = 100
DEVICE_NAME_MAX_LENGTH = 64


class Platform(StrEnum):
    ANDROID = "android"
    IOS = "ios"
    WEB = "web"
    DESKTOP = "desktop"
    CLI = "cli"
    OTHER = "other"


class CodePurpose(StrEnum):
    REGISTRATION = "registration"
    DELETION = "deletion"  # confirms DELETE /v1/me


@dataclass(slots=True)
class User:
    id: str
    phone: str
    created_at: datetime
    name: str = ""
    about: str = ""
    country: str | None = None
    location: str | None = None
    pin_hash: str | None = None
    pin_reset_requested_at: datetime | None = None
    last_seen_at: datetime | None = None

    @property
    def has_pin(self) -> bool:
        return self.pin_hash is not None


@dataclass(slots=True)
class Device:
    id: str
    user_id: str
    name: str
    platform: Platform
    created_at: datetime
    last_seen_at: datetime
    access_token_hash: str
    access_expires_at: datetime
    refresh_token_hash: str
    refresh_expires_at: datetime


@dataclass(slots=True)
class VerificationCode:
    """A one-time code sent to ``phone``; only its keyed hash is ever stored."""

    phone: str
    purpose: CodePurpose
    code_hash: str
    created_at: datetime
    expires_at: datetime
    attempts: int = 0

    def is_expired(self, now: datetime) -> bool:
        return now >= self.expires_at


@dataclass(slots=True, frozen=True)
class ProfileChanges:
    """The only profile fields a user may change about themselves."""

    values: dict[str, str | None] = field(default_factory=dict)

    ALLOWED = frozenset({"name", "about", "country", "location"})

    def __post_init__(self) -> None:
        unknown = set(self.values) - self.ALLOWED
        if unknown:
            raise ValueError(f"not changeable: {sorted(unknown)}")
