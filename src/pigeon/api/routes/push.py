"""Push registrations of the caller's devices, and the server's VAPID public key."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Response
from pydantic import Field

from pigeon.api.deps import ContainerDep, PrincipalDep
from pigeon.api.errors import error_responses
from pigeon.api.schemas import Body, Strict
from pigeon.domain.errors import NotFound
from pigeon.domain.ids import is_valid_id
from pigeon.domain.push import PushKind
from pigeon.services.push import PushTarget

router = APIRouter(prefix="/v1", tags=["push"])


class WebPushKeys(Strict):
    p256dh: str = Field(min_length=1, max_length=128, description="base64url P-256 point")
    auth: str = Field(min_length=1, max_length=64, description="base64url 16-byte secret")


class WebPushRegistration(Strict):
    """A browser's ``PushSubscription.toJSON()``, with ``kind`` added."""

    kind: Literal["webpush"]
    endpoint: str = Field(min_length=1, max_length=2048)
    keys: WebPushKeys
    expiration_time: int | None = Field(None, description="Ignored; browsers send it.")


class FcmRegistration(Strict):
    kind: Literal["fcm"]
    token: str = Field(min_length=1, max_length=4096, pattern=r"^[A-Za-z0-9_:\-.]+$")


class ApnsRegistration(Strict):
    kind: Literal["apns"]
    token: str = Field(min_length=64, max_length=200, pattern=r"^[0-9a-fA-F]+$")
    topic: str = Field(
        min_length=1, max_length=255, pattern=r"^[A-Za-z0-9.\-]+$", description="bundle id"
    )
    sandbox: bool = False


PushRegistrationIn = Annotated[
    WebPushRegistration | FcmRegistration | ApnsRegistration, Field(discriminator="kind")
]


class VapidPublicKey(Body):
    public_key: str = Field(description="base64url P-256 point: the applicationServerKey.")


def _target(body: WebPushRegistration | FcmRegistration | ApnsRegistration) -> PushTarget:
    if isinstance(body, WebPushRegistration):
        return PushTarget(
            PushKind.WEBPUSH, endpoint=body.endpoint, p256dh=body.keys.p256dh, auth=body.keys.auth
        )
    if isinstance(body, FcmRegistration):
        return PushTarget(PushKind.FCM, token=body.token)
    return PushTarget(
        PushKind.APNS, token=body.token.lower(), topic=body.topic, sandbox=body.sandbox
    )


def _known(device_id: str) -> str:
    if not is_valid_id(device_id):
        raise NotFound("device_not_found", "No such device.")
    return device_id


@router.put(
    "/devices/{device_id}/push",
    status_code=204,
    responses=error_responses(400, 401, 404, 413, 422),
)
async def put_push(
    device_id: str, body: PushRegistrationIn, principal: PrincipalDep, container: ContainerDep
) -> Response:
    """Push this device (one of the caller's) while it has no live connection."""
    await container.push.register(principal, _known(device_id), _target(body))
    return Response(status_code=204)


@router.delete("/devices/{device_id}/push", status_code=204, responses=error_responses(401, 404))
async def delete_push(device_id: str, principal: PrincipalDep, container: ContainerDep) -> Response:
    await container.push.unregister(principal, _known(device_id))
    return Response(status_code=204)


@router.get("/push/vapid-public-key", response_model=VapidPublicKey)
async def vapid_public_key(container: ContainerDep) -> VapidPublicKey:
    """The key browsers subscribe with (``applicationServerKey``, RFC 8292)."""
    return VapidPublicKey(public_key=container.push.vapid_public_key)
