"""Operator tasks (``pigeon admin``): they act without a user's session."""

from __future__ import annotations

from pigeon.domain.errors import NotFound
from pigeon.domain.models import Device, User
from pigeon.services.accounts import DEVICE_REVOKED_CLOSE
from pigeon.services.ports import Bus, UnitOfWorkFactory


class AdminService:
    def __init__(self, uow: UnitOfWorkFactory, bus: Bus | None = None) -> None:
        self._uow = uow
        self._bus = bus

    async def list_users(self, limit: int = 100, after_id: str | None = None) -> list[User]:
        async with self._uow(read_only=True) as uow:
            return list(await uow.users.list(limit, after_id))

    async def list_devices(self, user_id: str) -> list[Device]:
        async with self._uow(read_only=True) as uow:
            return list(await uow.devices.list_for_user(user_id))

    async def revoke_device(self, device_id: str) -> None:
        async with self._uow() as uow:
            if not await uow.devices.delete(device_id):
                raise NotFound("device_not_found", "No such device.")
            await uow.commit()
        if self._bus is not None:
            self._bus.disconnect(device_id, DEVICE_REVOKED_CLOSE, "device_revoked")

    async def count_devices(self) -> int:
        async with self._uow(read_only=True) as uow:
            return await uow.devices.count()
