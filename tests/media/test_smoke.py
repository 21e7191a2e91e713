from __future__ import annotations

import hashlib
import io

import httpx
from PIL import Image

from tests.support import Outbox, bearer, register


def png(width: int = 320, height: int = 200) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), (200, 30, 30)).save(out, "PNG")
    return out.getvalue()


async def test_upload_download_image(client: httpx.AsyncClient, outbox: Outbox) -> None:
    alice = await register(client, outbox, "+14155550100")
    body = png()
    response = await client.post(
        "/v1/attachments",
        content=body,
        headers={
            **bearer(alice),
            "X-Content-SHA256": hashlib.sha256(body).hexdigest(),
            "X-File-Name": "red.png",
            "Content-Type": "application/octet-stream",
        },
    )
    assert response.status_code == 201, response.text
    meta = response.json()
    assert meta["mimeType"] == "image/png"
    assert (meta["width"], meta["height"]) == (320, 200)
    assert meta["thumbnail"]
    got = await client.get(f"/v1/attachments/{meta['attachmentId']}", headers=bearer(alice))
    assert got.status_code == 200
    assert got.content == body
    part = await client.get(
        f"/v1/attachments/{meta['attachmentId']}", headers={**bearer(alice), "Range": "bytes=0-9"}
    )
    assert part.status_code == 206
    assert part.content == body[:10]
