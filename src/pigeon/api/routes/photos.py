"""Profile photos: set and remove your own, read others' as their privacy allows."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Header, Query, Response
from fastapi.responses import StreamingResponse

from pigeon.api.deps import ContainerDep, PrincipalDep
from pigeon.api.downloads import PRIVATE_FILE_HEADERS, ranged_response
from pigeon.api.errors import error_responses
from pigeon.api.photos import photo_out
from pigeon.api.schemas import PhotoOut, PhotoRequest

router = APIRouter(prefix="/v1", tags=["photos"])


@router.put("/me/photo", response_model=PhotoOut, responses=error_responses(400, 401, 404, 422))
async def set_photo(
    body: PhotoRequest, principal: PrincipalDep, container: ContainerDep
) -> PhotoOut:
    """Make an image you uploaded your profile photo; the previous one is freed."""
    photo = photo_out(await container.photos.set_photo(principal, body.attachment_id))
    assert photo is not None
    return photo


@router.delete("/me/photo", status_code=204, responses=error_responses(401))
async def remove_photo(principal: PrincipalDep, container: ContainerDep) -> Response:
    await container.photos.remove_photo(principal)
    return Response(status_code=204)


@router.get(
    "/users/{user_id}/photo",
    response_class=StreamingResponse,
    responses={
        200: {"content": {"image/*": {}}, "description": "The photo, or its JPEG thumbnail."},
        **error_responses(401, 404, 416),
    },
)
async def get_photo(
    user_id: str,
    principal: PrincipalDep,
    container: ContainerDep,
    size: Annotated[Literal["full", "thumbnail"], Query()] = "full",
    range_header: Annotated[str | None, Header(alias="Range")] = None,
) -> Response:
    """A user's photo (``size=thumbnail``: the server's JPEG of at most 96x96), if their
    privacy settings show it to you; otherwise, as for no photo, 404 ``photo_not_found``."""
    if size == "thumbnail":
        thumbnail = await container.photos.thumbnail(principal, user_id)
        return Response(thumbnail.jpeg, media_type="image/jpeg", headers=PRIVATE_FILE_HEADERS)
    _, download = await container.photos.download(principal, user_id, range_header)
    return ranged_response(download, download.attachment.mime_type)
