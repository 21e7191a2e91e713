"""Broadcast lists: private to their owner, sent to with ``sendMessage`` ``listId``."""

from __future__ import annotations

from fastapi import APIRouter, Response

from pigeon.api.deps import ContainerDep, PrincipalDep
from pigeon.api.errors import error_responses
from pigeon.api.schemas import (
    BroadcastListCreate,
    BroadcastListOut,
    BroadcastListsOut,
    BroadcastListUpdate,
)
from pigeon.domain.broadcasts import BroadcastList
from pigeon.domain.errors import NotFound
from pigeon.domain.ids import is_valid_id

router = APIRouter(prefix="/v1/broadcast-lists", tags=["broadcast lists"])


def _out(broadcast: BroadcastList) -> BroadcastListOut:
    return BroadcastListOut(
        id=broadcast.id,
        name=broadcast.name,
        recipients=broadcast.recipients,
        created_at=broadcast.created_at,
    )


def _checked(list_id: str) -> str:
    if not is_valid_id(list_id):  # e.g. a NUL, which PostgreSQL cannot even compare
        raise NotFound("broadcast_list_not_found", "No such broadcast list.")
    return list_id


@router.post(
    "",
    status_code=201,
    response_model=BroadcastListOut,
    responses=error_responses(400, 401, 404, 413, 422),
)
async def create_list(
    body: BroadcastListCreate, principal: PrincipalDep, container: ContainerDep
) -> BroadcastListOut:
    """A new list of recipients (at most PIGEON_BROADCAST_MAX_RECIPIENTS), seen only by you."""
    return _out(await container.broadcasts.create(principal, body.name, body.recipients))


@router.get("", response_model=BroadcastListsOut, responses=error_responses(401))
async def list_lists(principal: PrincipalDep, container: ContainerDep) -> BroadcastListsOut:
    """Your broadcast lists."""
    return BroadcastListsOut(
        lists=[_out(b) for b in await container.broadcasts.list_own(principal)]
    )


@router.get("/{list_id}", response_model=BroadcastListOut, responses=error_responses(401, 404))
async def get_list(
    list_id: str, principal: PrincipalDep, container: ContainerDep
) -> BroadcastListOut:
    return _out(await container.broadcasts.get(principal, _checked(list_id)))


@router.patch(
    "/{list_id}",
    response_model=BroadcastListOut,
    responses=error_responses(400, 401, 404, 413, 422),
)
async def update_list(
    list_id: str, body: BroadcastListUpdate, principal: PrincipalDep, container: ContainerDep
) -> BroadcastListOut:
    """Rename the list and/or replace its recipients."""
    updated = await container.broadcasts.update(
        principal, _checked(list_id), body.name, body.recipients
    )
    return _out(updated)


@router.delete("/{list_id}", status_code=204, responses=error_responses(401, 404))
async def delete_list(list_id: str, principal: PrincipalDep, container: ContainerDep) -> Response:
    await container.broadcasts.delete(principal, _checked(list_id))
    return Response(status_code=204)
