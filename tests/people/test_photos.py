"""Profile photos through the media path: only images, server thumbnails, shown per privacy,
and the old photo's blob freed by the purge."""

from __future__ import annotations

import hashlib
import io
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from PIL import Image

from pigeon.bootstrap import Container
from pigeon.config import Settings
from tests.gateway.conftest import Register
from tests.support import FakeClock, bearer

ALICE, BOB, CAROL = "+14155550131", "+14155550132", "+14155550133"


@pytest.fixture
def settings(settings: Settings) -> Settings:
    # Unsent uploads expire after an hour here (24 by default): well within a token's life.
    return settings.model_copy(update={"media_unattached_ttl_hours": 1})


def png(color: tuple[int, int, int]) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (320, 200), color).save(out, "PNG")
    return out.getvalue()


async def upload(client: httpx.AsyncClient, session: dict[str, Any], body: bytes) -> str:
    response = await client.post(
        "/v1/attachments",
        content=body,
        headers={
            **bearer(session),
            "X-Content-SHA256": hashlib.sha256(body).hexdigest(),
            "X-File-Name": "me.png",
            "Content-Type": "application/octet-stream",
        },
    )
    assert response.status_code == 201, response.text
    return str(response.json()["attachmentId"])


async def set_photo(
    client: httpx.AsyncClient, session: dict[str, Any], attachment_id: str
) -> httpx.Response:
    return await client.put(
        "/v1/me/photo", json={"attachmentId": attachment_id}, headers=bearer(session)
    )


async def photo_of(
    client: httpx.AsyncClient, viewer: dict[str, Any], owner: dict[str, Any]
) -> dict[str, Any] | None:
    response = await client.get(f"/v1/users/{owner['user_id']}", headers=bearer(viewer))
    assert response.status_code == 200, response.text
    photo: dict[str, Any] | None = response.json()["photo"]
    return photo


async def test_a_photo_is_set_shown_and_replaced_and_the_old_blob_is_freed(
    user: Register, client: httpx.AsyncClient, container: Container, clock: FakeClock
) -> None:
    alice, bob = await user(ALICE), await user(BOB)
    red = png((200, 30, 30))
    first = await upload(client, alice, red)
    response = await set_photo(client, alice, first)
    assert response.status_code == 200, response.text
    photo = response.json()
    assert photo["url"] == f"/v1/users/{alice['user_id']}/photo"
    assert (photo["mimeType"], photo["width"], photo["height"]) == ("image/png", 320, 200)

    # Bob sees it in her profile and in a lookup, and can load it and its thumbnail.
    assert await photo_of(client, bob, alice) == photo
    found = await client.post("/v1/contacts/lookup", json={"phones": [ALICE]}, headers=bearer(bob))
    assert found.json()["matches"][0]["photo"] == photo
    full = await client.get(photo["url"], headers=bearer(bob))
    assert (full.status_code, full.content, full.headers["content-type"]) == (
        200,
        red,
        "image/png",
    )
    thumbnail = await client.get(photo["thumbnailUrl"], headers=bearer(bob))
    assert thumbnail.headers["content-type"] == "image/jpeg"
    assert max(Image.open(io.BytesIO(thumbnail.content)).size) <= 96

    # The photo outlives the unattached-upload TTL.
    clock.advance(hours=2)
    await container.media.purge()
    assert (await client.get(photo["url"], headers=bearer(bob))).content == red

    # Replaced: the new one shows, the old attachment and its blob are purged.
    blue = png((30, 30, 200))
    second = await upload(client, alice, blue)
    assert (await set_photo(client, alice, second)).status_code == 200
    assert (await client.get(photo["url"], headers=bearer(bob))).content == blue
    await container.media.purge()
    clock.advance(hours=1, minutes=1)  # the blob grace period
    await container.media.purge()
    old = await client.get(f"/v1/attachments/{first}", headers=bearer(alice))
    assert old.status_code == 404
    async with container.engine.connect() as conn:
        hashes = set((await conn.execute(sa.text("SELECT hash FROM blobs"))).scalars())
    assert hashlib.sha256(red).hexdigest() not in hashes
    assert hashlib.sha256(blue).hexdigest() in hashes

    # Removed: gone from the profile, and 404 like a user who never had one.
    assert (await client.delete("/v1/me/photo", headers=bearer(alice))).status_code == 204
    assert await photo_of(client, bob, alice) is None
    gone = await client.get(photo["url"], headers=bearer(bob))
    assert (gone.status_code, gone.json()["error"]["code"]) == (404, "photo_not_found")


async def test_only_own_images_become_photos(user: Register, client: httpx.AsyncClient) -> None:
    alice, bob = await user(ALICE), await user(BOB)
    text = b"just some words, not a picture\n"
    response = await client.post(
        "/v1/attachments",
        content=text,
        headers={
            **bearer(alice),
            "X-Content-SHA256": hashlib.sha256(text).hexdigest(),
            "X-File-Name": "notes.txt",
        },
    )
    not_image = await set_photo(client, alice, response.json()["attachmentId"])
    assert (not_image.status_code, not_image.json()["error"]["code"]) == (400, "not_an_image")
    bobs = await upload(client, bob, png((1, 2, 3)))
    for attachment_id in (bobs, "01JQ80G5H6J7K8M9N0P1Q2R3S4", "junk"):
        refused = await set_photo(client, alice, attachment_id)
        assert refused.status_code == 404, attachment_id
        assert refused.json()["error"]["code"] == "attachment_not_found"
    nul = await set_photo(client, alice, "junk\x00")
    assert (nul.status_code, nul.json()["error"]["code"]) == (422, "invalid_request")
    assert await photo_of(client, bob, alice) is None


async def test_the_photo_follows_its_audience_and_blocks(
    user: Register, client: httpx.AsyncClient
) -> None:
    alice, bob, carol = await user(ALICE), await user(BOB), await user(CAROL)
    await client.post("/v1/contacts/lookup", json={"phones": [CAROL]}, headers=bearer(alice))
    assert (await set_photo(client, alice, await upload(client, alice, png((9, 9, 9))))).is_success
    url = f"/v1/users/{alice['user_id']}/photo"

    async def visible_to(viewer: dict[str, Any]) -> bool:
        profile = await photo_of(client, viewer, alice)
        response = await client.get(url, headers=bearer(viewer))
        thumb = await client.get(f"{url}?size=thumbnail", headers=bearer(viewer))
        assert (profile is not None) == response.is_success == thumb.is_success
        if not response.is_success:
            assert response.json()["error"]["code"] == "photo_not_found"
        return profile is not None

    assert [await visible_to(v) for v in (alice, bob, carol)] == [True, True, True]
    response = await client.patch(
        "/v1/me/privacy", json={"photo": "contacts"}, headers=bearer(alice)
    )
    assert response.status_code == 200
    assert [await visible_to(v) for v in (alice, bob, carol)] == [True, False, True]
    await client.put(f"/v1/blocks/{carol['user_id']}", headers=bearer(alice))
    assert [await visible_to(v) for v in (alice, bob, carol)] == [True, False, False]
    await client.patch("/v1/me/privacy", json={"photo": "nobody"}, headers=bearer(alice))
    await client.delete(f"/v1/blocks/{carol['user_id']}", headers=bearer(alice))
    assert [await visible_to(v) for v in (alice, bob, carol)] == [True, False, False]
