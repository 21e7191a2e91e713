"""Contact discovery: which numbers of an address book belong to users.

Enumeration is the threat (a lookup is an oracle for "is this number on
Pigeon?"), so every lookup pays against three limits: a sliding window of
requests per account and per client address, and a daily quota of numbers
per account. Numbers that are already the caller's contacts cost nothing,
so re-syncing an address book is cheap; every other number costs one each
time, because the server keeps no trace of numbers that matched nobody
(not even a hash) and so cannot tell a repeated one from a new one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from pigeon.domain.errors import NotFound, PigeonError
from pigeon.domain.models import User
from pigeon.domain.people import ProfilePhoto
from pigeon.domain.phone import normalize_phone, region_of
from pigeon.services.accounts import Principal
from pigeon.services.ports import Clock, RateLimiter, UnitOfWork, UnitOfWorkFactory
from pigeon.services.visibility import seen_by

# Rate-limit rule names; their limits come from settings (see ratelimit adapter).
LOOKUP_PER_ACCOUNT = "contacts_lookup_per_account"
LOOKUP_PER_IP = "contacts_lookup_per_ip"
LOOKUP_NUMBERS_PER_ACCOUNT = "contacts_lookup_numbers_per_account"


class TooManyNumbers(PigeonError):
    kind = "too_large"


@dataclass(slots=True, frozen=True)
class ContactsPolicy:
    max_numbers: int = 1000  # per lookup


@dataclass(slots=True, frozen=True)
class Contact:
    """A user as one viewer may see them: about and photo only where privacy allows."""

    user_id: str
    phone: str
    name: str
    about: str
    photo: ProfilePhoto | None = None


@dataclass(slots=True, frozen=True)
class Match:
    """One looked-up number that belongs to a user, as it was sent."""

    input: str
    contact: Contact


@dataclass(slots=True, frozen=True)
class LookupResult:
    matches: list[Match]
    skipped: int  # numbers that could not be read as phone numbers


class ContactService:
    def __init__(
        self,
        uow: UnitOfWorkFactory,
        limiter: RateLimiter,
        clock: Clock,
        policy: ContactsPolicy,
    ) -> None:
        self._uow = uow
        self._limiter = limiter
        self._clock = clock
        self._policy = policy

    async def lookup(
        self, principal: Principal, phones: Sequence[str], client_ip: str
    ) -> LookupResult:
        """The users among ``phones``; they become the caller's contacts.

        Numbers without a ``+`` are read in the caller's own country. Numbers
        that match nobody leave no trace: not stored, not logged, not counted
        by value.
        """
        limit = self._policy.max_numbers
        if len(phones) > limit:
            raise TooManyNumbers("too_many_numbers", f"A lookup has at most {limit} numbers.")
        await self._limiter.hit(LOOKUP_PER_IP, client_ip)
        await self._limiter.hit(LOOKUP_PER_ACCOUNT, principal.user_id)
        async with self._uow(read_only=True) as uow:
            me = await self._user(uow, principal.user_id)
            region = region_of(me.phone)
            normalized: dict[str, str] = {}
            skipped = 0
            for raw in phones:
                number = _normalized(raw, region)
                if number is None:
                    skipped += 1
                else:
                    normalized[raw] = number
            users = await uow.people.users_by_phones(sorted(set(normalized.values())))
            by_phone = {u.phone: u for u in users if u.id != principal.user_id}
            known = await uow.people.contact_ids(
                principal.user_id, [u.id for u in by_phone.values()]
            )
        fresh = {
            n for n in normalized.values() if by_phone.get(n) is None or by_phone[n].id not in known
        }
        if fresh:
            # Refused as a whole: a partial answer would still reveal numbers past the quota.
            await self._limiter.hit(LOOKUP_NUMBERS_PER_ACCOUNT, principal.user_id, cost=len(fresh))
        matched = [u for u in by_phone.values()]
        async with self._uow() as uow:
            await uow.people.add_contacts(
                principal.user_id, [u.id for u in matched], self._clock.now()
            )
            views = await self._views(uow, principal.user_id, matched)
            await uow.commit()
        matches = [
            Match(raw, views[by_phone[number].id])
            for raw, number in normalized.items()
            if number in by_phone
        ]
        return LookupResult(matches, skipped)

    async def list_contacts(self, principal: Principal) -> list[Contact]:
        """The caller's contacts, by name."""
        async with self._uow(read_only=True) as uow:
            users = await uow.people.contacts_of(principal.user_id)
            views = await self._views(uow, principal.user_id, users)
        return [views[u.id] for u in users]

    async def _views(
        self, uow: UnitOfWork, viewer_id: str, users: Sequence[User]
    ) -> dict[str, Contact]:
        seen = await seen_by(uow, viewer_id, [u.id for u in users])
        photos = await uow.people.photos([u.id for u in users if seen[u.id].photo])
        return {
            u.id: Contact(
                u.id, u.phone, u.name, u.about if seen[u.id].about else "", photos.get(u.id)
            )
            for u in users
        }

    async def _user(self, uow: UnitOfWork, user_id: str) -> User:
        user = await uow.users.get(user_id)
        if user is None:
            raise NotFound("user_not_found", "No such user.")
        return user


def _normalized(raw: str, region: str | None) -> str | None:
    try:
        return normalize_phone(raw, region)
    except PigeonError:
        return None
