"""Blocking: a blocked user's 1:1 messages are accepted and never delivered to the blocker,
who also disappears for them (presence, last seen, photo, about) and cannot be added by
them to groups. Groups both are in keep working as before.

The rules are applied where each thing happens (the committer's fan-out, presence,
profiles, group membership), all from the ``blocks`` table, so every node agrees.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from pigeon.domain.errors import InvalidInput, NotFound
from pigeon.domain.ids import is_valid_id
from pigeon.services.accounts import Principal
from pigeon.services.ports import Clock, UnitOfWorkFactory


@dataclass(slots=True, frozen=True)
class Block:
    user_id: str
    blocked_at: datetime


class BlockService:
    def __init__(self, uow: UnitOfWorkFactory, clock: Clock) -> None:
        self._uow = uow
        self._clock = clock

    async def block(self, principal: Principal, user_id: str) -> None:
        """Block ``user_id`` (again: nothing changes)."""
        if user_id == principal.user_id:
            raise InvalidInput("cannot_block_self", "You cannot block yourself.")
        async with self._uow() as uow:
            if not is_valid_id(user_id) or await uow.users.get(user_id) is None:
                raise NotFound("user_not_found", "No such user.")
            await uow.people.block(principal.user_id, user_id, self._clock.now())
            await uow.commit()

    async def unblock(self, principal: Principal, user_id: str) -> None:
        """Unblock ``user_id``. What they sent meanwhile stays undelivered."""
        if not is_valid_id(user_id):
            raise NotFound("user_not_found", "No such user.")
        async with self._uow() as uow:
            await uow.people.unblock(principal.user_id, user_id)
            await uow.commit()

    async def list_blocks(self, principal: Principal) -> list[Block]:
        """Whom the caller blocked, newest first."""
        async with self._uow(read_only=True) as uow:
            rows = await uow.people.blocked_by(principal.user_id)
        return [Block(user_id, at) for user_id, at in rows]
