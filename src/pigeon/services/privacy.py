"""A user's privacy settings: reading and changing them.

Where they apply is ``services.visibility`` (profiles, presence, group adds) and
the committer's read receipts (``services.messaging``); all read them from the
database, so a change holds at once on every node.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from pigeon.domain.errors import InvalidInput
from pigeon.domain.people import Privacy, StatusList
from pigeon.services.accounts import Principal
from pigeon.services.ports import Clock, UnitOfWorkFactory


class PrivacyService:
    def __init__(self, uow: UnitOfWorkFactory, clock: Clock, max_list: int = 1000) -> None:
        self._uow = uow
        self._clock = clock
        self._max_list = max_list

    async def get(self, principal: Principal) -> Privacy:
        async with self._uow(read_only=True) as uow:
            return (await uow.people.privacy([principal.user_id]))[principal.user_id]

    async def update(
        self,
        principal: Principal,
        changes: Mapping[str, Any],
        lists: Mapping[StatusList, Sequence[str]] | None = None,
    ) -> Privacy:
        """Change the given settings (fields of ``Privacy``, already validated) and replace
        the given status lists; the others keep their values."""
        limit = self._max_list
        if any(len(set(user_ids)) > limit for user_ids in (lists or {}).values()):
            raise InvalidInput("status_list_too_long", f"A status list has at most {limit} people.")
        async with self._uow() as uow:
            current = (await uow.people.privacy([principal.user_id]))[principal.user_id]
            updated = dataclasses.replace(current, **changes)
            if updated != current:
                await uow.people.set_privacy(principal.user_id, updated, self._clock.now())
            for which, user_ids in (lists or {}).items():
                await uow.people.set_status_list(principal.user_id, which, user_ids)
            await uow.commit()
        return updated

    async def status_lists(self, principal: Principal) -> dict[StatusList, list[str]]:
        async with self._uow(read_only=True) as uow:
            return {
                which: await uow.people.status_list(principal.user_id, which)
                for which in StatusList
            }
