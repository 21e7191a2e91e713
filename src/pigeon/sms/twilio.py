"""Twilio's Programmable Messaging REST API, spoken over httpx."""

from __future__ import annotations

import httpx
import structlog

from pigeon.domain.errors import InvalidInput, Unavailable
from pigeon.services.ports import SmsMessage

log = structlog.get_logger(__name__)

# Twilio error codes that mean "this number cannot receive SMS", not an outage.
# https://www.twilio.com/docs/api/errors
_BAD_NUMBER_CODES = frozenset({21211, 21214, 21217, 21407, 21408, 21610, 21612, 21614})


class TwilioSmsProvider:
    """POSTs ``To``/``From``/``Body`` to ``/2010-04-01/Accounts/{sid}/Messages.json``."""

    def __init__(
        self,
        *,
        account_sid: str,
        auth_token: str,
        sender: str = "",
        messaging_service_sid: str = "",
        base_url: str = "https://api.twilio.com",
        timeout: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        if not (sender or messaging_service_sid):
            raise ValueError("Twilio needs a From number or a messaging service SID")
        self._url = f"{base_url.rstrip('/')}/2010-04-01/Accounts/{account_sid}/Messages.json"
        self._sender = sender
        self._service = messaging_service_sid
        self._client = httpx.AsyncClient(
            auth=(account_sid, auth_token), timeout=timeout, transport=transport
        )

    async def send(self, message: SmsMessage) -> None:
        form = {"To": message.to, "Body": message.body}
        if self._service:
            form["MessagingServiceSid"] = self._service
        else:
            form["From"] = self._sender
        try:
            response = await self._client.post(self._url, data=form)
        except httpx.HTTPError as exc:
            log.warning("sms.twilio.unreachable", error=str(exc))
            raise Unavailable("sms_unavailable", "The SMS provider cannot be reached.") from exc
        if response.status_code == 201:
            log.info("sms.twilio.sent", sid=response.json().get("sid"), template=message.template)
            return
        self._raise_for(response)

    def _raise_for(self, response: httpx.Response) -> None:
        try:
            body = response.json()
            code = int(body.get("code", 0))
        except (ValueError, TypeError, AttributeError):
            body, code = {}, 0
        log.warning("sms.twilio.refused", status=response.status_code, code=code)
        if code in _BAD_NUMBER_CODES:
            raise InvalidInput("invalid_phone", "This number cannot receive SMS.")
        raise Unavailable("sms_unavailable", "The SMS provider refused the message.")

    async def aclose(self) -> None:
        await self._client.aclose()
