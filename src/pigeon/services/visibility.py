"""What one user may see of others: blocks first, then each owner's privacy settings.

Every read and event that shows a profile, presence or receipt asks here, in
the caller's transaction: the settings live in the database, so every node
applies the same ones at once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from pigeon.domain.people import (
    GroupAdders,
    Privacy,
    StatusAudience,
    StatusList,
    may_see,
    may_see_status,
)
from pigeon.services.ports import UnitOfWork


@dataclass(slots=True, frozen=True)
class Seen:
    """What a viewer may see of one owner."""

    about: bool
    photo: bool
    last_seen: bool  # last seen and online
    statuses: bool
    blocked: bool  # the owner blocked the viewer


async def seen_by(uow: UnitOfWork, viewer_id: str, owner_ids: Sequence[str]) -> dict[str, Seen]:
    """For each owner, what ``viewer_id`` may see of them (three indexed lookups)."""
    owners = sorted(set(owner_ids))
    if not owners:
        return {}
    privacy = await uow.people.privacy(owners)
    blockers = await uow.people.blockers_among(owners, viewer_id)
    knows_viewer = await uow.people.has_as_contact(owners, viewer_id)
    listing = [o for o in owners if privacy[o].statuses in _LISTED]
    lists = await uow.people.lists_with(listing, viewer_id) if listing else {}
    return {
        owner: _seen(
            privacy[owner],
            owner == viewer_id,
            owner in knows_viewer,
            owner in blockers,
            lists.get(owner, set()),
        )
        for owner in owners
    }


async def watchers(uow: UnitOfWork, owner_ids: Sequence[str]) -> dict[str, set[str]]:
    """For each owner, who shares a chat with them and may see their last seen and online
    (two reads for all the owners)."""
    sharing = await uow.chats.sharing_a_chat(owner_ids)
    viewers = set().union(*sharing.values())
    if not viewers:
        return {}
    audiences = await uow.people.last_seen_audiences(sorted(sharing), sorted(viewers))
    return {
        owner: {viewer for viewer in others if audiences[owner].shows(owner, viewer)}
        for owner, others in sharing.items()
    }


_LISTED = (StatusAudience.EXCEPT, StatusAudience.ONLY)


def _seen(
    privacy: Privacy, is_self: bool, is_contact: bool, blocked: bool, listed: set[StatusList]
) -> Seen:
    if blocked and not is_self:
        return Seen(about=False, photo=False, last_seen=False, statuses=False, blocked=True)
    return Seen(
        about=may_see(privacy.about, is_self=is_self, is_contact=is_contact),
        photo=may_see(privacy.photo, is_self=is_self, is_contact=is_contact),
        last_seen=may_see(privacy.last_seen, is_self=is_self, is_contact=is_contact),
        statuses=may_see_status(
            privacy.statuses, is_self=is_self, is_contact=is_contact, listed=listed
        ),
        blocked=False,
    )


async def refusing_adds(uow: UnitOfWork, adder_id: str, user_ids: Sequence[str]) -> set[str]:
    """Those of ``user_ids`` whom ``adder_id`` may not put in a group: they blocked the
    adder, or let only their contacts add them and the adder is not one."""
    targets = sorted(set(user_ids) - {adder_id})
    if not targets:
        return set()
    privacy = await uow.people.privacy(targets)
    blockers = await uow.people.blockers_among(targets, adder_id)
    knows_adder = await uow.people.has_as_contact(targets, adder_id)
    return {
        u
        for u in targets
        if u in blockers or (privacy[u].groups is GroupAdders.CONTACTS and u not in knows_adder)
    }


async def status_audience(uow: UnitOfWork, author_id: str) -> list[str]:
    """Who is told of ``author_id``'s new status: those who have the author among their
    contacts (they list it with ``GET /v1/statuses``) and whom the author's status setting
    admits, less those the author blocked."""
    candidates = [u for u in await uow.people.owners_of(author_id) if u != author_id]
    if not candidates:
        return []
    privacy = (await uow.people.privacy([author_id]))[author_id]
    blocked = await uow.people.blocked_among(author_id, candidates)
    contacts = await uow.people.contact_ids(author_id, candidates)
    lists: dict[StatusList, set[str]] = {}
    if privacy.statuses in _LISTED:
        lists = {which: set(await uow.people.status_list(author_id, which)) for which in StatusList}

    def listed(user_id: str) -> set[StatusList]:
        return {which for which, members in lists.items() if user_id in members}

    return [
        u
        for u in candidates
        if u not in blocked
        and may_see_status(
            privacy.statuses, is_self=False, is_contact=u in contacts, listed=listed(u)
        )
    ]
