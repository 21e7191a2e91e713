"""Type sniffing (by content, never by the client's word), image thumbnails, and the check of
thumbnails clients make themselves (video posters)."""

from __future__ import annotations

import io
from pathlib import Path

import filetype
from PIL import Image, ImageOps, UnidentifiedImageError

from pigeon.services.media import Inspection

SNIFF_BYTES = 8192
THUMBNAIL_PIXELS = 96
# Decompression bombs: refuse to decode images with more pixels than this.
MAX_IMAGE_PIXELS = 64_000_000
# A client's thumbnail is a small poster (the web app makes at most 320 px a side).
CLIENT_THUMBNAIL_MAX_SIDE = 1024


def sniff(head: bytes) -> str:
    """The content's type from its first bytes; UTF-8 text is ``text/plain``."""
    kind = filetype.guess(head)
    if kind is not None:
        return str(kind.mime)
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        # A multi-byte character cut at the end of the sniffed window is still text.
        if exc.start < len(head) - 3 or b"\x00" in head:
            return "application/octet-stream"
    if b"\x00" in head:
        return "application/octet-stream"
    return "text/plain"


def inspect_file(path: Path) -> Inspection:
    """Sniff ``path``; for images also read the size and make a small JPEG thumbnail.

    CPU-bound: call it in a worker thread.
    """
    with path.open("rb") as handle:
        mime_type = sniff(handle.read(SNIFF_BYTES))
    if not mime_type.startswith("image/"):
        return Inspection(mime_type)
    Image.MAX_IMAGE_PIXELS = MAX_IMAGE_PIXELS
    try:
        with Image.open(path) as source:
            image: Image.Image = ImageOps.exif_transpose(source)
            # The size as displayed: a portrait photo may be stored as landscape
            # pixels plus an EXIF orientation, and the thumbnail is upright too.
            width, height = image.size
            image.thumbnail((THUMBNAIL_PIXELS, THUMBNAIL_PIXELS))
            if image.mode not in ("RGB", "L"):
                image = image.convert("RGB")
            out = io.BytesIO()
            image.save(out, "JPEG", quality=60, optimize=True)
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError, ValueError):
        return Inspection(mime_type)
    return Inspection(mime_type, width, height, out.getvalue())


def is_jpeg_thumbnail(data: bytes) -> bool:
    """Whether ``data`` decodes as a JPEG of at most ``CLIENT_THUMBNAIL_MAX_SIDE`` a side.

    The whole image is decoded (a valid header on garbage is refused too); the size
    is read from the header first, so a tiny file declaring a huge image is refused
    before any pixel is decoded.
    """
    try:
        with Image.open(io.BytesIO(data), formats=["JPEG"]) as image:
            if max(image.size) > CLIENT_THUMBNAIL_MAX_SIDE or min(image.size) < 1:
                return False
            image.load()
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError, ValueError):
        return False
    return True
