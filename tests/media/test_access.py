"""Who may read an attachment: its uploader and the members of chats it was sent to; no one else."""

from __future__ import annotations

import base64
import io
import types
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from PIL import Image

import pigeon.services.media as media_service
from pigeon.domain.ids import new_id
from tests.live import WsClient
from tests.media.conftest import Connect, Register, download, error_code, pdf, png, uploaded
from tests.support import bearer, online


async def send(
    ws: WsClient, chat_id: str, attachment_ids: list[str], text: str = ""
) -> dict[str, Any]:
    """sendMessage with attachments; the whole answer frame."""
    return await ws.request(
        "sendMessage",
        {
            "chatId": chat_id,
            "clientMessageId": new_id(),
            "message": text,
            "attachments": attachment_ids,
        },
    )


async def next_text(ws: WsClient) -> dict[str, Any]:
    """The next message event that a member wrote (skipping system messages)."""
    for _ in range(20):
        data: dict[str, Any] = (await ws.next_event("message"))["data"]
        if data["kind"] == "text":
            return data
    raise AssertionError("no text message arrived")


async def assert_unreadable(
    client: httpx.AsyncClient, session: dict[str, Any], attachment_id: str
) -> None:
    """The caller gets exactly what an id that never existed gets."""
    unknown = await download(client, session, new_id())
    assert unknown.status_code == 404
    assert error_code(unknown) == "attachment_not_found"
    for response in (
        await download(client, session, attachment_id),
        await download(client, session, attachment_id, "bytes=0-9"),
    ):
        assert response.status_code == 404
        assert response.json() == unknown.json()
    link = await client.get(f"/v1/attachments/{attachment_id}/link", headers=bearer(session))
    assert link.status_code == 404
    assert link.json() == unknown.json()


# -- members ------------------------------------------------------------------------


async def test_a_chat_member_can_download_what_was_sent_to_the_chat(
    client: httpx.AsyncClient, user: Register, connect: Connect
) -> None:
    alice, bob = await user(), await user()
    a = await online(connect, alice)
    # Bob's app downloads the attachment before it acks the message.
    b = await online(connect, bob, auto_ack=False)
    chat_id = (await a.call("createChat", {"participants": [bob["user_id"]]}))["chatId"]
    body = png(480, 320, (10, 200, 60))
    meta = await uploaded(client, alice, body, name="beach.png")
    # Before it is sent, bob cannot read it.
    assert (await download(client, bob, meta["attachmentId"])).status_code == 404

    answer = await send(a, chat_id, [meta["attachmentId"]], "look!")
    assert answer["ok"], answer
    event = await b.next_event("message")
    message = event["data"]
    assert message["message"] == "look!"
    assert message["attachments"] == [
        {
            "attachmentId": meta["attachmentId"],
            "mimeType": "image/png",
            "size": len(body),
            "fileName": "beach.png",
            "width": 480,
            "height": 320,
            "thumbnail": meta["thumbnail"],
        }
    ]
    thumbnail = Image.open(io.BytesIO(base64.b64decode(message["attachments"][0]["thumbnail"])))
    assert thumbnail.format == "JPEG"
    assert max(thumbnail.size) <= 96

    got = await download(client, bob, meta["attachmentId"])
    assert got.status_code == 200
    assert got.content == body
    part = await download(client, bob, meta["attachmentId"], "bytes=10-19")
    assert part.status_code == 206
    assert part.content == body[10:20]
    await b.send({"type": "ack", "data": {"upTo": event["data"]["inboxSeq"]}})


async def test_access_lasts_until_every_recipient_device_acked(
    client: httpx.AsyncClient, user: Register, connect: Connect
) -> None:
    """The contract in docs/retention.md: download before the ack that delivers the message."""
    alice = await user()
    bob_phone = await user("+14155559001")
    bob_laptop = await user("+14155559001", device="laptop")
    a = await online(connect, alice)
    phone = await online(connect, bob_phone)  # acks at once
    laptop = await online(connect, bob_laptop, auto_ack=False)
    chat_id = (await a.call("createChat", {"participants": [bob_phone["user_id"]]}))["chatId"]
    body = pdf("later")
    meta = await uploaded(client, alice, body, name="later.pdf")
    assert (await send(a, chat_id, [meta["attachmentId"]]))["ok"]
    await next_text(phone)
    event = await laptop.next_event("message")
    assert (await a.next_event("receipt"))["data"]["type"] == "delivered"  # the phone's ack
    # The phone acked, the laptop has not: the message is still there, and so is access.
    assert (await download(client, bob_phone, meta["attachmentId"])).content == body
    await laptop.send({"type": "ack", "data": {"upTo": event["data"]["inboxSeq"]}})
    assert (await a.next_event("receipt"))["data"]["type"] == "delivered"  # the laptop's
    # Delivered everywhere: the message is gone and bob's access with it.
    for session in (bob_phone, bob_laptop):
        gone = await download(client, session, meta["attachmentId"])
        assert gone.status_code == 404
        assert error_code(gone) == "attachment_not_found"
    # The uploader keeps it until the next purge.
    assert (await download(client, alice, meta["attachmentId"])).status_code == 200


async def test_an_attachment_can_be_forwarded_by_a_member(
    client: httpx.AsyncClient, user: Register, connect: Connect
) -> None:
    alice, bob, carol = await user(), await user(), await user()
    a = await online(connect, alice)
    b = await online(connect, bob, auto_ack=False)
    c = await online(connect, carol, auto_ack=False)
    with_bob = (await a.call("createChat", {"participants": [bob["user_id"]]}))["chatId"]
    with_carol = (await b.call("createChat", {"participants": [carol["user_id"]]}))["chatId"]
    body = pdf("forward me")
    meta = await uploaded(client, alice, body)
    assert (await send(a, with_bob, [meta["attachmentId"]]))["ok"]
    received = await next_text(b)
    forwarded = await send(b, with_carol, [received["attachments"][0]["attachmentId"]])
    assert forwarded["ok"], forwarded
    message = await next_text(c)
    assert message["attachments"][0]["attachmentId"] == meta["attachmentId"]
    assert (await download(client, carol, meta["attachmentId"])).content == body


# -- everyone else --------------------------------------------------------------------


async def test_outsiders_and_guessers_get_the_same_404(
    client: httpx.AsyncClient, user: Register, connect: Connect
) -> None:
    alice, bob, carol = await user(), await user(), await user()
    a = await online(connect, alice)
    await online(connect, bob, auto_ack=False)
    chat_id = (await a.call("createChat", {"participants": [bob["user_id"]]}))["chatId"]
    meta = await uploaded(client, alice, pdf("private"))
    assert (await send(a, chat_id, [meta["attachmentId"]]))["ok"]
    # Carol is in no chat with it.
    await assert_unreadable(client, carol, meta["attachmentId"])
    # Made-up ids, and ids that are not ids at all.
    for guess in (new_id(), "0" * 26, "x", meta["attachmentId"].lower()):
        response = await download(client, carol, guess)
        assert response.status_code == 404, guess
        assert error_code(response) == "attachment_not_found", guess
    # Without a token there is nothing to learn either.
    anonymous = await client.get(f"/v1/attachments/{meta['attachmentId']}")
    assert anonymous.status_code == 401


async def test_a_removed_member_loses_access(
    client: httpx.AsyncClient, user: Register, connect: Connect
) -> None:
    alice, bob, dave = await user(), await user(), await user()
    a = await online(connect, alice)
    await online(connect, bob, auto_ack=False)
    d = await online(connect, dave, auto_ack=False)
    created = await a.call(
        "createChat", {"participants": [bob["user_id"], dave["user_id"]], "name": "trip"}
    )
    chat_id = created["chatId"]
    body = pdf("itinerary")
    meta = await uploaded(client, alice, body)
    assert (await send(a, chat_id, [meta["attachmentId"]]))["ok"]
    await next_text(d)
    assert (await download(client, dave, meta["attachmentId"])).content == body

    await a.call(
        "modifyChatParticipants",
        {"chatId": chat_id, "operation": "REMOVE", "userId": dave["user_id"]},
    )
    await assert_unreadable(client, dave, meta["attachmentId"])
    # The others still can.
    assert (await download(client, bob, meta["attachmentId"])).content == body
    assert (await download(client, alice, meta["attachmentId"])).content == body


async def test_an_attachment_one_cannot_read_cannot_be_sent(
    client: httpx.AsyncClient, user: Register, connect: Connect
) -> None:
    alice, bob, carol = await user(), await user(), await user()
    b = await online(connect, bob)
    c = await online(connect, carol, auto_ack=False)
    chat_id = (await b.call("createChat", {"participants": [carol["user_id"]]}))["chatId"]
    alices = await uploaded(client, alice, pdf("alice only"))
    bobs = await uploaded(client, bob, pdf("bob's own"))
    for ids in (
        [alices["attachmentId"]],
        [bobs["attachmentId"], alices["attachmentId"]],
        [new_id()],
    ):
        answer = await send(b, chat_id, ids, "stolen?")
        assert answer["ok"] is False, answer
        assert answer["error"]["code"] == "attachment_not_found"
    # None of these reached carol, and carol still cannot read alice's file.
    assert (await send(b, chat_id, [], "only text"))["ok"]
    assert (await next_text(c))["message"] == "only text"
    assert (await download(client, carol, alices["attachmentId"])).status_code == 404


# -- signed links ------------------------------------------------------------------


async def link_of(client: httpx.AsyncClient, session: dict[str, Any], attachment_id: str) -> str:
    response = await client.get(f"/v1/attachments/{attachment_id}/link", headers=bearer(session))
    assert response.status_code == 200, response.text
    url: str = response.json()["url"]
    assert response.json()["expiresAt"]
    return url


async def test_a_signed_link_downloads_without_a_token(
    client: httpx.AsyncClient, user: Register
) -> None:
    alice = await user()
    body = pdf("shareable" * 30)
    meta = await uploaded(client, alice, body, name="slides.pdf")
    url = await link_of(client, alice, meta["attachmentId"])
    assert url.startswith(f"/v1/media/{meta['attachmentId']}?")
    got = await client.get(url)
    assert got.status_code == 200
    assert got.content == body
    assert got.headers["content-type"] == "application/octet-stream"  # a document
    part = await client.get(url, headers={"Range": "bytes=-50"})
    assert part.status_code == 206
    assert part.content == body[-50:]
    assert part.headers["content-range"] == f"bytes {len(body) - 50}-{len(body) - 1}/{len(body)}"


async def test_a_tampered_link_is_not_found(client: httpx.AsyncClient, user: Register) -> None:
    alice = await user()
    first = await uploaded(client, alice, pdf("one"))
    other = await uploaded(client, alice, pdf("two"))
    url = await link_of(client, alice, first["attachmentId"])
    query = parse_qs(urlsplit(url).query)
    expires, signature = query["expires"][0], query["signature"][0]
    flipped = ("0" if signature[0] != "0" else "1") + signature[1:]
    for attempt in (
        f"/v1/media/{first['attachmentId']}?expires={expires}&signature={flipped}",
        # The same signature does not open another attachment, nor a later expiry.
        f"/v1/media/{other['attachmentId']}?expires={expires}&signature={signature}",
        f"/v1/media/{first['attachmentId']}?expires={int(expires) + 3600}&signature={signature}",
    ):
        response = await client.get(attempt)
        assert response.status_code == 404, attempt
        assert error_code(response) == "attachment_not_found"


async def test_an_expired_link_is_refused(
    client: httpx.AsyncClient, user: Register, monkeypatch: pytest.MonkeyPatch
) -> None:
    alice = await user()
    meta = await uploaded(client, alice, pdf())
    url = await link_of(client, alice, meta["attachmentId"])
    expires = int(parse_qs(urlsplit(url).query)["expires"][0])
    now = expires - 300  # links live five minutes by default
    monkeypatch.setattr(media_service, "time", types.SimpleNamespace(time=lambda: now + 299))
    assert (await client.get(url)).status_code == 200
    monkeypatch.setattr(media_service, "time", types.SimpleNamespace(time=lambda: now + 301))
    expired = await client.get(url)
    assert expired.status_code == 403
    assert error_code(expired) == "link_expired"


async def test_links_are_only_given_to_readers(client: httpx.AsyncClient, user: Register) -> None:
    alice, mallory = await user(), await user()
    meta = await uploaded(client, alice, pdf())
    response = await client.get(
        f"/v1/attachments/{meta['attachmentId']}/link", headers=bearer(mallory)
    )
    assert response.status_code == 404
    assert error_code(response) == "attachment_not_found"
    assert (await client.get(f"/v1/attachments/{meta['attachmentId']}/link")).status_code == 401
