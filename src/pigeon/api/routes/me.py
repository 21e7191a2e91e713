"""The caller's own profile, devices and PIN."""

from __future__ import annotations

from fastapi import APIRouter, Response

from pigeon.api.deps import ClientIp, ContainerDep, PrincipalDep
from pigeon.api.errors import error_responses
from pigeon.api.schemas import (
    AccountDeletion,
    CodeSent,
    DeletionCodeRequest,
    DeviceList,
    DeviceOut,
    Me,
    PinRequest,
    ProfileUpdate,
)
from pigeon.domain.errors import NotFound
from pigeon.domain.ids import is_valid_id
from pigeon.domain.models import User

router = APIRouter(prefix="/v1", tags=["me"])


def _me(user: User) -> Me:
    return Me(
        id=user.id,
        phone=user.phone,
        name=user.name,
        about=user.about,
        country=user.country,
        location=user.location,
        has_pin=user.has_pin,
        created_at=user.created_at,
    )


@router.get("/me", response_model=Me, responses=error_responses(401))
async def get_me(principal: PrincipalDep, container: ContainerDep) -> Me:
    return _me(await container.profiles.get_own(principal.user_id))


@router.patch("/me", response_model=Me, responses=error_responses(400, 401, 413, 422))
async def update_me(body: ProfileUpdate, principal: PrincipalDep, container: ContainerDep) -> Me:
    """Change name, about, country or location; other fields are refused."""
    changes = body.model_dump(exclude_unset=True)
    return _me(await container.profiles.update_own(principal.user_id, changes))


@router.post(
    "/me/deletion-code",
    status_code=202,
    response_model=CodeSent,
    responses=error_responses(400, 401, 413, 422, 429, 503),
)
async def request_deletion_code(
    body: DeletionCodeRequest, principal: PrincipalDep, container: ContainerDep, ip: ClientIp
) -> CodeSent:
    """Text the account's number a code that confirms ``DELETE /v1/me``."""
    await container.accounts.request_deletion_code(principal, ip, body.locale)
    me = await container.profiles.get_own(principal.user_id)
    return CodeSent(phone=me.phone, expires_in=container.settings.code_ttl_seconds)


@router.delete("/me", status_code=204, responses=error_responses(400, 401, 403, 413, 422, 429))
async def delete_me(
    body: AccountDeletion, principal: PrincipalDep, container: ContainerDep, ip: ClientIp
) -> Response:
    """Delete the account for good, with the texted code; every device is signed out."""
    await container.deletion.delete(principal, body.code, ip)
    return Response(status_code=204)


@router.put("/me/pin", status_code=204, responses=error_responses(400, 401, 413, 422))
async def set_pin(body: PinRequest, principal: PrincipalDep, container: ContainerDep) -> Response:
    """Set or change the two-step PIN that new devices must give to register."""
    await container.accounts.set_pin(principal, body.pin)
    return Response(status_code=204)


@router.delete("/me/pin", status_code=204, responses=error_responses(401))
async def remove_pin(principal: PrincipalDep, container: ContainerDep) -> Response:
    await container.accounts.remove_pin(principal)
    return Response(status_code=204)


@router.get("/devices", response_model=DeviceList, responses=error_responses(401))
async def list_devices(principal: PrincipalDep, container: ContainerDep) -> DeviceList:
    devices = await container.accounts.list_devices(principal)
    return DeviceList(
        devices=[
            DeviceOut(
                id=d.id,
                name=d.name,
                platform=d.platform,
                created_at=d.created_at,
                last_seen_at=d.last_seen_at,
                current=d.id == principal.device_id,
            )
            for d in devices
        ]
    )


@router.delete("/devices/{device_id}", status_code=204, responses=error_responses(401, 404))
async def remove_device(
    device_id: str, principal: PrincipalDep, container: ContainerDep
) -> Response:
    """Revoke one of the caller's devices; its tokens stop working at once."""
    if not is_valid_id(device_id):  # e.g. a NUL, which PostgreSQL cannot even compare
        raise NotFound("device_not_found", "No such device.")
    await container.accounts.remove_device(principal, device_id)
    return Response(status_code=204)
