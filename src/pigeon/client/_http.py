"""Registration and sessions over the HTTP API (httpx)."""

from __future__ import annotations

from collections.abc import Callable
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self
from urllib.parse import urlsplit, urlunsplit

import httpx

from pigeon.client._errors import ApiError, AuthenticationError, NetworkError
from pigeon.client._models import CodeSent, Profile, Session

if TYPE_CHECKING:
    from pigeon.client._connection import Connection, ReconnectPolicy

__all__ = ["PigeonClient", "websocket_url"]

USER_AGENT = "pigeon-client/0.1"


def websocket_url(base_url: str) -> str:
    """``http(s)://host[:port][/prefix]`` -> ``ws(s)://host[:port][/prefix]/v1/ws``."""
    parts = urlsplit(base_url)
    scheme = {"http": "ws", "https": "wss", "ws": "ws", "wss": "wss"}.get(parts.scheme)
    if scheme is None or not parts.netloc:
        raise ValueError(f"not an http(s) URL: {base_url!r}")
    path = parts.path.rstrip("/") + "/v1/ws"
    return urlunsplit((scheme, parts.netloc, path, "", ""))


class PigeonClient:
    """The HTTP side of a Pigeon server: register devices, refresh tokens, open connections.

    Use it as an async context manager (or call :meth:`aclose`) so its HTTP
    connection pool is released::

        async with PigeonClient("https://pigeon.example") as client:
            await client.request_code("+14155550123")
            session = await client.verify("+14155550123", "123456", "laptop")
            async with client.connect(session) as conn:
                ...
    """

    def __init__(
        self,
        base_url: str,
        *,
        timeout: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.ws_url = websocket_url(self.base_url)
        self._http = httpx.AsyncClient(
            base_url=self.base_url,
            timeout=timeout,
            transport=transport,
            headers={"User-Agent": USER_AGENT},
        )

    async def aclose(self) -> None:
        """Close the HTTP connection pool."""
        await self._http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    # -- registration ------------------------------------------------------------

    async def request_code(self, phone: str, locale: str | None = None) -> CodeSent:
        """Ask the server to text a six-digit verification code to ``phone``."""
        body: dict[str, Any] = {"phone": phone}
        if locale is not None:
            body["locale"] = locale
        data = await self._post("/v1/auth/code", body)
        return CodeSent(phone=data["phone"], expires_in=int(data["expires_in"]))

    async def verify(
        self,
        phone: str,
        code: str,
        device_name: str,
        platform: str = "cli",
        pin: str | None = None,
    ) -> Session:
        """Prove the number with its code (and PIN, if set): registers this device.

        A number protected by a PIN answers ``ApiError`` with code ``pin_required``
        (status 423) until ``pin`` is given.
        """
        body: dict[str, Any] = {
            "phone": phone,
            "code": code,
            "device": {"name": device_name, "platform": platform},
        }
        if pin is not None:
            body["pin"] = pin
        return _session(await self._post("/v1/auth/verify", body))

    async def refresh(self, session: Session) -> Session:
        """New tokens for the session's device; the old tokens stop working."""
        body = {"refresh_token": session.refresh_token}
        return _session(await self._post("/v1/auth/refresh", body))

    async def logout(self, session: Session) -> None:
        """Revoke the session's device (its live connection is closed by the server)."""
        await self._request("POST", "/v1/auth/logout", session=session)

    async def get_user(self, session: Session, user_id: str) -> Profile:
        """A user's public profile (name and about)."""
        data = await self._request("GET", f"/v1/users/{user_id}", session=session)
        return Profile(user_id=data["id"], name=data.get("name", ""), about=data.get("about", ""))

    # -- the WebSocket -------------------------------------------------------------

    def connect(
        self,
        session: Session,
        *,
        auto_refresh: bool = True,
        on_session: Callable[[Session], None] | None = None,
        request_timeout: float = 10.0,
        send_attempts: int = 5,
        reconnect: ReconnectPolicy | None = None,
        ping_interval: float | None = 20.0,
    ) -> Connection:
        """A :class:`Connection` for ``session``; open it with ``async with``.

        With ``auto_refresh`` an access token refused on (re)connect is
        refreshed once with the refresh token; ``on_session`` is then called
        with the new session so the application can store it.
        """
        from pigeon.client._connection import Connection

        return Connection(
            self.ws_url,
            session,
            refresh=self.refresh if auto_refresh else None,
            on_session=on_session,
            request_timeout=request_timeout,
            send_attempts=send_attempts,
            reconnect=reconnect,
            ping_interval=ping_interval,
        )

    # -- plumbing --------------------------------------------------------------------

    async def _post(self, path: str, body: dict[str, Any]) -> Any:
        return await self._request("POST", path, json=body)

    async def _request(
        self,
        method: str,
        path: str,
        *,
        json: dict[str, Any] | None = None,
        session: Session | None = None,
    ) -> Any:
        headers = {"Authorization": f"Bearer {session.access_token}"} if session else None
        try:
            response = await self._http.request(method, path, json=json, headers=headers)
        except httpx.TransportError as exc:
            raise NetworkError("unreachable", f"{self.base_url}: {exc!r}") from exc
        if response.is_success:
            return response.json() if response.content else None
        code, message = _error_of(response)
        if response.status_code == 401:
            raise AuthenticationError(code, message)
        raise ApiError(response.status_code, code, message)


def _error_of(response: httpx.Response) -> tuple[str, str]:
    try:
        error = response.json()["error"]
        return str(error["code"]), str(error["message"])
    except (ValueError, KeyError, TypeError):
        return f"http_{response.status_code}", response.reason_phrase or "HTTP error"


def _session(data: dict[str, Any]) -> Session:
    return Session(
        user_id=data["user_id"],
        device_id=data["device_id"],
        access_token=data["access_token"],
        refresh_token=data["refresh_token"],
    )
