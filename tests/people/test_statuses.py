"""Status updates from the outside: who sees them, viewers, expiry by the server's clock,
deletion, and their media."""

from __future__ import annotations

import hashlib
import io
from datetime import datetime
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from PIL import Image

from pigeon.bootstrap import Container
from pigeon.config import Settings
from tests.gateway.conftest import Connect, Register
from tests.support import FakeClock, bearer, of_kind, online, settle_in_new_group

ALICE, BOB, CAROL, DAVE = "+14155550141", "+14155550142", "+14155550143", "+14155550144"


@pytest.fixture
def settings(settings: Settings) -> Settings:
    # An hour instead of a day: the clock is moved past it within a token's life.
    return settings.model_copy(update={"status_ttl_hours": 1, "status_list_max_users": 2})


async def befriend(client: httpx.AsyncClient, session: dict[str, Any], *phones: str) -> None:
    response = await client.post(
        "/v1/contacts/lookup", json={"phones": list(phones)}, headers=bearer(session)
    )
    assert len(response.json()["matches"]) == len(phones), response.text


async def upload(client: httpx.AsyncClient, session: dict[str, Any], body: bytes) -> str:
    response = await client.post(
        "/v1/attachments",
        content=body,
        headers={
            **bearer(session),
            "X-Content-SHA256": hashlib.sha256(body).hexdigest(),
            "X-File-Name": "status.png",
        },
    )
    assert response.status_code == 201, response.text
    return str(response.json()["attachmentId"])


def png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (64, 48), (10, 120, 200)).save(out, "PNG")
    return out.getvalue()


async def listed(client: httpx.AsyncClient, viewer: dict[str, Any]) -> list[str]:
    response = await client.get("/v1/statuses", headers=bearer(viewer))
    assert response.status_code == 200, response.text
    return [s["text"] or s["caption"] for s in response.json()["statuses"]]


async def post(client: httpx.AsyncClient, author: dict[str, Any], **body: Any) -> httpx.Response:
    return await client.post("/v1/statuses", json=body, headers=bearer(author))


async def test_statuses_reach_contacts_per_privacy_and_list_who_saw_them(
    user: Register, client: httpx.AsyncClient
) -> None:
    alice, bob, carol, dave = [await user(p) for p in (ALICE, BOB, CAROL, DAVE)]
    await befriend(client, alice, BOB, DAVE)  # Alice's contacts: Bob, Dave
    for viewer in (bob, carol, dave):
        await befriend(client, viewer, ALICE)  # all three have Alice's number

    first = await post(client, alice, text="at the beach", backgroundColor="#3366FF", font=2)
    assert first.status_code == 201, first.text
    second = await post(client, alice, text="sunset")
    assert (first.json()["backgroundColor"], first.json()["font"]) == ("#3366FF", 2)

    # By default only Alice's own contacts see them; newest first.
    assert await listed(client, bob) == ["sunset", "at the beach"]
    assert await listed(client, carol) == []
    await client.patch("/v1/me/privacy", json={"statuses": "everyone"}, headers=bearer(alice))
    assert await listed(client, carol) == ["sunset", "at the beach"]

    # Viewers: Bob and Dave look; Dave has read receipts off, so he is not listed.
    await client.patch("/v1/me/privacy", json={"readReceipts": False}, headers=bearer(dave))
    status_id = second.json()["id"]
    for viewer in (bob, dave):
        seen = await client.post(f"/v1/statuses/{status_id}/view", headers=bearer(viewer))
        assert seen.status_code == 204
    viewers = await client.get(f"/v1/statuses/{status_id}/viewers", headers=bearer(alice))
    assert [v["userId"] for v in viewers.json()["viewers"]] == [bob["user_id"]]
    # Only the author sees who saw it.
    other = await client.get(f"/v1/statuses/{status_id}/viewers", headers=bearer(bob))
    assert (other.status_code, other.json()["error"]["code"]) == (404, "status_not_found")

    # Nobody: gone for everyone; a block hides them from one person.
    await client.patch("/v1/me/privacy", json={"statuses": "contacts"}, headers=bearer(alice))
    await client.put(f"/v1/blocks/{bob['user_id']}", headers=bearer(alice))
    assert await listed(client, bob) == []
    assert await listed(client, dave) == ["sunset", "at the beach"]
    refused = await client.post(f"/v1/statuses/{status_id}/view", headers=bearer(bob))
    assert refused.status_code == 404
    await client.patch("/v1/me/privacy", json={"statuses": "nobody"}, headers=bearer(alice))
    assert await listed(client, dave) == []


async def test_statuses_expire_by_the_server_clock_and_the_author_may_delete_them(
    user: Register, client: httpx.AsyncClient, container: Container, clock: FakeClock
) -> None:
    alice, bob = await user(ALICE), await user(BOB)
    await befriend(client, alice, BOB)
    await befriend(client, bob, ALICE)
    image = png()
    attachment_id = await upload(client, alice, image)
    media = await post(client, alice, attachmentId=attachment_id, caption="look")
    assert media.status_code == 201, media.text
    url = media.json()["media"]["url"]
    assert media.json()["media"]["mimeType"] == "image/png"
    text = await post(client, alice, text="short-lived")
    assert text.json()["expiresAt"] > text.json()["createdAt"]

    got = await client.get(url, headers=bearer(bob))
    assert (got.status_code, got.content) == (200, image)
    # Bob reads the file through the status only, never as an attachment id.
    direct = await client.get(f"/v1/attachments/{attachment_id}", headers=bearer(bob))
    assert direct.status_code == 404

    # The author deletes one; Bob's list and a second delete show it gone.
    deleted = await client.delete(f"/v1/statuses/{text.json()['id']}", headers=bearer(alice))
    assert deleted.status_code == 204
    assert await listed(client, bob) == ["look"]
    not_his = await client.delete(f"/v1/statuses/{media.json()['id']}", headers=bearer(bob))
    assert not_his.status_code == 404

    # The media outlives the unsent-upload TTL while the status lives...
    clock.advance(minutes=59)
    await container.statuses.purge()
    await container.media.purge()
    assert (await client.get(url, headers=bearer(bob))).status_code == 200
    # ...and past the hour the status is gone at once (the purge need not have run).
    clock.advance(minutes=2)
    assert await listed(client, bob) == []
    gone = await client.get(url, headers=bearer(bob))
    assert (gone.status_code, gone.json()["error"]["code"]) == (404, "status_not_found")
    assert await container.statuses.purge() == {"statuses": 1}
    await container.media.purge()
    clock.advance(hours=1, minutes=1)  # the blob grace period
    await container.media.purge()
    async with container.engine.connect() as conn:
        rows = (await conn.execute(sa.text("SELECT count(*) FROM statuses"))).scalar()
        blobs = set((await conn.execute(sa.text("SELECT hash FROM blobs"))).scalars())
    assert rows == 0
    assert hashlib.sha256(image).hexdigest() not in blobs


async def test_bad_statuses_are_refused_with_a_code(
    user: Register, client: httpx.AsyncClient
) -> None:
    alice, bob = await user(ALICE), await user(BOB)
    text = b"plain words\n"
    response = await client.post(
        "/v1/attachments",
        content=text,
        headers={**bearer(alice), "X-Content-SHA256": hashlib.sha256(text).hexdigest()},
    )
    notes = response.json()["attachmentId"]
    bobs = await upload(client, bob, png())
    cases: list[tuple[dict[str, Any], int, str]] = [
        ({}, 400, "invalid_status"),
        ({"text": "   "}, 400, "invalid_status"),
        ({"text": "both", "attachmentId": bobs}, 400, "invalid_status"),
        ({"text": "x" * 701}, 400, "status_too_long"),
        ({"attachmentId": notes}, 400, "unsupported_status_media"),
        ({"attachmentId": bobs}, 404, "attachment_not_found"),
        ({"attachmentId": "01JQ80G5H6J7K8M9N0P1Q2R3S4"}, 404, "attachment_not_found"),
        ({"text": "hi", "backgroundColor": "blue"}, 422, "invalid_request"),
        ({"text": "hi", "font": 99}, 422, "invalid_request"),
        ({"text": "a\x00b"}, 422, "invalid_request"),
    ]
    for body, status, code in cases:
        response = await post(client, alice, **body)
        assert (response.status_code, response.json()["error"]["code"]) == (status, code), body
    for path in ("/v1/statuses/nope/view", "/v1/statuses/01JQ80G5H6J7K8M9N0P1Q2R3S4/media"):
        missing = await client.request(
            "POST" if path.endswith("view") else "GET", path, headers=bearer(alice)
        )
        assert (missing.status_code, missing.json()["error"]["code"]) == (404, "status_not_found")


async def test_a_new_status_reaches_its_audience_live_and_queued(
    user: Register, connect: Connect, client: httpx.AsyncClient
) -> None:
    alice, bob, carol = await user(ALICE), await user(BOB), await user(CAROL)
    bob_tablet = await user(BOB, device="tablet")  # offline while the status is posted
    await befriend(client, alice, BOB)
    for viewer in (bob, carol):
        await befriend(client, viewer, ALICE)
    b, c = await online(connect, bob), await online(connect, carol)

    posted = await post(client, alice, text="hello world")
    assert posted.status_code == 201
    event = (await b.next_event("status"))["data"]
    assert (event["statusId"], event["authorId"]) == (posted.json()["id"], alice["user_id"])
    expires = [datetime.fromisoformat(t) for t in (event["expiresAt"], posted.json()["expiresAt"])]
    assert expires[0] == expires[1]
    # Bob's other device finds it queued when it connects.
    tablet = await connect(bob_tablet)
    backlog = await tablet.until(lambda f: f.get("event") == "drained")
    assert [f["data"]["statusId"] for f in of_kind(backlog, "status")] == [posted.json()["id"]]
    # Carol has Alice's number, but Alice shows statuses to her own contacts only.
    assert of_kind(await settle_in_new_group(c, carol["user_id"], b), "status") == []


async def test_muting_is_stored_for_all_of_a_users_devices(
    user: Register, client: httpx.AsyncClient
) -> None:
    alice, bob = await user(ALICE), await user(BOB)
    bob_tablet = await user(BOB, device="tablet")
    muted = await client.put(f"/v1/statuses/muted/{alice['user_id']}", headers=bearer(bob))
    assert muted.status_code == 204
    on_tablet = await client.get("/v1/statuses/muted", headers=bearer(bob_tablet))
    assert on_tablet.json() == {"muted": [alice["user_id"]]}
    await client.delete(f"/v1/statuses/muted/{alice['user_id']}", headers=bearer(bob_tablet))
    assert (await client.get("/v1/statuses/muted", headers=bearer(bob))).json() == {"muted": []}
    unknown = await client.put("/v1/statuses/muted/01JQ80G5H6J7K8M9N0P1Q2R3S4", headers=bearer(bob))
    assert (unknown.status_code, unknown.json()["error"]["code"]) == (404, "user_not_found")


async def test_status_lists_narrow_who_sees_them(
    user: Register, connect: Connect, client: httpx.AsyncClient
) -> None:
    alice, bob, carol, dave = [await user(p) for p in (ALICE, BOB, CAROL, DAVE)]
    await befriend(client, alice, BOB, CAROL)  # Alice's contacts: Bob, Carol
    for viewer in (bob, carol, dave):
        await befriend(client, viewer, ALICE)
    await post(client, alice, text="news")

    # My contacts except Bob.
    changed = await client.patch(
        "/v1/me/privacy",
        json={
            "statuses": "except",
            "statusesExcept": [bob["user_id"], "01JQ80G5H6J7K8M9N0P1Q2R3S4"],
        },
        headers=bearer(alice),
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["statusesExcept"] == [bob["user_id"]]  # unknown ids are left out
    assert [await listed(client, v) for v in (bob, carol, dave)] == [[], ["news"], []]

    # Only share with Dave (not even a contact of hers).
    await client.patch(
        "/v1/me/privacy",
        json={"statuses": "only", "statusesOnly": [dave["user_id"]]},
        headers=bearer(alice),
    )
    assert [await listed(client, v) for v in (bob, carol, dave)] == [[], [], ["news"]]
    # A new status reaches only him.
    b, d = await online(connect, bob), await online(connect, dave)
    posted = await post(client, alice, text="for dave")
    assert (await d.next_event("status"))["data"]["statusId"] == posted.json()["id"]
    assert of_kind(await settle_in_new_group(b, bob["user_id"], d), "status") == []

    # A list has at most PIGEON_STATUS_LIST_MAX_USERS people (2 here).
    three = [bob["user_id"], carol["user_id"], dave["user_id"]]
    too_many = await client.patch(
        "/v1/me/privacy", json={"statusesOnly": three}, headers=bearer(alice)
    )
    assert (too_many.status_code, too_many.json()["error"]["code"]) == (
        400,
        "status_list_too_long",
    )
