"""Status updates: post, list, delete, mark seen, viewers, media."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Response
from fastapi.responses import StreamingResponse

from pigeon.api.deps import ContainerDep, PrincipalDep
from pigeon.api.downloads import ranged_response
from pigeon.api.errors import error_responses
from pigeon.api.schemas import MutedList, StatusIn, StatusList, StatusOut, ViewerList, ViewerOut
from pigeon.domain.people import Status
from pigeon.services.statuses import NewStatus

router = APIRouter(prefix="/v1/statuses", tags=["statuses"])


async def _out(container: ContainerDep, statuses: list[Status]) -> list[StatusOut]:
    media = await container.statuses.media_info(statuses)
    return [
        StatusOut(
            id=s.id,
            author_id=s.author_id,
            text=s.text,
            background_color=s.background,
            font=s.font,
            caption=s.caption,
            media=(
                {**media[s.attachment_id], "url": f"/v1/statuses/{s.id}/media"}
                if s.attachment_id in media
                else None
            ),
            created_at=s.created_at,
            expires_at=s.expires_at,
        )
        for s in statuses
    ]


@router.post(
    "", status_code=201, response_model=StatusOut, responses=error_responses(400, 401, 404, 422)
)
async def post_status(
    body: StatusIn, principal: PrincipalDep, container: ContainerDep
) -> StatusOut:
    """Post a status; it expires 24 hours later by the server's clock."""
    new = NewStatus(
        text=body.text,
        background=body.background_color,
        font=body.font,
        attachment_id=body.attachment_id,
        caption=body.caption,
    )
    status = await container.statuses.post(principal, new)
    return (await _out(container, [status]))[0]


@router.get("", response_model=StatusList, responses=error_responses(401))
async def list_statuses(principal: PrincipalDep, container: ContainerDep) -> StatusList:
    """Current statuses of your contacts that they show you, newest first."""
    return StatusList(
        statuses=await _out(container, await container.statuses.list_current(principal))
    )


@router.get("/mine", response_model=StatusList, responses=error_responses(401))
async def my_statuses(principal: PrincipalDep, container: ContainerDep) -> StatusList:
    return StatusList(statuses=await _out(container, await container.statuses.mine(principal)))


@router.get("/muted", response_model=MutedList, responses=error_responses(401))
async def muted(principal: PrincipalDep, container: ContainerDep) -> MutedList:
    """Whose statuses you muted (shared by all your devices; clients hide them)."""
    return MutedList(muted=await container.statuses.muted(principal))


@router.put("/muted/{user_id}", status_code=204, responses=error_responses(401, 404))
async def mute(user_id: str, principal: PrincipalDep, container: ContainerDep) -> Response:
    await container.statuses.mute(principal, user_id, muted=True)
    return Response(status_code=204)


@router.delete("/muted/{user_id}", status_code=204, responses=error_responses(401, 404))
async def unmute(user_id: str, principal: PrincipalDep, container: ContainerDep) -> Response:
    await container.statuses.mute(principal, user_id, muted=False)
    return Response(status_code=204)


@router.delete("/{status_id}", status_code=204, responses=error_responses(401, 404))
async def delete_status(
    status_id: str, principal: PrincipalDep, container: ContainerDep
) -> Response:
    await container.statuses.delete(principal, status_id)
    return Response(status_code=204)


@router.post("/{status_id}/view", status_code=204, responses=error_responses(401, 404))
async def view_status(status_id: str, principal: PrincipalDep, container: ContainerDep) -> Response:
    """Mark a status seen (not recorded while your read receipts are off)."""
    await container.statuses.view(principal, status_id)
    return Response(status_code=204)


@router.get("/{status_id}/viewers", response_model=ViewerList, responses=error_responses(401, 404))
async def status_viewers(
    status_id: str, principal: PrincipalDep, container: ContainerDep
) -> ViewerList:
    """Who saw your status, and when."""
    views = await container.statuses.viewers(principal, status_id)
    return ViewerList(viewers=[ViewerOut(user_id=u, viewed_at=at) for u, at in views])


@router.get(
    "/{status_id}/media",
    response_class=StreamingResponse,
    responses={200: {"content": {"image/*": {}, "video/*": {}}}, **error_responses(401, 404, 416)},
)
async def status_media(
    status_id: str,
    principal: PrincipalDep,
    container: ContainerDep,
    range_header: Annotated[str | None, Header(alias="Range")] = None,
) -> StreamingResponse:
    """A media status's file, for those who may see the status (``Range`` gives 206)."""
    download = await container.statuses.media(principal, status_id, range_header)
    return ranged_response(download, download.attachment.mime_type)
