"""Push registrations: where each of my devices is woken up while it has no live connection."""

from __future__ import annotations

from dataclasses import dataclass

from pigeon.domain.errors import NotFound
from pigeon.domain.push import PushKind, PushRegistration, check_webpush_keys
from pigeon.services.accounts import Principal
from pigeon.services.ports import Clock, EndpointCheck, UnitOfWork, UnitOfWorkFactory


@dataclass(slots=True, frozen=True)
class PushTarget:
    """A registration as the client gives it (the API's body, already shaped)."""

    kind: PushKind
    endpoint: str = ""
    p256dh: str = ""
    auth: str = ""
    token: str = ""
    topic: str = ""
    sandbox: bool = False


class PushService:
    def __init__(
        self,
        uow: UnitOfWorkFactory,
        clock: Clock,
        endpoints: EndpointCheck,
        vapid_public_key: str,
    ) -> None:
        self._uow = uow
        self._clock = clock
        self._endpoints = endpoints
        self.vapid_public_key = vapid_public_key

    async def register(self, principal: Principal, device_id: str, target: PushTarget) -> None:
        """Store where ``device_id`` (one of the caller's own) is pushed, replacing any earlier.

        Checked before anything is stored: a Web Push endpoint against the SSRF
        rule, its keys as keys (a push encrypted to a bad point never arrives).
        """
        if target.kind is PushKind.WEBPUSH:
            await self._endpoints.check(target.endpoint)
            check_webpush_keys(target.p256dh, target.auth)
        async with self._uow() as uow:
            await self._own_device(uow, principal, device_id)
            await uow.push.put(
                PushRegistration(
                    device_id=device_id,
                    user_id=principal.user_id,
                    kind=target.kind,
                    created_at=self._clock.now(),
                    endpoint=target.endpoint,
                    p256dh=target.p256dh,
                    auth=target.auth,
                    token=target.token,
                    topic=target.topic,
                    sandbox=target.sandbox,
                )
            )
            await uow.commit()

    async def unregister(self, principal: Principal, device_id: str) -> None:
        async with self._uow() as uow:
            await self._own_device(uow, principal, device_id)
            await uow.push.delete(device_id)
            await uow.commit()

    @staticmethod
    async def _own_device(uow: UnitOfWork, principal: Principal, device_id: str) -> None:
        """Another user's device is as unknown as a device that does not exist."""
        device = await uow.devices.get(device_id)
        if device is None or device.user_id != principal.user_id:
            raise NotFound("device_not_found", "No such device.")
