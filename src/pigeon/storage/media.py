"""Attachments, blobs and resumable uploads."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from pigeon.domain.media import Attachment, Upload
from pigeon.storage.schema import (
    attachment_links,
    attachments,
    blobs,
    chat_members,
    profile_photos,
    statuses,
    uploads,
)


def _attachment(m: Any) -> Attachment:
    return Attachment(
        id=m["id"],
        uploader_id=m["uploader_id"],
        blob_hash=m["blob_hash"],
        size=m["size"],
        mime_type=m["mime_type"],
        file_name=m["file_name"],
        created_at=m["created_at"],
        expires_at=m["expires_at"],
        width=m["width"],
        height=m["height"],
        thumbnail=m["thumbnail"],
    )


def _upload(m: Any) -> Upload:
    return Upload(
        id=m["id"],
        uploader_id=m["uploader_id"],
        size=m["size"],
        sha256=m["sha256"],
        file_name=m["file_name"],
        offset=m["offset"],
        created_at=m["created_at"],
        expires_at=m["expires_at"],
    )


class SqlMediaRepository:
    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn

    async def use_blob(self, sha256: str, size: int, now: datetime) -> bool:
        """Record (or refresh) a stored blob; True if it was new."""
        refreshed = await self._conn.execute(
            blobs.update().where(blobs.c.hash == sha256).values(last_used_at=now)
        )
        if refreshed.rowcount:
            return False
        try:
            # The same content may be uploaded by another request right now.
            async with self._conn.begin_nested():
                await self._conn.execute(
                    blobs.insert().values(hash=sha256, size=size, last_used_at=now)
                )
        except IntegrityError:
            await self._conn.execute(
                blobs.update().where(blobs.c.hash == sha256).values(last_used_at=now)
            )
            return False
        return True

    async def add(self, attachment: Attachment) -> None:
        await self._conn.execute(
            attachments.insert().values(
                id=attachment.id,
                uploader_id=attachment.uploader_id,
                blob_hash=attachment.blob_hash,
                size=attachment.size,
                mime_type=attachment.mime_type,
                file_name=attachment.file_name,
                width=attachment.width,
                height=attachment.height,
                thumbnail=attachment.thumbnail,
                created_at=attachment.created_at,
                expires_at=attachment.expires_at,
            )
        )

    async def get_many(self, attachment_ids: Sequence[str]) -> dict[str, Attachment]:
        if not attachment_ids:
            return {}
        query = sa.select(attachments).where(attachments.c.id.in_(list(attachment_ids)))
        return {row.id: _attachment(row._mapping) for row in await self._conn.execute(query)}

    async def readable(self, attachment_ids: Sequence[str], user_id: str) -> set[str]:
        """Those attachments ``user_id`` uploaded or can see in one of their chats."""
        if not attachment_ids:
            return set()
        ids = list(attachment_ids)
        own = sa.select(attachments.c.id).where(
            attachments.c.id.in_(ids), attachments.c.uploader_id == user_id
        )
        shared = (
            sa.select(attachment_links.c.attachment_id)
            .join(chat_members, chat_members.c.chat_id == attachment_links.c.chat_id)
            .where(attachment_links.c.attachment_id.in_(ids), chat_members.c.user_id == user_id)
        )
        return set((await self._conn.execute(sa.union(own, shared))).scalars())

    async def link(self, links: Sequence[tuple[str, str, str]]) -> None:
        """Record (attachment, message, chat) links; linked attachments no longer expire."""
        if not links:
            return
        await self._conn.execute(
            attachment_links.insert(),
            [{"attachment_id": a, "message_id": m, "chat_id": c} for a, m, c in links],
        )
        await self._conn.execute(
            attachments.update()
            .where(attachments.c.id.in_(sorted({a for a, _, _ in links})))
            .values(expires_at=None)
        )

    async def add_upload(self, upload: Upload) -> None:
        await self._conn.execute(
            uploads.insert().values(
                id=upload.id,
                uploader_id=upload.uploader_id,
                size=upload.size,
                sha256=upload.sha256,
                file_name=upload.file_name,
                offset=upload.offset,
                created_at=upload.created_at,
                expires_at=upload.expires_at,
            )
        )

    async def get_upload(self, upload_id: str) -> Upload | None:
        row = (
            await self._conn.execute(sa.select(uploads).where(uploads.c.id == upload_id))
        ).first()
        return _upload(row._mapping) if row else None

    async def advance_upload(self, upload_id: str, expected: int, offset: int) -> bool:
        """Move the offset from ``expected`` to ``offset``; False if another write came first."""
        result = await self._conn.execute(
            uploads.update()
            .where(uploads.c.id == upload_id, uploads.c.offset == expected)
            .values(offset=offset)
        )
        return bool(result.rowcount)

    async def delete_upload(self, upload_id: str) -> None:
        await self._conn.execute(uploads.delete().where(uploads.c.id == upload_id))

    async def purge(
        self, now: datetime, blob_grace_before: datetime
    ) -> tuple[list[str], list[str]]:
        """Delete unused attachments, expired uploads and orphan blob rows.

        An attachment is unused once no message carries it and it was carried
        before, or it expired unattached. Returns (expired upload ids, blob
        hashes whose objects the caller must now delete).
        """
        linked = sa.exists().where(attachment_links.c.attachment_id == attachments.c.id)
        photo = sa.exists().where(profile_photos.c.attachment_id == attachments.c.id)
        status = sa.exists().where(statuses.c.attachment_id == attachments.c.id)
        await self._conn.execute(
            attachments.delete().where(
                ~linked,
                ~photo,
                ~status,
                sa.or_(attachments.c.expires_at.is_(None), attachments.c.expires_at <= now),
            )
        )
        expired = await self._conn.execute(
            uploads.delete().where(uploads.c.expires_at <= now).returning(uploads.c.id)
        )
        upload_ids = list(expired.scalars())
        referenced = sa.exists().where(attachments.c.blob_hash == blobs.c.hash)
        orphans = await self._conn.execute(
            blobs.delete()
            .where(~referenced, blobs.c.last_used_at < blob_grace_before)
            .returning(blobs.c.hash)
        )
        return upload_ids, list(orphans.scalars())
