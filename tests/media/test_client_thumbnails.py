"""Thumbnails the uploading client made (video posters): checked, stored, carried by messages.

The server makes thumbnails of the images it can decode; for anything else (a
video) the sending client draws one, as WhatsApp's apps do and as end-to-end
encryption will need, and sends it with ``POST /v1/uploads`` (docs/protocol.md).
"""

from __future__ import annotations

import base64
import io
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from tests.media.conftest import (
    Connect,
    Register,
    RowCounts,
    StoredObjects,
    error_code,
    png,
    sha256,
)
from tests.media.test_access import next_text, send
from tests.media.test_uploads import patch
from tests.support import bearer, online

# An MP4 header is enough for the server's sniffing (video/mp4); it cannot thumbnail it.
CLIP = b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom" + bytes(4096)


@pytest.fixture
def blob_store() -> str:
    """The thumbnail never reaches the blob store: one store is enough here."""
    return "filesystem"


def poster(width: int = 320, height: int = 180, quality: int = 70, noise: bool = False) -> bytes:
    image = Image.new("RGB", (width, height), (20, 90, 200))
    if noise:  # incompressible: a large file for its size
        rng = random.Random(7)
        image.putdata([(rng.randrange(256), rng.randrange(256), rng.randrange(256))
                       for _ in range(width * height)])  # fmt: skip
    out = io.BytesIO()
    image.save(out, "JPEG", quality=quality)
    return out.getvalue()


async def start(
    client: httpx.AsyncClient, session: dict[str, Any], body: bytes, thumbnail: str
) -> httpx.Response:
    return await client.post(
        "/v1/uploads",
        json={
            "size": len(body),
            "sha256": sha256(body),
            "fileName": "clip.mp4",
            "thumbnail": thumbnail,
        },
        headers=bearer(session),
    )


async def upload_video(
    client: httpx.AsyncClient, session: dict[str, Any], jpeg: bytes, body: bytes = CLIP
) -> httpx.Response:
    """Start with the thumbnail, send the file in one part: the last PATCH's answer."""
    started = await start(client, session, body, base64.b64encode(jpeg).decode())
    assert started.status_code == 201, started.text
    return await patch(client, session, started.json()["uploadId"], 0, body)


async def test_a_video_keeps_the_poster_its_client_made_and_the_recipient_gets_it(
    client: httpx.AsyncClient, user: Register, connect: Connect
) -> None:
    alice, bob = await user(), await user()
    jpeg = poster()
    done = await upload_video(client, alice, jpeg)
    assert done.status_code == 200, done.text
    meta = done.json()["attachment"]
    assert meta["mimeType"] == "video/mp4"
    assert base64.b64decode(meta["thumbnail"]) == jpeg
    assert meta["width"] is None  # the server read nothing of the video itself

    a = await online(connect, alice)
    b = await online(connect, bob)
    chat_id = (await a.call("createChat", {"participants": [bob["user_id"]]}))["chatId"]
    answer = await send(a, chat_id, [meta["attachmentId"]], "a clip")
    assert answer["ok"], answer
    message = await next_text(b)
    [carried] = message["attachments"]
    assert carried["attachmentId"] == meta["attachmentId"]
    assert carried["mimeType"] == "video/mp4"
    assert base64.b64decode(carried["thumbnail"]) == jpeg


@pytest.mark.parametrize("media_settings", [{"media_client_thumbnail_max_bytes": 4096}])
async def test_a_thumbnail_over_the_limit_is_refused_and_nothing_is_kept(
    client: httpx.AsyncClient,
    user: Register,
    row_counts: RowCounts,
    staged: Callable[[], list[Path]],
) -> None:
    alice = await user()
    big = poster(64, 64, quality=95, noise=True)
    assert len(big) > 4096
    refused = await start(client, alice, CLIP, base64.b64encode(big).decode())
    assert refused.status_code == 413, refused.text
    assert error_code(refused) == "thumbnail_too_large"
    assert "4096 bytes" in refused.json()["error"]["message"]
    assert await row_counts() == {"attachments": 0, "blobs": 0, "uploads": 0}
    assert staged() == []
    # Within the limit it goes through.
    small = poster(160, 90, quality=60)
    assert len(small) <= 4096
    assert (await upload_video(client, alice, small)).status_code == 200


async def test_the_default_limit_is_16_kib(client: httpx.AsyncClient, user: Register) -> None:
    alice = await user()
    big = poster(160, 120, quality=90, noise=True)  # within the JSON body limit
    assert len(big) > 16 * 1024
    refused = await start(client, alice, CLIP, base64.b64encode(big).decode())
    assert refused.status_code == 413
    assert error_code(refused) == "thumbnail_too_large"


@pytest.mark.parametrize(
    "thumbnail",
    [
        pytest.param(base64.b64encode(png(64, 36)).decode(), id="png"),
        pytest.param(base64.b64encode(b"just some text").decode(), id="text"),
        pytest.param(base64.b64encode(poster()[:300]).decode(), id="cut-jpeg"),
        pytest.param(base64.b64encode(poster(2000, 10, quality=10)).decode(), id="too-wide"),
        pytest.param("not base64 at all!", id="not-base64"),
        pytest.param("\u00f8\u00d8\u00d7", id="not-ascii"),  # schemathesis found a 500 here
        pytest.param("", id="empty"),
    ],
)
async def test_a_thumbnail_that_is_not_a_jpeg_is_refused(
    client: httpx.AsyncClient, user: Register, row_counts: RowCounts, thumbnail: str
) -> None:
    alice = await user()
    refused = await start(client, alice, CLIP, thumbnail)
    assert refused.status_code == 400, refused.text
    assert error_code(refused) == "invalid_thumbnail"
    assert await row_counts() == {"attachments": 0, "blobs": 0, "uploads": 0}


async def test_an_image_gets_the_servers_thumbnail_and_a_clients_is_refused(
    client: httpx.AsyncClient,
    user: Register,
    stored_objects: StoredObjects,
    staged: Callable[[], list[Path]],
) -> None:
    alice = await user()
    photo = png(300, 200)
    last = await upload_video(client, alice, poster(), body=photo)
    assert last.status_code == 400, last.text
    assert error_code(last) == "thumbnail_not_accepted"
    assert "image/png" in last.json()["error"]["message"]
    assert await stored_objects() == []
    assert staged() == []
