"""Profile photos: an image the user uploaded through the media path, shown per privacy.

The photo is an ordinary attachment of its owner's. While it is the photo the
media purge keeps it; once replaced or removed it expires at once, and its
blob goes the way of any unused one (``docs/retention.md``). Others read it
through ``GET /v1/users/{id}/photo`` only, and only as the owner's privacy
setting for photos (and blocks) allow: everyone else gets the answer a user
without a photo gets.
"""

from __future__ import annotations

from dataclasses import dataclass

from pigeon.domain.errors import InvalidInput, NotFound
from pigeon.domain.ids import is_valid_id
from pigeon.domain.media import Attachment
from pigeon.domain.people import ProfilePhoto
from pigeon.services.accounts import Principal
from pigeon.services.media import Download, parse_range
from pigeon.services.ports import BlobStore, Clock, UnitOfWorkFactory
from pigeon.services.visibility import seen_by


def photo_not_found() -> NotFound:
    """The one answer for no photo, an unknown user, and a photo the caller may not see."""
    return NotFound("photo_not_found", "No profile photo.")


@dataclass(slots=True, frozen=True)
class Thumbnail:
    """The small JPEG the server made when the image was uploaded."""

    photo: ProfilePhoto
    jpeg: bytes


class PhotoService:
    def __init__(self, uow: UnitOfWorkFactory, blobs: BlobStore, clock: Clock) -> None:
        self._uow = uow
        self._blobs = blobs
        self._clock = clock

    async def set_photo(self, principal: Principal, attachment_id: str) -> ProfilePhoto:
        """Make one of the caller's uploaded images their photo; the old one is freed."""
        now = self._clock.now()
        async with self._uow() as uow:
            found = await uow.media.get_many([attachment_id]) if is_valid_id(attachment_id) else {}
            attachment = found.get(attachment_id)
            if attachment is None or attachment.uploader_id != principal.user_id:
                raise NotFound("attachment_not_found", "No such attachment.")
            if not attachment.mime_type.startswith("image/") or attachment.thumbnail is None:
                raise InvalidInput(
                    "not_an_image",
                    "A profile photo is an image the server can read (JPEG, PNG, WebP, GIF, ...); "
                    f"this file is {attachment.mime_type}.",
                )
            await uow.people.set_photo(principal.user_id, attachment_id, now)
            photo = (await uow.people.photos([principal.user_id]))[principal.user_id]
            await uow.commit()
        return photo

    async def remove_photo(self, principal: Principal) -> None:
        async with self._uow() as uow:
            await uow.people.set_photo(principal.user_id, None, self._clock.now())
            await uow.commit()

    async def thumbnail(self, principal: Principal, user_id: str) -> Thumbnail:
        photo, attachment = await self._visible(principal, user_id)
        assert attachment.thumbnail is not None  # only images with one become photos
        return Thumbnail(photo, attachment.thumbnail)

    async def download(
        self, principal: Principal, user_id: str, byte_range: str | None
    ) -> tuple[ProfilePhoto, Download]:
        photo, attachment = await self._visible(principal, user_id)
        start, end = parse_range(byte_range, attachment.size)
        chunks = self._blobs.read(attachment.blob_hash, start, end)
        return photo, Download(attachment, start, end, chunks)

    async def _visible(self, principal: Principal, user_id: str) -> tuple[ProfilePhoto, Attachment]:
        if not is_valid_id(user_id):
            raise photo_not_found()
        async with self._uow(read_only=True) as uow:
            seen = await seen_by(uow, principal.user_id, [user_id])
            photo = (await uow.people.photos([user_id])).get(user_id)
            if photo is None or not seen[user_id].photo:
                raise photo_not_found()
            attachment = (await uow.media.get_many([photo.attachment_id]))[photo.attachment_id]
        return photo, attachment
