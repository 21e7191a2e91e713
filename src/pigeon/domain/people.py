"""Contacts, blocks and privacy: who may see and reach whom."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum


class Audience(StrEnum):
    """Who sees one part of my profile or presence."""

    EVERYONE = "everyone"
    CONTACTS = "contacts"  # users in my uploaded address book (their ids, kept as contacts)
    NOBODY = "nobody"


class StatusAudience(StrEnum):
    """Who sees my status updates: the audiences above, and two lists of my own."""

    EVERYONE = "everyone"
    CONTACTS = "contacts"
    NOBODY = "nobody"
    EXCEPT = "except"  # my contacts except those on my "except" list
    ONLY = "only"  # only those on my "only" list


class StatusList(StrEnum):
    EXCEPT = "except"
    ONLY = "only"


class GroupAdders(StrEnum):
    """Who may put me in a group without asking."""

    EVERYONE = "everyone"
    CONTACTS = "contacts"


@dataclass(slots=True, frozen=True)
class Privacy:
    """A user's privacy settings; a user who never changed them has these defaults."""

    last_seen: Audience = Audience.EVERYONE  # last seen and online
    photo: Audience = Audience.EVERYONE
    about: Audience = Audience.EVERYONE
    statuses: StatusAudience = StatusAudience.CONTACTS
    read_receipts: bool = True
    groups: GroupAdders = GroupAdders.EVERYONE


DEFAULT_PRIVACY = Privacy()


@dataclass(slots=True, frozen=True)
class LastSeenAudience:
    """What decides which of some viewers see an owner's last seen and online."""

    setting: Audience = DEFAULT_PRIVACY.last_seen
    blocked: frozenset[str] = frozenset()  # viewers the owner blocked
    contacts: frozenset[str] = frozenset()  # viewers in the owner's contacts

    def shows(self, owner_id: str, viewer_id: str) -> bool:
        if viewer_id in self.blocked:
            return False
        return may_see(
            self.setting, is_self=viewer_id == owner_id, is_contact=viewer_id in self.contacts
        )


def may_see_status(
    audience: StatusAudience, *, is_self: bool, is_contact: bool, listed: set[StatusList]
) -> bool:
    """Whether a viewer sees statuses shown to ``audience``; ``listed``: the owner's lists
    the viewer is on."""
    if is_self:
        return True
    if audience is StatusAudience.EXCEPT:
        return is_contact and StatusList.EXCEPT not in listed
    if audience is StatusAudience.ONLY:
        return StatusList.ONLY in listed
    return may_see(Audience(audience.value), is_self=False, is_contact=is_contact)


def may_see(audience: Audience, *, is_self: bool, is_contact: bool) -> bool:
    """Whether a viewer sees something its owner shows to ``audience``.

    ``is_contact``: the viewer is in the owner's contacts. Blocking is checked
    before this: a blocked viewer sees nothing, whatever the audience.
    """
    if is_self:
        return True
    if audience is Audience.EVERYONE:
        return True
    return audience is Audience.CONTACTS and is_contact


@dataclass(slots=True, frozen=True)
class ProfilePhoto:
    """A user's profile photo: an image attachment of theirs, and when it was set."""

    user_id: str
    attachment_id: str
    mime_type: str
    width: int | None
    height: int | None
    set_at: datetime


@dataclass(slots=True, frozen=True)
class Status:
    """A status update: a text with its look, or an attachment with a caption."""

    id: str
    author_id: str
    created_at: datetime
    expires_at: datetime
    text: str = ""
    background: str | None = None  # "#RRGGBB"
    font: int | None = None
    attachment_id: str | None = None
    caption: str = ""
