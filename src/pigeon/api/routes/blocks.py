"""Blocking other users."""

from __future__ import annotations

from fastapi import APIRouter, Response

from pigeon.api.deps import ContainerDep, PrincipalDep
from pigeon.api.errors import error_responses
from pigeon.api.schemas import BlockList, BlockOut

router = APIRouter(prefix="/v1/blocks", tags=["blocks"])


@router.get("", response_model=BlockList, responses=error_responses(401))
async def list_blocks(principal: PrincipalDep, container: ContainerDep) -> BlockList:
    """Whom you blocked, newest first."""
    blocks = await container.blocks.list_blocks(principal)
    return BlockList(blocks=[BlockOut(user_id=b.user_id, blocked_at=b.blocked_at) for b in blocks])


@router.put("/{user_id}", status_code=204, responses=error_responses(400, 401, 404))
async def block(user_id: str, principal: PrincipalDep, container: ContainerDep) -> Response:
    """Block a user: their 1:1 messages to you are accepted but never delivered, and they
    no longer see your presence, last seen, photo or about, nor add you to groups."""
    await container.blocks.block(principal, user_id)
    return Response(status_code=204)


@router.delete("/{user_id}", status_code=204, responses=error_responses(401, 404))
async def unblock(user_id: str, principal: PrincipalDep, container: ContainerDep) -> Response:
    """Unblock a user; what they sent while blocked is not delivered."""
    await container.blocks.unblock(principal, user_id)
    return Response(status_code=204)
