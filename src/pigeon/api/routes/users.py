"""Other users, as the caller may see them."""

from __future__ import annotations

from fastapi import APIRouter

from pigeon.api.deps import ContainerDep, PrincipalDep
from pigeon.api.errors import error_responses
from pigeon.api.photos import photo_out
from pigeon.api.schemas import PublicProfileOut
from pigeon.domain.errors import NotFound
from pigeon.domain.ids import is_valid_id

router = APIRouter(prefix="/v1/users", tags=["users"])


@router.get("/{user_id}", response_model=PublicProfileOut, responses=error_responses(401, 404))
async def get_user(
    user_id: str, principal: PrincipalDep, container: ContainerDep
) -> PublicProfileOut:
    """A user's public profile (name, and about where their privacy settings show it to
    you; never the phone number)."""
    if not is_valid_id(user_id):  # e.g. a NUL, which PostgreSQL cannot even compare
        raise NotFound("user_not_found", "No such user.")
    profile = await container.profiles.get_public(user_id, viewer_id=principal.user_id)
    return PublicProfileOut(
        id=profile.id, name=profile.name, about=profile.about, photo=photo_out(profile.photo)
    )
