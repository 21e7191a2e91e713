"""Health and metrics, for load balancers and Prometheus."""

from __future__ import annotations

import sqlalchemy as sa
from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from pigeon.api.deps import ContainerDep
from pigeon.api.schemas import Health

router = APIRouter(tags=["system"])


@router.get("/health", response_model=Health, responses={503: {"model": Health}})
async def health(container: ContainerDep) -> JSONResponse:
    """200 when the database answers, 503 when it does not (the bus does not decide it)."""
    bus = container.bus
    node = {
        "bus": "memory" if bus.local else "ok" if bus.healthy else "unreachable",
        "node": bus.node_id,
    }
    try:
        async with container.engine.connect() as conn:
            await conn.execute(sa.text("SELECT 1"))
    except Exception:
        body = {"status": "degraded", "database": "unreachable", **node}
        return JSONResponse(body, status_code=503)
    return JSONResponse({"status": "ok", "database": "ok", **node})


@router.get("/metrics", include_in_schema=False)
async def metrics(container: ContainerDep) -> Response:
    container.metrics.active_devices.set(await container.admin.count_devices())
    container.metrics.websocket_connections.set(container.bus.connections)
    return Response(generate_latest(container.metrics.registry), media_type=CONTENT_TYPE_LATEST)
