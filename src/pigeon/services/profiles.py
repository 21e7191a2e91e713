"""Profiles: what a user says about themselves and what others may see of it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from pigeon.domain.errors import NotFound
from pigeon.domain.models import ProfileChanges, User
from pigeon.domain.people import ProfilePhoto
from pigeon.services.ports import UnitOfWorkFactory
from pigeon.services.visibility import seen_by

# Stored as NOT NULL: "no name" is the empty string.
NEVER_NULL = frozenset({"name", "about"})


@dataclass(slots=True, frozen=True)
class PublicProfile:
    id: str
    name: str
    about: str
    photo: ProfilePhoto | None = None


class ProfileService:
    def __init__(self, uow: UnitOfWorkFactory) -> None:
        self._uow = uow

    async def get_own(self, user_id: str) -> User:
        async with self._uow(read_only=True) as uow:
            user = await uow.users.get(user_id)
        if user is None:
            raise NotFound("user_not_found", "No such user.")
        return user

    async def update_own(self, user_id: str, values: Mapping[str, str | None]) -> User:
        """Change the given fields; None clears one (name and about become empty)."""
        changes = ProfileChanges(
            {
                key: "" if value is None and key in NEVER_NULL else value
                for key, value in values.items()
            }
        )
        async with self._uow() as uow:
            if changes.values:
                await uow.users.update_profile(user_id, changes.values)
            user = await uow.users.get(user_id)
            await uow.commit()
        if user is None:
            raise NotFound("user_not_found", "No such user.")
        return user

    async def get_public(self, user_id: str, viewer_id: str | None = None) -> PublicProfile:
        """The profile as ``viewer_id`` may see it: ``about`` and the photo only where the
        user's privacy settings allow them, and never to someone the user blocked."""
        async with self._uow(read_only=True) as uow:
            user = await uow.users.get(user_id)
            seen = await seen_by(uow, viewer_id, [user_id]) if viewer_id and user else {}
            photos = await uow.people.photos([user_id]) if user else {}
        if user is None:
            raise NotFound("user_not_found", "No such user.")
        about = user.about if viewer_id is None or seen[user_id].about else ""
        photo = photos.get(user_id) if viewer_id is None or seen[user_id].photo else None
        return PublicProfile(id=user.id, name=user.name, about=about, photo=photo)
