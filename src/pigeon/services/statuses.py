"""Status updates: posted by a user, seen by those their status privacy allows, gone after a
day by the server's clock (or when the author deletes them).

Who sees a status: a user who has the author among their contacts, and whom
the author's ``statuses`` setting admits (``services.visibility``), unless
the author blocked them. The same rule guards the status's media: everyone
else gets the answer an unknown id gets. The server stores the text for
delivery and never reads it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from pigeon.domain.delivery import InboxEntry
from pigeon.domain.errors import InvalidInput, NotFound
from pigeon.domain.events import StatusPosted
from pigeon.domain.ids import is_valid_id, new_id
from pigeon.domain.people import Status
from pigeon.services import fanout
from pigeon.services.accounts import Principal
from pigeon.services.fanout import Queued
from pigeon.services.media import Download, parse_range
from pigeon.services.ports import BlobStore, Bus, Clock, UnitOfWork, UnitOfWorkFactory
from pigeon.services.visibility import seen_by, status_audience

STATUS_MEDIA_TYPES = ("image/", "video/")


def status_not_found() -> NotFound:
    """The one answer for an unknown, expired or invisible status (and its media)."""
    return NotFound("status_not_found", "No such status.")


@dataclass(slots=True, frozen=True)
class StatusPolicy:
    ttl: timedelta = timedelta(hours=24)
    max_length: int = 700  # characters of text or caption


@dataclass(slots=True, frozen=True)
class NewStatus:
    text: str = ""
    background: str | None = None
    font: int | None = None
    attachment_id: str | None = None
    caption: str = ""


class StatusService:
    def __init__(
        self,
        uow: UnitOfWorkFactory,
        blobs: BlobStore,
        bus: Bus,
        clock: Clock,
        policy: StatusPolicy,
    ) -> None:
        self._uow = uow
        self._bus = bus
        self._blobs = blobs
        self._clock = clock
        self._policy = policy

    async def post(self, principal: Principal, new: NewStatus) -> Status:
        limit = self._policy.max_length
        if len(new.text) > limit or len(new.caption) > limit:
            raise InvalidInput("status_too_long", f"A status has at most {limit} characters.")
        if (new.attachment_id is None) == (not new.text.strip()):
            raise InvalidInput(
                "invalid_status", "A status is either a text or an attachment (with a caption)."
            )
        now = self._clock.now()
        status = Status(
            id=new_id(),
            author_id=principal.user_id,
            created_at=now,
            expires_at=now + self._policy.ttl,
            text=new.text,
            background=new.background,
            font=new.font,
            attachment_id=new.attachment_id,
            caption=new.caption,
        )
        async with self._uow() as uow:
            if new.attachment_id is not None:
                await self._check_media(uow, principal, new.attachment_id)
            await uow.statuses.add(status)
            entries = await self._announce(uow, status)
            await uow.commit()
        self._bus.publish(entries)
        return status

    async def _announce(self, uow: UnitOfWork, status: Status) -> list[InboxEntry]:
        """A ``status`` event in the queue of every device that may see it, kept until the
        status expires: live devices get it at once, the others when they connect."""
        audience = await status_audience(uow, status.author_id)
        devices = await uow.delivery.devices_of(audience)
        event = StatusPosted(status.id, status.author_id, status.created_at, status.expires_at)
        items = [Queued(d, u, event=event) for u in audience for d in devices.get(u, [])]
        return await fanout.enqueue(uow, items, status.expires_at)

    async def delete(self, principal: Principal, status_id: str) -> None:
        """The author deletes a status before it expires; its media is freed."""
        now = self._clock.now()
        async with self._uow() as uow:
            status = await uow.statuses.get(status_id, now) if is_valid_id(status_id) else None
            if status is None or status.author_id != principal.user_id:
                raise status_not_found()
            await uow.statuses.delete([status_id], now)
            await uow.commit()

    async def list_current(self, principal: Principal) -> list[Status]:
        """The current statuses of the caller's contacts that the caller may see, newest
        first."""
        now = self._clock.now()
        async with self._uow(read_only=True) as uow:
            contacts = [u.id for u in await uow.people.contacts_of(principal.user_id)]
            seen = await seen_by(uow, principal.user_id, contacts)
            visible = [u for u in contacts if seen[u].statuses]
            return await uow.statuses.current_of(visible, now)

    async def mine(self, principal: Principal) -> list[Status]:
        async with self._uow(read_only=True) as uow:
            return await uow.statuses.current_of([principal.user_id], self._clock.now())

    async def view(self, principal: Principal, status_id: str) -> None:
        """Mark a status seen. A viewer with read receipts off is not recorded."""
        now = self._clock.now()
        async with self._uow() as uow:
            status = await self._visible(uow, principal, status_id)
            if status.author_id != principal.user_id:
                privacy = await uow.people.privacy([principal.user_id])
                if privacy[principal.user_id].read_receipts:
                    await uow.statuses.add_view(status_id, principal.user_id, now)
                    await uow.commit()

    async def viewers(self, principal: Principal, status_id: str) -> list[tuple[str, datetime]]:
        """Who saw the caller's status and when; those who now have read receipts off are
        left out (WhatsApp's rule)."""
        now = self._clock.now()
        async with self._uow(read_only=True) as uow:
            status = await uow.statuses.get(status_id, now) if is_valid_id(status_id) else None
            if status is None or status.author_id != principal.user_id:
                raise status_not_found()
            views = await uow.statuses.views(status_id)
            privacy = await uow.people.privacy([viewer for viewer, _ in views])
        return [(viewer, at) for viewer, at in views if privacy[viewer].read_receipts]

    async def media(self, principal: Principal, status_id: str, byte_range: str | None) -> Download:
        async with self._uow(read_only=True) as uow:
            status = await self._visible(uow, principal, status_id)
            if status.attachment_id is None:
                raise status_not_found()
            found = await uow.media.get_many([status.attachment_id])
        attachment = found[status.attachment_id]
        start, end = parse_range(byte_range, attachment.size)
        return Download(attachment, start, end, self._blobs.read(attachment.blob_hash, start, end))

    async def media_info(self, statuses: list[Status]) -> dict[str, dict[str, object]]:
        """Per attachment of these statuses: type, size, dimensions, thumbnail (no id: the
        file is read through its status)."""
        ids = sorted({s.attachment_id for s in statuses if s.attachment_id is not None})
        if not ids:
            return {}
        async with self._uow(read_only=True) as uow:
            found = await uow.media.get_many(ids)
        return {
            a.id: {k: v for k, v in a.metadata().items() if k not in ("attachmentId", "fileName")}
            for a in found.values()
        }

    async def mute(self, principal: Principal, user_id: str, muted: bool) -> None:
        """Mute (or unmute) a user's statuses: a preference all the caller's devices share;
        the server still delivers them."""
        async with self._uow() as uow:
            if not is_valid_id(user_id) or await uow.users.get(user_id) is None:
                raise NotFound("user_not_found", "No such user.")
            if muted:
                await uow.statuses.mute(principal.user_id, user_id, self._clock.now())
            else:
                await uow.statuses.unmute(principal.user_id, user_id)
            await uow.commit()

    async def muted(self, principal: Principal) -> list[str]:
        async with self._uow(read_only=True) as uow:
            return await uow.statuses.muted(principal.user_id)

    async def purge(self) -> dict[str, int]:
        """Delete expired statuses (their media is freed by the media purge after)."""
        now = self._clock.now()
        async with self._uow(housekeeping=True) as uow:
            expired = await uow.statuses.expired(now)
            await uow.statuses.delete(expired, now)
            await uow.commit()
        return {"statuses": len(expired)}

    async def _visible(self, uow: UnitOfWork, principal: Principal, status_id: str) -> Status:
        status = (
            await uow.statuses.get(status_id, self._clock.now()) if is_valid_id(status_id) else None
        )
        if status is None:
            raise status_not_found()
        if status.author_id != principal.user_id:
            seen = await seen_by(uow, principal.user_id, [status.author_id])
            if not seen[status.author_id].statuses:
                raise status_not_found()
        return status

    async def _check_media(self, uow: UnitOfWork, principal: Principal, attachment_id: str) -> None:
        found = await uow.media.get_many([attachment_id]) if is_valid_id(attachment_id) else {}
        attachment = found.get(attachment_id)
        if attachment is None or attachment.uploader_id != principal.user_id:
            raise NotFound("attachment_not_found", "No such attachment.")
        if not attachment.mime_type.startswith(STATUS_MEDIA_TYPES):
            raise InvalidInput(
                "unsupported_status_media",
                f"A status shows an image or a video; this file is {attachment.mime_type}.",
            )
