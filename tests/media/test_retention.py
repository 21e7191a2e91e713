"""Retention: blobs go once nothing needs them, and not before."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from pigeon.bootstrap import Container
from pigeon.domain.ids import new_id
from tests.live import WsClient
from tests.media.conftest import (
    Connect,
    Register,
    RowCounts,
    StoredObjects,
    blob_names,
    download,
    error_code,
    pdf,
    sha256,
    uploaded,
)
from tests.support import FakeClock, bearer, online

# The clock moves a day ahead; the users' tokens must outlive that.
pytestmark = pytest.mark.parametrize(
    "media_settings", [{"access_token_ttl_seconds": 7 * 24 * 3600}], ids=["long-tokens"]
)


async def send(ws: WsClient, chat_id: str, attachment_id: str) -> None:
    await ws.call(
        "sendMessage",
        {"chatId": chat_id, "clientMessageId": new_id(), "attachments": [attachment_id]},
    )


async def test_the_blob_goes_after_the_last_message_carrying_it(
    client: httpx.AsyncClient,
    user: Register,
    connect: Connect,
    container: Container,
    clock: FakeClock,
    stored_objects: StoredObjects,
    row_counts: RowCounts,
) -> None:
    alice, bob = await user(), await user()
    a = await online(connect, alice)
    b = await online(connect, bob)  # acks what it receives
    chat_id = (await a.call("createChat", {"participants": [bob["user_id"]]}))["chatId"]
    body = pdf("ephemeral")
    meta = await uploaded(client, alice, body)
    await send(a, chat_id, meta["attachmentId"])
    message = (await b.next_event("message"))["data"]
    assert message["attachments"][0]["attachmentId"] == meta["attachmentId"]
    # Bob's only device acked: the message is delivered everywhere and gone.
    receipt = await a.next_event("receipt")
    assert receipt["data"]["type"] == "delivered"

    # Within the grace period the object stays (a new upload of it may be on its way).
    await container.media.purge()
    assert blob_names(await stored_objects()) == [sha256(body)]

    clock.advance(hours=1, minutes=1)
    assert await container.media.purge() == {"uploads": 0, "blobs": 1, "staging_files": 0}
    assert await stored_objects() == []
    assert await row_counts() == {"attachments": 0, "blobs": 0, "uploads": 0}
    for session in (alice, bob):
        gone = await download(client, session, meta["attachmentId"])
        assert gone.status_code == 404
        assert error_code(gone) == "attachment_not_found"


async def test_an_unattached_upload_expires_but_an_undelivered_one_is_kept(
    client: httpx.AsyncClient,
    user: Register,
    connect: Connect,
    container: Container,
    clock: FakeClock,
    stored_objects: StoredObjects,
) -> None:
    alice, bob = await user(), await user()
    a = await online(connect, alice)
    chat_id = (await a.call("createChat", {"participants": [bob["user_id"]]}))["chatId"]
    never_sent = await uploaded(client, alice, pdf("draft"))
    waiting_body = pdf("for bob")
    waiting = await uploaded(client, alice, waiting_body)
    await send(a, chat_id, waiting["attachmentId"])  # bob is offline

    clock.advance(hours=23)
    assert await container.media.purge() == {"uploads": 0, "blobs": 0, "staging_files": 0}
    assert (await download(client, alice, never_sent["attachmentId"])).status_code == 200

    clock.advance(hours=2)  # 25 h: past PIGEON_MEDIA_UNATTACHED_TTL_HOURS (24)
    assert await container.media.purge() == {"uploads": 0, "blobs": 1, "staging_files": 0}
    gone = await download(client, alice, never_sent["attachmentId"])
    assert gone.status_code == 404
    assert error_code(gone) == "attachment_not_found"
    assert blob_names(await stored_objects()) == [sha256(waiting_body)]

    # Bob comes online a day later and still gets the file.
    b = await connect(bob, auto_ack=False)
    message = (await b.next_event("message"))["data"]
    assert message["attachments"][0]["attachmentId"] == waiting["attachmentId"]
    got = await download(client, bob, waiting["attachmentId"])
    assert got.status_code == 200
    assert got.content == waiting_body
    assert (await download(client, alice, waiting["attachmentId"])).status_code == 200


async def test_a_blob_shared_with_a_kept_attachment_survives(
    client: httpx.AsyncClient,
    user: Register,
    connect: Connect,
    container: Container,
    clock: FakeClock,
    stored_objects: StoredObjects,
) -> None:
    """Same bytes, two attachments: the expired one goes, the object stays for the other."""
    alice, bob = await user(), await user()
    a = await online(connect, alice)
    chat_id = (await a.call("createChat", {"participants": [bob["user_id"]]}))["chatId"]
    body = pdf("twice")
    draft = await uploaded(client, alice, body)
    sent = await uploaded(client, alice, body)
    await send(a, chat_id, sent["attachmentId"])
    clock.advance(hours=25)
    assert await container.media.purge() == {"uploads": 0, "blobs": 0, "staging_files": 0}
    assert (await download(client, alice, draft["attachmentId"])).status_code == 404
    assert blob_names(await stored_objects()) == [sha256(body)]
    got = await download(client, alice, sent["attachmentId"])
    assert got.content == body


async def test_a_stale_resumable_upload_is_dropped(
    client: httpx.AsyncClient,
    user: Register,
    container: Container,
    clock: FakeClock,
    staged: Callable[[], list[Path]],
    row_counts: RowCounts,
) -> None:
    alice = await user()
    body = pdf("abandoned" * 20)
    started = await client.post(
        "/v1/uploads", json={"size": len(body), "sha256": sha256(body)}, headers=bearer(alice)
    )
    upload_id = started.json()["uploadId"]
    part = await client.patch(
        f"/v1/uploads/{upload_id}",
        content=body[:50],
        headers={**bearer(alice), "Upload-Offset": "0"},
    )
    assert part.status_code == 200
    assert len(staged()) == 1

    clock.advance(hours=25)
    assert await container.media.purge() == {"uploads": 1, "blobs": 0, "staging_files": 0}
    assert staged() == []
    assert await row_counts() == {"attachments": 0, "blobs": 0, "uploads": 0}
    gone = await client.get(f"/v1/uploads/{upload_id}", headers=bearer(alice))
    assert gone.status_code == 404
    assert error_code(gone) == "upload_not_found"
