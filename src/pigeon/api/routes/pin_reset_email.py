"""A PIN reset confirmed by the recovery email, instead of waiting out the reset period."""

from __future__ import annotations

from fastapi import APIRouter, Response

from pigeon.api.deps import ClientIp, ContainerDep
from pigeon.api.errors import error_responses
from pigeon.api.schemas import PinResetConfirm, PinResetRequest

router = APIRouter(prefix="/v1/auth/pin-reset", tags=["auth"])


@router.post("/email", status_code=202, responses=error_responses(400, 422, 429, 503))
async def email_reset_code(
    body: PinResetRequest, container: ContainerDep, ip: ClientIp
) -> Response:
    """Email a code that removes the number's PIN, if the account has a verified recovery
    email. Every number gets 202, so this reveals nothing about accounts."""
    await container.recovery_email.request_pin_reset(body.phone, ip, body.locale)
    return Response(status_code=202)


@router.post("/confirm", status_code=204, responses=error_responses(400, 403, 422, 429))
async def confirm_reset(body: PinResetConfirm, container: ContainerDep, ip: ClientIp) -> Response:
    """The emailed code removes the PIN at once; register with the SMS code alone."""
    await container.recovery_email.confirm_pin_reset(body.phone, body.code, ip)
    return Response(status_code=204)
