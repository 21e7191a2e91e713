"""Attachments: uploaded files, stored once per content and readable only by who may."""

from __future__ import annotations

import base64
import fnmatch
from dataclasses import dataclass
from datetime import datetime
from typing import Any


@dataclass(slots=True)
class Attachment:
    """One upload. Many attachments may share one blob; each has its own random id."""

    id: str
    uploader_id: str | None  # None once the uploader's account was deleted
    blob_hash: str
    size: int
    mime_type: str
    file_name: str
    created_at: datetime
    expires_at: datetime | None = None  # set while no message carries it
    width: int | None = None
    height: int | None = None
    thumbnail: bytes | None = None  # a small JPEG, for images

    def metadata(self) -> dict[str, Any]:
        """What a message carries about the attachment (no blob hash: it is not a capability)."""
        data: dict[str, Any] = {
            "attachmentId": self.id,
            "mimeType": self.mime_type,
            "size": self.size,
            "fileName": self.file_name,
        }
        if self.width is not None and self.height is not None:
            data["width"], data["height"] = self.width, self.height
        if self.thumbnail is not None:
            data["thumbnail"] = base64.b64encode(self.thumbnail).decode()
        return data


@dataclass(slots=True)
class Upload:
    """A resumable upload in progress: bytes arrive in parts until ``offset == size``."""

    id: str
    uploader_id: str
    size: int
    sha256: str
    file_name: str
    offset: int
    created_at: datetime
    expires_at: datetime


# Types a client may show inline (with a thumbnail, a player); every other file
# is a document, kept and offered as a download whatever its type.
MEDIA_PREFIXES = ("image/", "video/", "audio/")
DOCUMENT_TYPE = "application/octet-stream"


def is_media(mime_type: str) -> bool:
    """Whether a sniffed type is an image, a video or audio (anything else is a document)."""
    return mime_type.startswith(MEDIA_PREFIXES)


def served_type(mime_type: str) -> str:
    """The Content-Type a download gets: media as sniffed, documents as opaque bytes.

    A document is never given a type a browser would render (an HTML page named
    .jpg sniffs as text), so whatever it holds arrives as a download.
    """
    return mime_type if is_media(mime_type) else DOCUMENT_TYPE


def type_allowed(mime_type: str, patterns: list[str]) -> bool:
    """Whether a sniffed type matches one of the operator's patterns (``image/*``)."""
    return any(fnmatch.fnmatchcase(mime_type, pattern) for pattern in patterns)


def safe_file_name(name: str) -> str:
    """A display name without path parts or control characters, at most 255 characters."""
    name = name.replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(ch for ch in name if ch.isprintable())
    return name.strip()[:255] or "file"
