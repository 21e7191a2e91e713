"""Registration by SMS code, token refresh and logout."""

from __future__ import annotations

from fastapi import APIRouter, Response

from pigeon.api.deps import ClientIp, ContainerDep, PrincipalDep
from pigeon.api.errors import error_responses
from pigeon.api.schemas import (
    CodeRequest,
    CodeSent,
    PinResetRequest,
    RefreshRequest,
    SessionOut,
    VerifyRequest,
)
from pigeon.bootstrap import console_outbox
from pigeon.services.accounts import DeviceInfo, Session

router = APIRouter(prefix="/v1/auth", tags=["auth"])


def _session_out(session: Session, container: ContainerDep) -> SessionOut:
    return SessionOut(
        user_id=session.user_id,
        device_id=session.device_id,
        access_token=session.access_token,
        refresh_token=session.refresh_token,
        expires_in=container.settings.access_token_ttl_seconds,
        new_user=session.new_user,
    )


@router.post(
    "/code",
    status_code=202,
    response_model=CodeSent,
    responses=error_responses(400, 413, 422, 429, 503),
)
async def request_code(body: CodeRequest, container: ContainerDep, ip: ClientIp) -> CodeSent:
    """Send a six-digit verification code by SMS to the number."""
    phone = await container.accounts.request_code(body.phone, ip, body.locale)
    settings = container.settings
    outbox = console_outbox(settings).resolve() if settings.sms_provider == "console" else None
    return CodeSent(
        phone=phone,
        expires_in=settings.code_ttl_seconds,
        outbox=str(outbox) if outbox else None,
    )


@router.post(
    "/verify",
    response_model=SessionOut,
    responses=error_responses(400, 403, 409, 413, 422, 423, 429, 503),
)
async def verify(body: VerifyRequest, container: ContainerDep, ip: ClientIp) -> SessionOut:
    """Prove the number with its code (and the PIN, if one is set); register this device."""
    session = await container.accounts.verify(
        body.phone,
        body.code,
        DeviceInfo(name=body.device.name, platform=body.device.platform),
        body.pin,
        ip,
    )
    return _session_out(session, container)


@router.post("/refresh", response_model=SessionOut, responses=error_responses(400, 401, 413, 422))
async def refresh(body: RefreshRequest, container: ContainerDep) -> SessionOut:
    """Exchange a refresh token for new tokens; the old ones stop working."""
    return _session_out(await container.accounts.refresh(body.refresh_token), container)


@router.post("/logout", status_code=204, responses=error_responses(401))
async def logout(principal: PrincipalDep, container: ContainerDep) -> Response:
    """Revoke the calling device."""
    await container.accounts.logout(principal)
    return Response(status_code=204)


@router.post(
    "/pin-reset",
    status_code=202,
    responses=error_responses(400, 413, 422, 429, 503),
)
async def pin_reset(body: PinResetRequest, container: ContainerDep, ip: ClientIp) -> Response:
    """Start the waiting period after which the number can register without its PIN."""
    await container.accounts.request_pin_reset(body.phone, ip, body.locale)
    return Response(status_code=202)
