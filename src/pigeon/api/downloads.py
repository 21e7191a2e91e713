"""How a stored file goes out over HTTP: attachments, profile photos and status media alike."""

from __future__ import annotations

from collections.abc import Mapping

from fastapi.responses import StreamingResponse

from pigeon.services.media import Download

# Never sniffed into another type by a browser; never kept by a shared cache.
PRIVATE_FILE_HEADERS = {"X-Content-Type-Options": "nosniff", "Cache-Control": "private, max-age=0"}


def ranged_response(
    download: Download, media_type: str, headers: Mapping[str, str] | None = None
) -> StreamingResponse:
    """The whole file (200), or the part a ``Range`` asked for (206 with ``Content-Range``)."""
    out = {
        **PRIVATE_FILE_HEADERS,
        **(headers or {}),
        "Content-Length": str(download.end - download.start + 1),
        "Accept-Ranges": "bytes",
    }
    status = 200
    if download.partial:
        status = 206
        out["Content-Range"] = f"bytes {download.start}-{download.end}/{download.attachment.size}"
    return StreamingResponse(
        download.chunks, status_code=status, media_type=media_type, headers=out
    )
