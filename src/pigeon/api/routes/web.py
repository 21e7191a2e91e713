"""The web client at ``/``: its page and its assets, same origin as the API, under a strict CSP.

The app is a client of the documented protocol only; this module serves files
and nothing else. Every answer forbids inline scripts, ``eval``, framing and
third-party requests, so a message that smuggled markup could not run it even
if the app rendered it (it renders text as text).
"""

from __future__ import annotations

import re

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pigeon.web import STATIC_DIR

ASSETS_PATH = "/assets"

# A Host header of this shape can be put in the CSP as is; anything else gets 'self' only.
_HOST = re.compile(r"^[A-Za-z0-9.-]{1,253}(:[0-9]{1,5})?$|^\[[0-9A-Fa-f:.]{2,45}\](:[0-9]{1,5})?$")


def content_security_policy(host: str) -> str:
    """The app's CSP; the socket is named by scheme and host ('self' is not ws: everywhere)."""
    sockets = f" ws://{host} wss://{host}" if _HOST.match(host) else ""
    return (
        "default-src 'self'; script-src 'self'; style-src 'self'; "
        "img-src 'self' blob: data:; media-src 'self' blob:; "
        f"connect-src 'self'{sockets}; object-src 'none'; base-uri 'none'; "
        "form-action 'self'; frame-ancestors 'none'"
    )


def security_headers(host: str) -> list[tuple[bytes, bytes]]:
    return [
        (b"content-security-policy", content_security_policy(host).encode()),
        (b"x-content-type-options", b"nosniff"),
        (b"x-frame-options", b"DENY"),
        (b"referrer-policy", b"no-referrer"),
    ]


class _SecureStatic:
    """Static files with the app's security headers on every answer."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        host = dict(scope["headers"]).get(b"host", b"").decode("latin-1")

        async def send_secure(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *security_headers(host)]
            await send(message)

        await self.app(scope, receive, send_secure)


def install_web(app: FastAPI) -> None:
    """Serve the built app at ``/`` and its hashed assets under ``/assets``."""
    index = STATIC_DIR / "index.html"
    if (STATIC_DIR / "assets").is_dir():
        assets = StaticFiles(directory=str(STATIC_DIR / "assets"))
        app.mount(ASSETS_PATH, _SecureStatic(assets), name="web-assets")

    @app.get("/", include_in_schema=False)
    async def web_client(request: Request) -> Response:
        host = request.headers.get("host", "")
        if not index.is_file():
            return JSONResponse(
                {"error": {"code": "web_not_built", "message": "The web client is not built."}},
                status_code=404,
                headers=dict((k.decode(), v.decode()) for k, v in security_headers(host)),
            )
        return FileResponse(
            index,
            media_type="text/html; charset=utf-8",
            # The page names the current hashed assets: never serve a stale one.
            headers={
                "cache-control": "no-cache",
                **{k.decode(): v.decode() for k, v in security_headers(host)},
            },
        )
