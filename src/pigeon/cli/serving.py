"""``pigeon serve``'s uvicorn server, which says where it listens and when it stopped.

uvicorn's own lines go to the standard library's logging, which Pigeon does
not print (``log_config=None``): without these two lines a person starting
the server saw nothing but the lifespan's ``pigeon.started``, and not the
address to open.
"""

from __future__ import annotations

import socket

import structlog
import uvicorn

log = structlog.get_logger("pigeon.serve")


class AnnouncingServer(uvicorn.Server):
    """Logs ``pigeon.listening`` with the addresses once bound, ``pigeon.stopped`` at the end."""

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if not self.started:
            return
        for url in sorted({http_url(bound) for server in self.servers for bound in server.sockets}):
            log.info(
                "pigeon.listening",
                url=url,
                websocket=f"ws{url[4:]}/v1/ws",
                docs=f"{url}/docs",
            )

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        await super().shutdown(sockets)
        log.info("pigeon.stopped")


def http_url(bound: socket.socket) -> str:
    """``http://host:port`` of a listening socket (IPv6 hosts in brackets)."""
    host, port = bound.getsockname()[:2]
    if bound.family == socket.AF_INET6:
        host = f"[{host}]"
    return f"http://{host}:{port}"
