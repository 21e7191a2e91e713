"""Deleting an account (``DELETE /v1/me``): confirmed by SMS, and nothing of the user stays."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from pigeon.bootstrap import Container
from pigeon.domain.ids import new_id
from pigeon.storage.schema import contacts, messages, metadata
from tests.gateway.conftest import Connect, Register
from tests.media.conftest import png, sha256
from tests.support import Outbox, bearer, before_message, mark, online


def deletion_code(outbox: Outbox, phone: str) -> str:
    for message in reversed(outbox.messages()):
        if message["to"] == phone and message["template"] == "deletion_code":
            match = re.search(r"\b(\d{6})\b", message["body"])
            assert match, message
            return match.group(1)
    raise AssertionError(f"no deletion code was sent to {phone}")


async def ask_code(client: httpx.AsyncClient, session: dict[str, Any]) -> httpx.Response:
    return await client.post("/v1/me/deletion-code", json={}, headers=bearer(session))


async def delete_me(
    client: httpx.AsyncClient, session: dict[str, Any], code: str
) -> httpx.Response:
    return await client.request("DELETE", "/v1/me", json={"code": code}, headers=bearer(session))


async def phone_of(client: httpx.AsyncClient, session: dict[str, Any]) -> str:
    response = await client.get("/v1/me", headers=bearer(session))
    phone: str = response.json()["phone"]
    return phone


async def upload(client: httpx.AsyncClient, session: dict[str, Any], body: bytes) -> str:
    response = await client.post(
        "/v1/attachments",
        content=body,
        headers={**bearer(session), "X-Content-SHA256": sha256(body), "X-File-Name": "a.png"},
    )
    assert response.status_code == 201, response.text
    attachment_id: str = response.json()["attachmentId"]
    return attachment_id


async def send(ws: Any, chat_id: str, text: str, attachments: list[str] | None = None) -> Any:
    return await ws.call(
        "sendMessage",
        {
            "chatId": chat_id,
            "clientMessageId": new_id(),
            "message": text,
            "attachments": attachments or [],
        },
    )


async def rows_naming(container: Container, values: set[str]) -> dict[str, list[Any]]:
    """Every row of every table with a column equal to, or containing, one of ``values``.

    Generic on purpose: a table another feature adds is checked too. The one
    exception is a group's system messages, which are the group's own history:
    "<id> left" stays for the members still to receive it (the id names no
    account any more).
    """
    found: dict[str, list[Any]] = {}
    async with container.engine.connect() as conn:
        for table in metadata.sorted_tables:
            texts = [
                column if isinstance(column.type, sa.String) else sa.cast(column, sa.Text)
                for column in table.columns
                if isinstance(column.type, sa.String | sa.JSON)
            ]
            if not texts:
                continue
            match = sa.or_(
                *(column.contains(value, autoescape=True) for column in texts for value in values)
            )
            query = sa.select(table).where(match)
            if table is messages:
                query = query.where(messages.c.kind != "system")
            rows = (await conn.execute(query)).all()
            if rows:
                found[table.name] = [tuple(row) for row in rows]
    return found


async def test_deleting_an_account_leaves_nothing_of_it(
    client: httpx.AsyncClient,
    user: Register,
    connect: Connect,
    outbox: Outbox,
    container: Container,
) -> None:
    alice, bob, carol = await user(), await user(), await user()
    alice_laptop = await user(await phone_of(client, alice), device="laptop")
    # Bob's tablet never connects: receipts about alice wait in its queue.
    await user(await phone_of(client, bob), device="tablet")
    a, b = [await online(connect, s) for s in (alice, bob)]
    c = await online(connect, carol, auto_ack=False)  # carol keeps everything queued
    laptop = await online(connect, alice_laptop, auto_ack=False)
    # Alice made a group (she is its only admin) and has a 1:1 chat with bob.
    group = (
        await a.call(
            "createChat",
            {"participants": [bob["user_id"], carol["user_id"]], "name": "trip"},
        )
    )["chatId"]
    direct = (await a.call("createChat", {"participants": [bob["user_id"]]}))["chatId"]
    # She sends files (one bob forwards on to carol), and a message carol never acks.
    photo, private = (
        await upload(client, alice, png(color=(1, 2, 3))),
        await upload(client, alice, png(color=(4, 5, 6))),
    )
    await send(a, direct, "for bob", [photo, private])
    with_carol = (await b.call("createChat", {"participants": [carol["user_id"]]}))["chatId"]
    await send(b, with_carol, "look what alice sent", [photo])
    await c.close()
    await send(a, group, "unread by carol")
    # Something queued for her laptop, which never acks; an upload left half way.
    await send(b, direct, "for alice")
    response = await client.post(
        "/v1/uploads",
        json={"size": 10, "sha256": "0" * 64, "fileName": "x"},
        headers=bearer(alice),
    )
    assert response.status_code == 201, response.text
    # Alice has a broadcast list and contacts; bob has her in his list and his contacts.
    async with container.engine.begin() as conn:
        await conn.execute(
            contacts.insert(),
            [
                {
                    "owner_id": alice["user_id"],
                    "contact_id": bob["user_id"],
                    "added_at": datetime.now(UTC),
                },
                {
                    "owner_id": bob["user_id"],
                    "contact_id": alice["user_id"],
                    "added_at": datetime.now(UTC),
                },
            ],
        )
    for owner, member in ((alice, bob), (bob, alice)):
        listed = await client.post(
            "/v1/broadcast-lists",
            json={"name": "l", "recipients": [member["user_id"]]},
            headers=bearer(owner),
        )
        assert listed.status_code == 201, listed.text
    ids = {alice["user_id"], alice["device_id"], alice_laptop["device_id"]}

    assert (await ask_code(client, alice)).status_code == 202
    code = deletion_code(outbox, await phone_of(client, alice))
    assert (await delete_me(client, alice, code)).status_code == 204

    # Her devices are disconnected and signed out.
    assert await laptop.closed() == 1008
    assert laptop.close_reason == "account_deleted"
    assert await a.closed() == 1008
    for session in (alice, alice_laptop):
        assert (await client.get("/v1/me", headers=bearer(session))).status_code == 401
    # Bob still downloads the photo he forwarded; the file only alice's message carried is gone.
    got = await client.get(f"/v1/attachments/{photo}", headers=bearer(bob))
    assert got.status_code == 200
    assert (await client.get(f"/v1/attachments/{private}", headers=bearer(bob))).status_code == 404
    # Carol, back online, gets what bob sent her but never alice's withdrawn message.
    c2 = await connect(carol)
    backlog = await c2.until(lambda frame: frame.get("event") == "drained")
    texts = [f["data"].get("message") for f in backlog if f["event"] == "message"]
    assert "look what alice sent" in texts
    assert "unread by carol" not in texts
    # The group is told she left, and bob (the longest-standing member) is its admin now.
    frames = await before_message(b, (await mark(c2, group))["messageId"])
    systems = [
        f["data"]["system"]
        for f in frames
        if f["event"] == "message"
        and f["data"]["chatId"] == group
        and f["data"]["kind"] == "system"
    ]
    assert {"action": "left", "actorId": alice["user_id"], "userId": alice["user_id"]} in [
        {k: s.get(k) for k in ("action", "actorId", "userId")} for s in systems
    ]
    assert any(s["action"] == "role" and s["userId"] == bob["user_id"] for s in systems)
    details = await b.call("getChat", {"chatId": group})
    assert details["createdBy"] is None
    assert [(m["userId"], m["role"]) for m in details["members"]] == [
        (bob["user_id"], "admin"),
        (carol["user_id"], "member"),
    ]

    assert await rows_naming(container, ids) == {}
    # Bob's list is still there, now without anyone on it.
    [kept] = (await client.get("/v1/broadcast-lists", headers=bearer(bob))).json()["lists"]
    assert kept["recipients"] == []


@pytest.mark.parametrize(
    ("wrong", "status", "error"),
    [
        ("12345", 422, "invalid_request"),
        ("1234567", 422, "invalid_request"),
        ("", 422, "invalid_request"),
    ],
)
async def test_a_malformed_or_wrong_code_deletes_nothing(
    wrong: str, status: int, error: str, client: httpx.AsyncClient, user: Register, outbox: Outbox
) -> None:
    alice = await user()
    assert (await ask_code(client, alice)).status_code == 202
    code = deletion_code(outbox, await phone_of(client, alice))
    response = await delete_me(client, alice, wrong)
    assert response.status_code == status
    assert response.json()["error"]["code"] == error
    wrong = "111111" if code != "111111" else "222222"
    response = await delete_me(client, alice, wrong)
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "invalid_code"
    assert (await client.get("/v1/me", headers=bearer(alice))).status_code == 200


async def test_the_code_is_single_use_and_the_number_registers_anew(
    client: httpx.AsyncClient, user: Register, outbox: Outbox
) -> None:
    alice = await user()
    phone = await phone_of(client, alice)
    # A registration code is no deletion code.
    assert (await client.post("/v1/auth/code", json={"phone": phone})).status_code == 202
    registration = outbox.last_code(phone)
    assert (await delete_me(client, alice, registration)).status_code == 403
    assert (await ask_code(client, alice)).status_code == 202
    code = deletion_code(outbox, phone)
    assert (await delete_me(client, alice, code)).status_code == 204
    again = await user(phone)
    assert again["new_user"] is True
    assert again["user_id"] != alice["user_id"]
    assert (await delete_me(client, again, code)).json()["error"]["code"] == "invalid_code"


async def test_guesses_are_limited(
    client: httpx.AsyncClient, user: Register, outbox: Outbox
) -> None:
    alice = await user()
    assert (await ask_code(client, alice)).status_code == 202
    code = deletion_code(outbox, await phone_of(client, alice))
    wrong = "111111" if code != "111111" else "222222"
    codes = [(await delete_me(client, alice, wrong)).status_code for _ in range(6)]
    assert codes == [403] * 5 + [429]
    # Used up: even the right code no longer works; a new one must be asked for.
    assert (await delete_me(client, alice, code)).status_code == 429
    assert (await client.get("/v1/me", headers=bearer(alice))).status_code == 200
