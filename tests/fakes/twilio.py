"""A local Twilio: the Programmable Messaging ``Messages.json`` resource over real HTTP.

It listens on 127.0.0.1 (port chosen by the OS) and answers the way
https://api.twilio.com does for creating a message: HTTP Basic auth with the
account SID and auth token, a form-encoded body, 201 with the message
resource, and Twilio's error JSON (``code``, ``message``, ``more_info``,
``status``) when it refuses. Tests read what it accepted from ``outbox``, or
over HTTP from ``GET /_fake/outbox``, and flip ``outage`` or ``stall`` to
play a Twilio that is down or hangs.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import re
import secrets
from datetime import UTC, datetime
from email.utils import format_datetime
from types import TracebackType
from typing import Any, Self
from urllib.parse import parse_qs

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

API_VERSION = "2010-04-01"
START_TIMEOUT_SECONDS = 5.0
STALL_LIMIT_SECONDS = 30.0

# What Twilio takes for a phone number it could send to: E.164, "+" and 8 to 15 digits.
_E164 = re.compile(r"^\+[1-9]\d{7,14}$")


def twilio_error(status: int, code: int, message: str) -> JSONResponse:
    """An error body exactly as Twilio shapes it."""
    return JSONResponse(
        {
            "code": code,
            "message": message,
            "more_info": f"https://www.twilio.com/docs/errors/{code}",
            "status": status,
        },
        status_code=status,
    )


class FakeTwilio:
    """One Twilio account (SID + auth token) served on a local port."""

    def __init__(self, account_sid: str, auth_token: str) -> None:
        self.account_sid = account_sid
        self.auth_token = auth_token
        self.outbox: list[dict[str, Any]] = []
        """Every message Twilio accepted, as the resource it answered with."""
        self.refused: list[dict[str, Any]] = []
        """Every error it answered, as the error JSON it sent."""
        self.invalid_numbers: set[str] = set()
        """Numbers Twilio calls invalid (21211) although they look like E.164."""
        self.outage = False
        """When True, every request gets 500 as during a Twilio incident."""
        self.stall = False
        """When True, message requests hang until the fake stops."""
        self._released = asyncio.Event()
        self._server: uvicorn.Server | None = None
        self._task: asyncio.Task[None] | None = None
        self.port = 0
        self.app = Starlette(
            routes=[
                Route(
                    f"/{API_VERSION}/Accounts/{{account_sid}}/Messages.json",
                    self._create_message,
                    methods=["POST"],
                ),
                Route("/_fake/outbox", self._read_outbox, methods=["GET"]),
            ]
        )

    @property
    def base_url(self) -> str:
        assert self.port, "the fake Twilio is not running"
        return f"http://127.0.0.1:{self.port}"

    # -- lifecycle ---------------------------------------------------------

    async def start(self) -> None:
        config = uvicorn.Config(
            self.app,
            host="127.0.0.1",
            port=0,
            http="h11",
            ws="none",
            lifespan="off",
            log_config=None,
            log_level="warning",
            access_log=False,
        )
        self._server = uvicorn.Server(config)
        self._task = asyncio.create_task(self._server.serve())
        loop = asyncio.get_running_loop()
        deadline = loop.time() + START_TIMEOUT_SECONDS
        while not self._server.started:
            if self._task.done():
                self._task.result()  # raises what stopped it
                raise RuntimeError("the fake Twilio exited before it started")
            if loop.time() > deadline:
                raise TimeoutError("the fake Twilio did not start in time")
            await asyncio.sleep(0.01)
        self.port = self._server.servers[0].sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Stop listening; afterwards the port refuses connections. Safe to call twice."""
        if self._server is None or self._task is None:
            return
        self._released.set()
        self._server.should_exit = True
        await asyncio.wait_for(self._task, timeout=START_TIMEOUT_SECONDS)
        self._server = None
        self._task = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.stop()

    # -- the API -----------------------------------------------------------

    def _refuse(self, status: int, code: int, message: str) -> JSONResponse:
        response = twilio_error(status, code, message)
        self.refused.append({"code": code, "message": message, "status": status})
        return response

    def _authenticated(self, request: Request) -> bool:
        scheme, _, encoded = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            user, _, password = base64.b64decode(encoded, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False
        return user == self.account_sid and password == self.auth_token

    async def _create_message(self, request: Request) -> JSONResponse:
        if self.outage:
            return self._refuse(500, 20500, "An internal server error has occurred")
        if self.stall:
            await asyncio.wait_for(self._released.wait(), timeout=STALL_LIMIT_SECONDS)
            return self._refuse(503, 20503, "Service unavailable")
        if not self._authenticated(request) or request.path_params["account_sid"] != (
            self.account_sid
        ):
            response = self._refuse(401, 20003, "Authenticate")
            response.headers["WWW-Authenticate"] = 'Basic realm="Twilio API"'
            return response
        form = await self._form(request)
        to = form.get("To", "")
        sender = form.get("From", "")
        service = form.get("MessagingServiceSid", "")
        body = form.get("Body", "")
        if not to:
            return self._refuse(400, 21604, "A 'To' phone number is required.")
        if not (sender or service):
            return self._refuse(400, 21603, "A 'From' phone number is required.")
        if not body:
            return self._refuse(400, 21602, "Message body is required.")
        if not _E164.match(to) or to in self.invalid_numbers:
            return self._refuse(400, 21211, f"The 'To' number {to} is not a valid phone number.")
        sid = "SM" + secrets.token_hex(16)
        now = format_datetime(datetime.now(UTC), usegmt=True)
        message = {
            "account_sid": self.account_sid,
            "api_version": API_VERSION,
            "body": body,
            "date_created": now,
            "date_sent": None,
            "date_updated": now,
            "direction": "outbound-api",
            "error_code": None,
            "error_message": None,
            "from": sender or None,
            "messaging_service_sid": service or None,
            "num_media": "0",
            "num_segments": "1",
            "price": None,
            "price_unit": "USD",
            "sid": sid,
            # Twilio says "accepted" while a messaging service still picks the sender.
            "status": "queued" if sender else "accepted",
            "subresource_uris": {
                "media": f"/{API_VERSION}/Accounts/{self.account_sid}/Messages/{sid}/Media.json"
            },
            "to": to,
            "uri": f"/{API_VERSION}/Accounts/{self.account_sid}/Messages/{sid}.json",
        }
        self.outbox.append(message)
        return JSONResponse(message, status_code=201)

    @staticmethod
    async def _form(request: Request) -> dict[str, str]:
        """The form fields (first value of each); a body of another type has none."""
        content_type = request.headers.get("content-type", "").split(";")[0].strip()
        if content_type != "application/x-www-form-urlencoded":
            return {}
        fields = parse_qs((await request.body()).decode(), keep_blank_values=True)
        return {name: values[0] for name, values in fields.items()}

    async def _read_outbox(self, request: Request) -> JSONResponse:
        return JSONResponse({"messages": self.outbox})
