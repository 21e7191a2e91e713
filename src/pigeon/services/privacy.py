"""A user's privacy settings: reading and changing them.

Where they apply is ``services.visibility`` (profiles, presence, group adds) and
the committer's read receipts (``services.messaging``); all read them from the
database, so a change holds at once on every node.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from pigeon.domain.people import Privacy
from pigeon.services.accounts import Principal
from pigeon.services.ports import Clock, UnitOfWorkFactory


class PrivacyService:
    def __init__(self, uow: UnitOfWorkFactory, clock: Clock) -> None:
        self._uow = uow
        self._clock = clock

    async def get(self, principal: Principal) -> Privacy:
        async with self._uow(read_only=True) as uow:
            return (await uow.people.privacy([principal.user_id]))[principal.user_id]

    async def update(self, principal: Principal, changes: Mapping[str, Any]) -> Privacy:
        """Change the given settings (fields of ``Privacy``, already validated); the others
        keep their values."""
        async with self._uow() as uow:
            current = (await uow.people.privacy([principal.user_id]))[principal.user_id]
            updated = dataclasses.replace(current, **changes)
            if updated != current:
                await uow.people.set_privacy(principal.user_id, updated, self._clock.now())
                await uow.commit()
        return updated
