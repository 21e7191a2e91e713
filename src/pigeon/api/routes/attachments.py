"""Attachments over HTTP: streamed upload, resumable upload, ranged and signed download."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated
from urllib.parse import quote, unquote

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from pigeon.api.deps import ContainerDep, PrincipalDep
from pigeon.api.downloads import ranged_response
from pigeon.api.errors import error_responses
from pigeon.domain.media import Attachment, Upload, served_type
from pigeon.services.media import Download

router = APIRouter(tags=["attachments"])

BINARY_BODY = {
    "requestBody": {
        "required": True,
        "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
    }
}
Sha256Header = Annotated[
    str,
    Header(
        alias="X-Content-SHA256",
        min_length=1,
        max_length=128,
        description="SHA-256 of the whole file, in hexadecimal.",
    ),
]
FileNameHeader = Annotated[
    str, Header(alias="X-File-Name", max_length=1024, description="Percent-encoded file name.")
]


class AttachmentOut(BaseModel):
    attachmentId: str
    mimeType: str
    size: int
    fileName: str
    width: int | None = None
    height: int | None = None
    thumbnail: str | None = Field(None, description="A small JPEG, base64.")


class UploadStart(BaseModel):
    model_config = ConfigDict(extra="forbid")

    size: int = Field(ge=1, le=2**53)
    sha256: str = Field(min_length=64, max_length=64)
    fileName: str = Field("file", max_length=1024)
    thumbnail: str | None = Field(
        None,
        # The limit is a setting (PIGEON_MEDIA_CLIENT_THUMBNAIL_MAX_BYTES), checked by the
        # service with its own error code; this only keeps out what no setting would allow.
        max_length=4 * 1024 * 1024,
        description="A poster the client made for a file the server cannot thumbnail itself "
        "(video): a JPEG, base64, at most PIGEON_MEDIA_CLIENT_THUMBNAIL_MAX_BYTES (16 KiB) "
        "decoded. Messages then carry it as `thumbnail`, as for images.",
    )


class UploadOut(BaseModel):
    uploadId: str
    size: int
    offset: int
    expiresAt: datetime
    attachment: AttachmentOut | None = None


class LinkOut(BaseModel):
    url: str
    expiresAt: datetime


def attachment_out(attachment: Attachment) -> AttachmentOut:
    return AttachmentOut(**attachment.metadata())


def _upload_out(upload: Upload, attachment: Attachment | None = None) -> UploadOut:
    return UploadOut(
        uploadId=upload.id,
        size=upload.size,
        offset=upload.offset,
        expiresAt=upload.expires_at,
        attachment=attachment_out(attachment) if attachment else None,
    )


@router.post(
    "/v1/attachments",
    status_code=201,
    response_model=AttachmentOut,
    responses=error_responses(400, 401, 413, 422),
    openapi_extra=BINARY_BODY,
)
async def upload_attachment(
    request: Request,
    principal: PrincipalDep,
    container: ContainerDep,
    sha256: Sha256Header,
    file_name: FileNameHeader = "file",
) -> AttachmentOut:
    """Upload a file as the raw request body; it is streamed to disk, never held in memory."""
    length = request.headers.get("content-length", "")
    declared = None
    if length.isascii() and length.isdigit():  # int() fails on "²" and on 4,300+ digits
        declared = int(length) if len(length) <= 18 else 10**18
    attachment = await container.media.upload(
        principal, request.stream(), sha256, unquote(file_name), declared_size=declared
    )
    return attachment_out(attachment)


@router.get(
    "/v1/attachments/{attachment_id}",
    response_class=StreamingResponse,
    responses={
        200: {"content": {"application/octet-stream": {}}},
        206: {"content": {"application/octet-stream": {}}},
        **error_responses(401, 404, 416),
    },
)
async def download_attachment(
    attachment_id: str,
    principal: PrincipalDep,
    container: ContainerDep,
    range_header: Annotated[str | None, Header(alias="Range")] = None,
) -> StreamingResponse:
    """The file's bytes; ``Range: bytes=a-b`` gives a 206 (video and audio seek this way)."""
    return _stream(await container.media.download(principal, attachment_id, range_header))


@router.get(
    "/v1/attachments/{attachment_id}/link",
    response_model=LinkOut,
    responses=error_responses(401, 404),
)
async def attachment_link(
    attachment_id: str, principal: PrincipalDep, container: ContainerDep
) -> LinkOut:
    """A short-lived URL that downloads without a token (for <img> and <video> tags)."""
    query, expires_at = await container.media.link(principal, attachment_id)
    return LinkOut(url=f"/v1/media/{attachment_id}?{query}", expiresAt=expires_at)


@router.get(
    "/v1/media/{attachment_id}",
    response_class=StreamingResponse,
    responses={
        200: {"content": {"application/octet-stream": {}}},
        206: {"content": {"application/octet-stream": {}}},
        **error_responses(403, 404, 416, 422),
    },
)
async def signed_download(
    attachment_id: str,
    container: ContainerDep,
    expires: Annotated[int, Query(ge=0, le=2**53)],
    # A hex HMAC-SHA256; anything else (non-ASCII above all, which hmac cannot
    # compare) is refused before it reaches the comparison.
    signature: Annotated[str, Query(pattern=r"^[0-9a-f]{64}$")],
    range_header: Annotated[str | None, Header(alias="Range")] = None,
) -> StreamingResponse:
    """Download through a link from ``/v1/attachments/{id}/link`` while it is valid."""
    download = await container.media.download_signed(
        attachment_id, expires, signature, range_header
    )
    return _stream(download)


@router.post(
    "/v1/uploads",
    status_code=201,
    response_model=UploadOut,
    responses=error_responses(400, 401, 413, 422),
)
async def start_upload(
    body: UploadStart, principal: PrincipalDep, container: ContainerDep
) -> UploadOut:
    """Begin a resumable upload; send the bytes in parts with PATCH. ``thumbnail`` is an
    optional poster the client made (videos: the server makes thumbnails of images only)."""
    upload = await container.media.start_upload(
        principal, body.size, body.sha256, body.fileName, body.thumbnail
    )
    return _upload_out(upload)


@router.get(
    "/v1/uploads/{upload_id}", response_model=UploadOut, responses=error_responses(401, 404)
)
async def upload_status(
    upload_id: str, principal: PrincipalDep, container: ContainerDep
) -> UploadOut:
    """Where an interrupted upload stands: resume from ``offset``."""
    return _upload_out(await container.media.upload_status(principal, upload_id))


@router.patch(
    "/v1/uploads/{upload_id}",
    response_model=UploadOut,
    responses=error_responses(400, 401, 404, 409, 413, 422),
    openapi_extra=BINARY_BODY,
)
async def upload_part(
    upload_id: str,
    request: Request,
    principal: PrincipalDep,
    container: ContainerDep,
    offset: Annotated[int, Header(alias="Upload-Offset", ge=0, le=2**53)],
) -> UploadOut:
    """Append the body at ``Upload-Offset``; the last part completes the attachment."""
    upload, attachment = await container.media.append(
        principal, upload_id, offset, request.stream()
    )
    return _upload_out(upload, attachment)


def _stream(download: Download) -> StreamingResponse:
    attachment = download.attachment
    disposition = f"attachment; filename*=UTF-8''{quote(attachment.file_name)}"
    return ranged_response(
        download, served_type(attachment.mime_type), {"Content-Disposition": disposition}
    )
