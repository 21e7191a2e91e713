"""Uploading, sharing and downloading attachments.

Content is stored once per SHA-256 in the blob store; every upload gets its
own random attachment id, and only the uploader and members of a chat the
attachment was sent to can read it. The hash alone grants nothing.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import os
import re
import time
from collections.abc import AsyncIterable, AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import structlog

from pigeon.domain.errors import Conflict, Forbidden, InvalidInput, NotFound, PigeonError
from pigeon.domain.ids import new_id
from pigeon.domain.media import Attachment, Upload, safe_file_name, type_allowed
from pigeon.services.accounts import Principal
from pigeon.services.ports import BlobStore, Clock, UnitOfWorkFactory

log = structlog.get_logger(__name__)

SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")


@dataclass(slots=True, frozen=True)
class Inspection:
    mime_type: str
    width: int | None = None
    height: int | None = None
    thumbnail: bytes | None = None


@dataclass(slots=True, frozen=True)
class MediaPolicy:
    max_upload_bytes: int = 100 * 1024 * 1024
    max_inline_bytes: int = 1024 * 1024
    allowed_types: list[str] = field(default_factory=lambda: ["*"])  # every file, by default
    unattached_ttl: timedelta = timedelta(days=1)
    upload_ttl: timedelta = timedelta(days=1)
    blob_grace: timedelta = timedelta(hours=1)
    link_ttl: timedelta = timedelta(minutes=5)
    # A poster the uploading client made (video): the server cannot make one itself.
    client_thumbnail_max_bytes: int = 16 * 1024


class TooLarge(PigeonError):
    kind = "too_large"


@dataclass(slots=True, frozen=True)
class Download:
    attachment: Attachment
    start: int
    end: int  # inclusive
    chunks: AsyncIterator[bytes]

    @property
    def partial(self) -> bool:
        return self.start > 0 or self.end < self.attachment.size - 1


class MediaService:
    def __init__(
        self,
        uow: UnitOfWorkFactory,
        blobs: BlobStore,
        clock: Clock,
        policy: MediaPolicy,
        staging_dir: Path,
        inspect: Callable[[Path], Inspection],
        secret_key: bytes,
        check_thumbnail: Callable[[bytes], bool] | None = None,
    ) -> None:
        self._uow = uow
        self._blobs = blobs
        self._clock = clock
        self._policy = policy
        self._staging = staging_dir
        self._inspect = inspect
        self._key = secret_key
        # Whether bytes are an acceptable client thumbnail (a JPEG); None: none is.
        self._check_thumbnail = check_thumbnail
        staging_dir.mkdir(parents=True, exist_ok=True)

    # -- uploading ---------------------------------------------------------------

    async def upload(
        self,
        principal: Principal,
        chunks: AsyncIterable[bytes],
        sha256: str,
        file_name: str,
        declared_size: int | None = None,
        limit: int | None = None,
    ) -> Attachment:
        """Spool the bytes, check them against the declared hash and size, store them."""
        sha256 = _check_hash(sha256)
        limit = limit or self._policy.max_upload_bytes
        if declared_size is not None and declared_size > limit:
            raise _too_large(limit)
        path = self._staging / f"{new_id()}.part"
        try:
            digest, size = await _spool(chunks, path, limit)
            if declared_size is not None and size != declared_size:
                raise InvalidInput(
                    "size_mismatch", "The body's size differs from the declared size."
                )
            if size == 0:  # nothing to show, and an empty range cannot be served
                raise InvalidInput("invalid_size", "An upload has at least one byte.")
            if digest != sha256:
                raise InvalidInput(
                    "hash_mismatch", "The body's SHA-256 differs from the declared hash."
                )
            return await self._store(principal, path, sha256, size, file_name)
        finally:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()

    async def upload_inline(
        self, principal: Principal, body_base64: str, sha256: str, file_name: str
    ) -> Attachment:
        """A small file sent inside a WebSocket frame (``createAttachment``)."""
        limit = self._policy.max_inline_bytes
        if len(body_base64) > (limit + 2) // 3 * 4 + 4:
            raise _too_large(limit)
        try:
            body = base64.b64decode(body_base64, validate=True)
        except ValueError as exc:  # binascii.Error, or a character outside ASCII
            raise InvalidInput("invalid_body", "The body is not valid base64.") from exc

        async def one_chunk() -> AsyncIterator[bytes]:
            yield body

        return await self.upload(principal, one_chunk(), sha256, file_name, len(body), limit)

    async def _store(
        self,
        principal: Principal,
        path: Path,
        sha256: str,
        size: int,
        file_name: str,
        client_thumbnail: bytes | None = None,
    ) -> Attachment:
        found = await asyncio.to_thread(self._inspect, path)
        if not type_allowed(found.mime_type, self._policy.allowed_types):
            allowed = ", ".join(self._policy.allowed_types)
            raise InvalidInput(
                "unsupported_media_type",
                f"Files of type {found.mime_type} are not accepted. Accepted types: {allowed} "
                "(the server's PIGEON_MEDIA_ALLOWED_TYPES setting).",
            )
        thumbnail = found.thumbnail
        if client_thumbnail is not None:
            if found.mime_type.startswith("image/"):
                raise InvalidInput(
                    "thumbnail_not_accepted",
                    f"This file is {found.mime_type}: the server makes the thumbnails of images "
                    "itself. Send a thumbnail only for other types (video).",
                )
            thumbnail = client_thumbnail
        now = self._clock.now()
        # Claim the blob row first (fresh last_used_at keeps the purge away for
        # the grace period), then make sure the object is there: a row that is
        # new may have just been purged along with its object, so store again.
        async with self._uow() as uow:
            new_blob = await uow.media.use_blob(sha256, size, now)
            await uow.commit()
        if new_blob or not await self._blobs.exists(sha256):
            await self._blobs.put(sha256, path, found.mime_type)
        attachment = Attachment(
            id=new_id(),
            uploader_id=principal.user_id,
            blob_hash=sha256,
            size=size,
            mime_type=found.mime_type,
            file_name=safe_file_name(file_name),
            created_at=now,
            expires_at=now + self._policy.unattached_ttl,
            width=found.width,
            height=found.height,
            thumbnail=thumbnail,
        )
        async with self._uow() as uow:
            await uow.media.add(attachment)
            await uow.commit()
        return attachment

    # -- resumable uploads ---------------------------------------------------------

    async def start_upload(
        self,
        principal: Principal,
        size: int,
        sha256: str,
        file_name: str,
        thumbnail_base64: str | None = None,
    ) -> Upload:
        """Begin a resumable upload; ``thumbnail_base64`` is an optional poster the client
        made (a JPEG, base64), kept with the upload until its last part arrives."""
        sha256 = _check_hash(sha256)
        if size <= 0:
            raise InvalidInput("invalid_size", "An upload has at least one byte.")
        if size > self._policy.max_upload_bytes:
            raise _too_large(self._policy.max_upload_bytes)
        thumbnail = None
        if thumbnail_base64 is not None:
            thumbnail = await self._client_thumbnail(thumbnail_base64)
        now = self._clock.now()
        upload = Upload(
            id=new_id(),
            uploader_id=principal.user_id,
            size=size,
            sha256=sha256,
            file_name=safe_file_name(file_name),
            offset=0,
            created_at=now,
            expires_at=now + self._policy.upload_ttl,
        )
        self._part(upload.id).touch()
        if thumbnail is not None:
            await asyncio.to_thread(self._thumbnail_part(upload.id).write_bytes, thumbnail)
        async with self._uow() as uow:
            await uow.media.add_upload(upload)
            await uow.commit()
        return upload

    async def _client_thumbnail(self, body_base64: str) -> bytes:
        """The decoded thumbnail, if it is a JPEG within the size limit; else a clear error."""
        limit = self._policy.client_thumbnail_max_bytes
        if len(body_base64) > (limit + 2) // 3 * 4 + 4:
            raise _thumbnail_too_large(limit)
        try:
            body = base64.b64decode(body_base64, validate=True)
        except ValueError as exc:  # binascii.Error, or a character outside ASCII
            raise _invalid_thumbnail("it is not valid base64") from exc
        if len(body) > limit:
            raise _thumbnail_too_large(limit)
        check = self._check_thumbnail
        if check is None or not body or not await asyncio.to_thread(check, body):
            raise _invalid_thumbnail("it does not decode as a JPEG of at most 1024x1024 pixels")
        return body

    async def upload_status(self, principal: Principal, upload_id: str) -> Upload:
        async with self._uow(read_only=True) as uow:
            upload = await uow.media.get_upload(upload_id)
        if upload is None or upload.uploader_id != principal.user_id:
            raise NotFound("upload_not_found", "No such upload.")
        return upload

    async def append(
        self, principal: Principal, upload_id: str, offset: int, chunks: AsyncIterable[bytes]
    ) -> tuple[Upload, Attachment | None]:
        """Write the next part at ``offset``; the last part turns the upload into an attachment."""
        upload = await self.upload_status(principal, upload_id)
        if offset != upload.offset:
            raise Conflict("offset_mismatch", f"The upload is at offset {upload.offset}.")
        part = self._part(upload_id)
        written = await _append(chunks, part, offset, upload.size - offset)
        async with self._uow() as uow:
            if not await uow.media.advance_upload(upload_id, offset, offset + written):
                raise Conflict("offset_mismatch", "Another part was written at the same time.")
            await uow.commit()
        upload.offset = offset + written
        if upload.offset < upload.size:
            return upload, None
        try:
            digest = await asyncio.to_thread(_sha256_of, part)
            if digest != upload.sha256:
                raise InvalidInput(
                    "hash_mismatch", "The upload's SHA-256 differs from the declared hash."
                )
            thumbnail = await asyncio.to_thread(_read_if_there, self._thumbnail_part(upload_id))
            attachment = await self._store(
                principal, part, digest, upload.size, upload.file_name, thumbnail
            )
        finally:
            async with self._uow() as uow:
                await uow.media.delete_upload(upload_id)
                await uow.commit()
            for path in (part, self._thumbnail_part(upload_id)):
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
        return upload, attachment

    def _part(self, upload_id: str) -> Path:
        return self._staging / f"upload-{upload_id}.part"

    def _thumbnail_part(self, upload_id: str) -> Path:
        """The client's thumbnail of an upload in progress (``*.part``: swept like parts)."""
        return self._staging / f"upload-{upload_id}-thumbnail.part"

    # -- reading -----------------------------------------------------------------

    async def get_readable(self, principal: Principal, attachment_id: str) -> Attachment:
        """The attachment, if the caller may read it; the same 404 otherwise."""
        async with self._uow(read_only=True) as uow:
            readable = await uow.media.readable([attachment_id], principal.user_id)
            found = await uow.media.get_many(list(readable))
        attachment = found.get(attachment_id)
        if attachment is None:
            raise _not_found()
        return attachment

    async def download(
        self, principal: Principal, attachment_id: str, byte_range: str | None
    ) -> Download:
        return self._open(await self.get_readable(principal, attachment_id), byte_range)

    def _open(self, attachment: Attachment, byte_range: str | None) -> Download:
        start, end = parse_range(byte_range, attachment.size)
        return Download(attachment, start, end, self._blobs.read(attachment.blob_hash, start, end))

    # -- signed links ----------------------------------------------------------------

    async def link(self, principal: Principal, attachment_id: str) -> tuple[str, datetime]:
        """A URL query that lets its holder download for a few minutes, no token needed."""
        await self.get_readable(principal, attachment_id)
        expires = int(time.time() + self._policy.link_ttl.total_seconds())
        signature = self._sign(attachment_id, expires)
        when = datetime.fromtimestamp(expires, tz=self._clock.now().tzinfo)
        return f"expires={expires}&signature={signature}", when

    async def download_signed(
        self, attachment_id: str, expires: int, signature: str, byte_range: str | None
    ) -> Download:
        if not hmac.compare_digest(signature, self._sign(attachment_id, expires)):
            raise _not_found()
        if time.time() > expires:
            raise Forbidden("link_expired", "The link has expired.")
        async with self._uow(read_only=True) as uow:
            attachment = (await uow.media.get_many([attachment_id])).get(attachment_id)
        if attachment is None:
            raise _not_found()
        return self._open(attachment, byte_range)

    def _sign(self, attachment_id: str, expires: int) -> str:
        message = f"attachment:{attachment_id}:{expires}".encode()
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()

    # -- retention ------------------------------------------------------------------

    async def purge(self) -> dict[str, int]:
        """Delete attachments no message carries, stale uploads, and blobs nothing uses."""
        now = self._clock.now()
        async with self._uow(housekeeping=True) as uow:
            uploads, hashes = await uow.media.purge(now, now - self._policy.blob_grace)
            await uow.commit()
        for upload_id in uploads:
            for path in (self._part(upload_id), self._thumbnail_part(upload_id)):
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
        deleted = 0
        for sha256 in hashes:
            try:
                await self._blobs.delete(sha256)
                deleted += 1
            except Exception:  # one failure must not keep the others forever
                log.exception("media.blob_delete_failed", blob=sha256)
        leftovers = await asyncio.to_thread(self._sweep_staging, time.time())
        return {"uploads": len(uploads), "blobs": deleted, "staging_files": leftovers}

    def _sweep_staging(self, now: float) -> int:
        """Remove staging files a crash left behind (older than any upload may live)."""
        cutoff = now - self._policy.upload_ttl.total_seconds()
        removed = 0
        for path in self._staging.glob("*.part"):
            with contextlib.suppress(FileNotFoundError):
                if path.stat().st_mtime < cutoff:
                    path.unlink()
                    removed += 1
        return removed


def parse_range(header: str | None, size: int) -> tuple[int, int]:
    """One ``bytes=`` range (``a-b``, ``a-``, ``-n``) as inclusive offsets (default: all)."""
    if not header:
        return 0, max(size - 1, 0)
    match = re.fullmatch(r"bytes=(\d*)-(\d*)", header.strip())
    if match is None or match.group(1) == match.group(2) == "":
        raise RangeNotSatisfiable(size)
    first, last = match.group(1), match.group(2)
    if first == "":
        length = int(last)
        if length == 0:
            raise RangeNotSatisfiable(size)
        return max(size - length, 0), size - 1
    start = int(first)
    end = min(int(last), size - 1) if last else size - 1
    if start >= size or start > end:
        raise RangeNotSatisfiable(size)
    return start, end


class RangeNotSatisfiable(PigeonError):
    kind = "range_not_satisfiable"

    def __init__(self, size: int) -> None:
        super().__init__("range_not_satisfiable", "The requested range is outside the file.")
        self.size = size


def _check_hash(value: str) -> str:
    value = value.strip().lower()
    if not SHA256_HEX.match(value):
        raise InvalidInput("invalid_hash", "The hash must be a SHA-256 in hexadecimal.")
    return value


def _too_large(limit: int) -> TooLarge:
    return TooLarge("attachment_too_large", f"Attachments are at most {limit} bytes.")


def _thumbnail_too_large(limit: int) -> TooLarge:
    return TooLarge(
        "thumbnail_too_large",
        f"A client's thumbnail is at most {limit} bytes (PIGEON_MEDIA_CLIENT_THUMBNAIL_MAX_BYTES).",
    )


def _invalid_thumbnail(why: str) -> InvalidInput:
    return InvalidInput("invalid_thumbnail", f"The thumbnail is refused: {why}.")


def _read_if_there(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None


def _not_found() -> NotFound:
    return NotFound("attachment_not_found", "No such attachment.")


async def _spool(chunks: AsyncIterable[bytes], path: Path, limit: int) -> tuple[str, int]:
    """Write chunks to ``path`` while hashing them; stop as soon as ``limit`` is passed."""
    digest = hashlib.sha256()
    size = 0
    handle = await asyncio.to_thread(path.open, "wb")
    try:
        async for chunk in chunks:
            size += len(chunk)
            if size > limit:
                raise _too_large(limit)
            digest.update(chunk)
            await asyncio.to_thread(handle.write, chunk)
        await asyncio.to_thread(handle.flush)
        await asyncio.to_thread(os.fsync, handle.fileno())
    finally:
        handle.close()  # not in a thread: a cancelled await would leave it open
    return digest.hexdigest(), size


async def _append(chunks: AsyncIterable[bytes], path: Path, offset: int, room: int) -> int:
    handle = await asyncio.to_thread(path.open, "r+b")
    written = 0
    try:
        await asyncio.to_thread(handle.seek, offset)
        await asyncio.to_thread(handle.truncate)
        async for chunk in chunks:
            if written + len(chunk) > room:
                raise InvalidInput("upload_overflow", "The part goes past the declared size.")
            await asyncio.to_thread(handle.write, chunk)
            written += len(chunk)
        await asyncio.to_thread(handle.flush)
        await asyncio.to_thread(os.fsync, handle.fileno())
    finally:
        handle.close()  # not in a thread: a cancelled await would leave it open
    return written


def _sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1024 * 1024):
            digest.update(chunk)
    return digest.hexdigest()
