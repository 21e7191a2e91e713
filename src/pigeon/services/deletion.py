"""Deleting an account, confirmed by a code sent to its number.

Everything of the user goes in one transaction: profile, devices and their
queues, memberships (groups are told), queued messages they sent, their send
records and the files no one else's message carries. Their sockets are
closed after the commit. The number may register again, as a new account.
"""

from __future__ import annotations

from pigeon.services.accounts import DEVICE_REVOKED_CLOSE, AccountService, Principal
from pigeon.services.chats import ChatService
from pigeon.services.ports import Bus, Clock, UnitOfWorkFactory

# The reason a deleted account's sockets are closed with (code 1008, as a revoked device).
ACCOUNT_DELETED = "account_deleted"


class AccountDeletionService:
    def __init__(
        self,
        uow: UnitOfWorkFactory,
        accounts: AccountService,
        chats: ChatService,
        bus: Bus,
        clock: Clock,
    ) -> None:
        self._uow = uow
        self._accounts = accounts
        self._chats = chats
        self._bus = bus
        self._clock = clock

    async def delete(self, principal: Principal, code: str, client_ip: str) -> None:
        """Check and use up the code, then erase the account and disconnect its devices."""
        phone = await self._accounts.check_deletion_code(principal, code, client_ip)
        now = self._clock.now()
        async with self._uow() as uow:
            await self._accounts.consume_deletion_code(uow, phone, code)
            entries = await self._chats.leave_all(uow, principal.user_id, now)
            device_ids = await uow.erasure.erase_user(principal.user_id, phone)
            await uow.commit()
        self._bus.publish(entries)
        for device_id in device_ids:
            self._bus.disconnect(device_id, DEVICE_REVOKED_CLOSE, ACCOUNT_DELETED)
