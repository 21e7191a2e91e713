"""``create_app(settings)``: the ASGI application."""

from __future__ import annotations

import asyncio
import contextlib
import gc
from collections.abc import AsyncIterator

import structlog
from fastapi import FastAPI
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket

import pigeon
from pigeon.api.errors import install_error_handlers
from pigeon.api.middleware import BodySizeLimit, RequestContext
from pigeon.api.routes import (
    attachments,
    auth,
    blocks,
    broadcasts,
    contacts,
    me,
    notifications,
    photos,
    pin_reset_email,
    privacy,
    push,
    recovery_email,
    statuses,
    system,
    users,
)
from pigeon.api.routes.docs import install_docs
from pigeon.api.routes.web import install_web
from pigeon.bootstrap import Container, build
from pigeon.config import Settings
from pigeon.gateway import endpoint
from pigeon.services.ports import StorageError

log = structlog.get_logger(__name__)


class PigeonApp(FastAPI):
    """FastAPI, except that the gateway's WebSocket skips the router and middleware."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket" and scope["path"] == endpoint.PATH:
            scope["app"] = self
            await endpoint.serve(WebSocket(scope, receive, send))
            return
        await super().__call__(scope, receive, send)


def create_app(settings: Settings, container: Container | None = None) -> FastAPI:
    """Build the app; the container (database, services) opens and closes with its lifespan."""
    container = container or build(settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await container.start()
        _settle_garbage_collector()
        housekeeping = asyncio.gather(_housekeeping(container), _revocations(container))
        log.info("pigeon.started", database=container.engine.url.get_backend_name())
        try:
            yield
        finally:
            housekeeping.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await housekeeping
            await container.close()

    app = PigeonApp(
        title="Pigeon",
        version=pigeon.__version__,
        summary="A self-hostable WhatsApp-style messaging server.",
        lifespan=lifespan,
        docs_url=None,  # FastAPI's pages load from CDNs: see install_docs
        redoc_url=None,
    )
    app.state.container = container
    app.state.gateway = container.gateway
    install_error_handlers(app)
    people = (contacts, blocks, privacy, photos, statuses, recovery_email, pin_reset_email)
    messaging = (push, notifications, broadcasts)
    for module in (auth, me, users, attachments, system, *people, *messaging):
        app.include_router(module.router)
    install_docs(app)
    install_web(app)
    app.add_middleware(
        BodySizeLimit,
        max_bytes=settings.max_body_bytes,
        exempt_prefixes=("/v1/attachments", "/v1/uploads/"),
    )
    app.add_middleware(RequestContext, metrics=container.metrics)
    return app


# Net allocations of tracked objects between young collections (CPython: 700).
# Every message in flight allocates dozens (frames, futures, dicts, rows), so at
# the default the collector ran ~200 times a second at saturation, every tenth
# pass also over the middle generation and every hundredth over the whole heap:
# ~10 % of the server's CPU, timed with gc.callbacks (docs/performance.md). Garbage
# here is almost all freed by reference counting; the collector is only for
# cycles, which can wait this long.
YOUNG_COLLECTION_THRESHOLD = 20_000


def _settle_garbage_collector() -> None:
    """Keep the objects built at startup out of every later collection, and collect rarely.

    Imports and the app leave ~160,000 long-lived objects; without the freeze
    each full collection walks them all, a pause of tens of milliseconds that
    lands on whichever messages are in flight.
    """
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_COLLECTION_THRESHOLD, middle, old)


async def _housekeeping(container: Container) -> None:
    """Deletes what has expired: codes, abandoned devices, undelivered messages, media."""
    while True:
        await asyncio.sleep(container.settings.purge_interval_seconds)
        try:
            purged = await container.accounts.purge_expired()
            purged |= await container.messaging.purge_expired()
            purged |= await container.statuses.purge()  # before media: it frees their files
            purged |= await container.media.purge()
            purged |= await container.notifications.purge_expired()
            if any(purged.values()):
                log.info("housekeeping.purged", **purged)
        except StorageError as exc:  # the database is away: say so once a round, briefly
            log.warning("housekeeping.storage_unavailable", error=str(exc))
        except Exception:
            log.exception("housekeeping.failed")


async def _revocations(container: Container) -> None:
    """Closes sockets of devices revoked by another process within a few seconds."""
    while True:
        await asyncio.sleep(container.settings.ws_revocation_check_seconds)
        try:
            await container.accounts.close_revoked_connections()
        except StorageError as exc:
            log.warning("revocations.storage_unavailable", error=str(exc))
        except Exception:
            log.exception("revocations.failed")
