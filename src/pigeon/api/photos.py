"""How a profile photo appears in HTTP answers (profiles, contacts, lookups)."""

from __future__ import annotations

from urllib.parse import quote

from pigeon.api.schemas import PhotoOut
from pigeon.domain.people import ProfilePhoto


def photo_out(photo: ProfilePhoto | None) -> PhotoOut | None:
    if photo is None:
        return None
    url = f"/v1/users/{quote(photo.user_id, safe='')}/photo"
    return PhotoOut(
        url=url,
        thumbnail_url=f"{url}?size=thumbnail",
        mime_type=photo.mime_type,
        width=photo.width,
        height=photo.height,
        updated_at=photo.set_at,
    )
