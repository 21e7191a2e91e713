"""``pigeon serve``'s uvicorn: in this process, or in several on one port.

The server says where it listens and when it stopped: uvicorn's own lines go
to the standard library's logging, which Pigeon does not print
(``log_config=None``), and without these two lines a person starting the
server saw nothing but the lifespan's ``pigeon.started``, and not the address
to open.

With ``--workers N`` a supervising parent binds the port once and runs N
worker processes on the shared socket (uvicorn's ``Multiprocess``: it restarts
a worker that dies). Each worker builds its own application from the
environment, so it is a node of its own on the bus.
"""

from __future__ import annotations

import os
import socket
from typing import Any

import structlog
import uvicorn
from fastapi import FastAPI
from uvicorn.supervisors import Multiprocess

from pigeon.config import Settings

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
                web=f"{url}/",
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


def uvicorn_config(settings: Settings, app: Any, **extra: Any) -> uvicorn.Config:
    from pigeon.gateway.transport import paced_http_protocol, websocket_protocol

    return uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        # Past the backlog the kernel drops new connections' SYNs, and the clients
        # retry after 1, 3, 7 and 15 s: a reconnect storm's tail (uvicorn's 2048).
        backlog=settings.listen_backlog,
        loop="uvloop",
        http=paced_http_protocol(settings.new_connections_per_turn),
        ws=websocket_protocol(settings.ws_send_timeout_seconds),
        ws_per_message_deflate=settings.ws_compression,
        ws_max_size=settings.ws_max_frame_bytes,
        ws_ping_interval=settings.ws_ping_interval_seconds,
        ws_ping_timeout=settings.ws_ping_timeout_seconds,
        proxy_headers=settings.trust_proxy_headers,
        server_header=False,
        log_config=None,
        access_log=False,
        **extra,
    )


def listening_sockets(config: uvicorn.Config, count: int) -> list[socket.socket]:
    """``count`` sockets listening on one port (SO_REUSEPORT), the kernel spreading
    new connections over them.

    uvloop accepts one connection per listening socket per turn of the event
    loop. In a reconnect storm a busy loop took ~850 connections a second from
    one socket while the kernel's queue behind it stayed full (somaxconn caps
    it at 4096 here): new connections' SYNs were dropped and their clients came
    back 1, 3 and 7 s later. With several sockets each turn accepts several,
    and each socket has a queue of its own.

    The port is first bound alone, without SO_REUSEPORT, so a port that
    anything else listens on (another Pigeon too, whose sockets would
    otherwise share it) is refused as uvicorn would refuse it. A port of 0
    becomes the one that bind chose. Raises ``OSError`` when it cannot bind.
    """
    family = socket.AF_INET6 if ":" in config.host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind((config.host, config.port))
        port = probe.getsockname()[1]
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind((config.host, port))
            sock.set_inheritable(True)
    except OSError:
        for sock in sockets:
            sock.close()
        raise
    return sockets


def _listen(config: uvicorn.Config, settings: Settings) -> list[socket.socket] | None:
    try:
        return listening_sockets(config, settings.listen_sockets)
    except OSError as exc:
        log.error("pigeon.cannot_listen", host=settings.host, port=settings.port, error=str(exc))
        return None


def serve_in_this_process(settings: Settings) -> bool:
    """Run until stopped; False if the server could not start (the port is taken, say)."""
    from pigeon.api.app import create_app

    config = uvicorn_config(settings, create_app(settings))
    sockets = _listen(config, settings)
    if sockets is None:
        return False
    server = AnnouncingServer(config)
    server.run(sockets=sockets)
    return server.started


def serve_in_processes(settings: Settings, overrides: dict[str, Any]) -> bool:
    """Run ``settings.workers`` worker processes on one port until stopped."""
    # The workers read their settings from the environment, like this process.
    for name, value in overrides.items():
        if value is not None:
            os.environ[f"PIGEON_{name.upper()}"] = str(value)
    config = uvicorn_config(
        settings, f"{__name__}:app_from_environment", factory=True, workers=settings.workers
    )
    listening = _listen(config, settings)
    if listening is None:
        return False
    log.info("pigeon.workers", workers=settings.workers, url=http_url(listening[0]))
    Multiprocess(config, sockets=listening).run()
    log.info("pigeon.stopped")
    return True


def app_from_environment() -> FastAPI:
    """A worker's application (``serve_in_processes``): settings from the environment."""
    from pigeon.api.app import create_app
    from pigeon.observability.logging import configure_logging

    settings = Settings()
    configure_logging(settings.log_level, settings.log_format)
    return create_app(settings)
