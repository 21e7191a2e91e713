"""Downloading: byte ranges (how players seek) and image thumbnails, on both blob stores."""

from __future__ import annotations

import base64
import io
from typing import Any

import httpx
import pytest
from PIL import Image

from tests.media.conftest import Register, download, error_code, pdf, png, upload, uploaded

SIZE = 1000


@pytest.fixture
async def file_1000(client: httpx.AsyncClient, user: Register) -> tuple[dict[str, Any], bytes, str]:
    """Alice's session, a 1000-byte PDF she uploaded, and its attachment id."""
    alice = await user()
    body = pdf("r" * (SIZE - len(pdf(""))))
    assert len(body) == SIZE
    meta = await uploaded(client, alice, body, name="range.pdf")
    return alice, body, meta["attachmentId"]


@pytest.mark.parametrize(
    ("range_", "start", "end"),
    [
        ("bytes=0-99", 0, 99),
        ("bytes=100-", 100, 999),
        ("bytes=-50", 950, 999),
        ("bytes=990-5000", 990, 999),  # the end is clamped to the file
        ("bytes=500-500", 500, 500),
        ("bytes=999-", 999, 999),
    ],
)
async def test_ranges(
    range_: str,
    start: int,
    end: int,
    client: httpx.AsyncClient,
    file_1000: tuple[dict[str, Any], bytes, str],
) -> None:
    alice, body, attachment_id = file_1000
    got = await download(client, alice, attachment_id, range_)
    assert got.status_code == 206
    assert got.headers["content-range"] == f"bytes {start}-{end}/{SIZE}"
    assert got.headers["content-length"] == str(end - start + 1)
    assert got.headers["accept-ranges"] == "bytes"
    assert got.headers["content-type"] == "application/octet-stream"  # a document
    assert got.content == body[start : end + 1]


@pytest.mark.parametrize("range_", ["bytes=0-", "bytes=-1000", "bytes=-5000", "bytes=0-999"])
async def test_a_range_covering_everything_is_the_whole_file(
    range_: str, client: httpx.AsyncClient, file_1000: tuple[dict[str, Any], bytes, str]
) -> None:
    alice, body, attachment_id = file_1000
    got = await download(client, alice, attachment_id, range_)
    assert got.status_code == 200
    assert "content-range" not in got.headers
    assert got.content == body


@pytest.mark.parametrize(
    "range_", ["bytes=1000-", "bytes=5000-6000", "bytes=-0", "bytes=50-10", "bytes=-", "items=0-9"]
)
async def test_unsatisfiable_ranges(
    range_: str, client: httpx.AsyncClient, file_1000: tuple[dict[str, Any], bytes, str]
) -> None:
    alice, _, attachment_id = file_1000
    got = await download(client, alice, attachment_id, range_)
    assert got.status_code == 416
    assert got.headers["content-range"] == f"bytes */{SIZE}"
    assert error_code(got) == "range_not_satisfiable"


async def test_range_requests_on_a_large_file(client: httpx.AsyncClient, user: Register) -> None:
    """Larger than one read chunk (64 KiB), so ranges cross chunk borders."""
    alice = await user()
    body = pdf("".join(chr(65 + i % 26) for i in range(300_000)))
    meta = await uploaded(client, alice, body)
    size = len(body)
    whole = await download(client, alice, meta["attachmentId"])
    assert whole.content == body
    for start, end in ((65_530, 65_545), (1, 200_000), (size - 70_000, size - 1)):
        got = await download(client, alice, meta["attachmentId"], f"bytes={start}-{end}")
        assert got.status_code == 206
        assert got.content == body[start : end + 1]


# -- thumbnails -------------------------------------------------------------------


def thumbnail_of(meta: dict[str, Any]) -> Image.Image:
    image = Image.open(io.BytesIO(base64.b64decode(meta["thumbnail"])))
    assert image.format == "JPEG"
    return image


@pytest.mark.parametrize(
    ("width", "height", "thumb"),
    [(640, 480, (96, 72)), (200, 800, (24, 96)), (96, 96, (96, 96)), (40, 30, (40, 30))],
)
async def test_images_get_a_thumbnail_and_their_size(
    width: int,
    height: int,
    thumb: tuple[int, int],
    client: httpx.AsyncClient,
    user: Register,
) -> None:
    alice = await user()
    meta = await uploaded(client, alice, png(width, height, (250, 200, 0)), name="pic.png")
    assert (meta["width"], meta["height"]) == (width, height)
    image = thumbnail_of(meta)
    assert image.size == thumb  # at most 96 px, aspect kept, never enlarged
    red, green, blue = image.convert("RGB").getpixel((image.width // 2, image.height // 2))
    assert (red > 200, green > 150, blue < 60) == (True, True, True)  # it shows the picture


async def test_a_rotated_photo_reports_its_upright_size(
    client: httpx.AsyncClient, user: Register
) -> None:
    """Phones store portrait photos as landscape pixels plus an EXIF orientation."""
    alice = await user()
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    out = io.BytesIO()
    Image.new("RGB", (400, 200), (0, 0, 255)).save(out, "JPEG", exif=exif)
    meta = await uploaded(client, alice, out.getvalue(), name="portrait.jpg")
    assert meta["mimeType"] == "image/jpeg"
    assert (meta["width"], meta["height"]) == (200, 400)
    assert thumbnail_of(meta).size == (48, 96)


async def test_other_files_have_no_thumbnail(client: httpx.AsyncClient, user: Register) -> None:
    alice = await user()
    meta = await uploaded(client, alice, pdf(), name="doc.pdf")
    assert meta.get("thumbnail") is None
    assert meta.get("width") is None
    assert meta.get("height") is None


async def test_a_broken_image_is_kept_without_a_thumbnail(
    client: httpx.AsyncClient, user: Register
) -> None:
    alice = await user()
    body = png(50, 50)[:60]  # the header survives, the pixels do not
    response = await upload(client, alice, body, name="broken.png")
    assert response.status_code == 201, response.text
    meta = response.json()
    assert meta["mimeType"] == "image/png"
    assert meta.get("thumbnail") is None
    assert (await download(client, alice, meta["attachmentId"])).content == body
