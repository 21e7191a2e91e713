"""The caller's recovery email: set it by a code sent there, or remove it."""

from __future__ import annotations

from fastapi import APIRouter, Response

from pigeon.api.deps import ContainerDep, PrincipalDep
from pigeon.api.errors import error_responses
from pigeon.api.schemas import EmailCode, EmailRequest, RecoveryEmailOut
from pigeon.services.ports import RecoveryEmail

router = APIRouter(prefix="/v1/me/email", tags=["me"])


def _out(record: RecoveryEmail) -> RecoveryEmailOut:
    return RecoveryEmailOut(
        email=record.email, verified_at=record.verified_at, pending_email=record.pending_email
    )


@router.get("", response_model=RecoveryEmailOut, responses=error_responses(401))
async def get_email(principal: PrincipalDep, container: ContainerDep) -> RecoveryEmailOut:
    return _out(await container.recovery_email.get(principal))


@router.put(
    "",
    status_code=202,
    response_model=RecoveryEmailOut,
    responses=error_responses(400, 401, 422, 429, 503),
)
async def set_email(
    body: EmailRequest, principal: PrincipalDep, container: ContainerDep
) -> RecoveryEmailOut:
    """Send a six-digit code to the address; give it to ``POST /v1/me/email/verify``."""
    return _out(await container.recovery_email.start(principal, body.email, body.locale))


@router.post(
    "/verify", response_model=RecoveryEmailOut, responses=error_responses(400, 401, 403, 422, 429)
)
async def verify_email(
    body: EmailCode, principal: PrincipalDep, container: ContainerDep
) -> RecoveryEmailOut:
    """The code makes the address your recovery email; a previous one is told."""
    return _out(await container.recovery_email.verify(principal, body.code))


@router.delete("", status_code=204, responses=error_responses(401, 503))
async def remove_email(principal: PrincipalDep, container: ContainerDep) -> Response:
    """Remove the recovery email; the address is told."""
    await container.recovery_email.remove(principal)
    return Response(status_code=204)
