"""Privacy settings, each checked from the outside: what others see over HTTP and the
WebSocket after the owner changes a setting."""

from __future__ import annotations

from typing import Any

import httpx

from tests.gateway.conftest import Connect, Register
from tests.support import bearer, before_message, mark, of_kind, online

ALICE, BOB, CAROL = "+14155550121", "+14155550122", "+14155550123"


async def set_privacy(
    client: httpx.AsyncClient, session: dict[str, Any], **changes: Any
) -> dict[str, Any]:
    response = await client.patch("/v1/me/privacy", json=changes, headers=bearer(session))
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def people(user: Register, client: httpx.AsyncClient) -> list[dict[str, Any]]:
    """Alice, Bob and Carol; Carol is in Alice's contacts (she looked Carol's number up)."""
    alice, bob, carol = await user(ALICE), await user(BOB), await user(CAROL)
    found = await client.post(
        "/v1/contacts/lookup", json={"phones": [CAROL]}, headers=bearer(alice)
    )
    assert [m["userId"] for m in found.json()["matches"]] == [carol["user_id"]]
    return [alice, bob, carol]


async def test_settings_have_defaults_change_one_at_a_time_and_refuse_bad_values(
    user: Register, client: httpx.AsyncClient
) -> None:
    alice = await user(ALICE)
    defaults = (await client.get("/v1/me/privacy", headers=bearer(alice))).json()
    assert defaults == {
        "lastSeen": "everyone",
        "photo": "everyone",
        "about": "everyone",
        "statuses": "contacts",
        "readReceipts": True,
        "groups": "everyone",
        "statusesExcept": [],
        "statusesOnly": [],
    }
    changed = await set_privacy(client, alice, lastSeen="nobody", readReceipts=False)
    assert changed == {**defaults, "lastSeen": "nobody", "readReceipts": False}
    assert (await client.get("/v1/me/privacy", headers=bearer(alice))).json() == changed

    for bad in ({"about": "friends"}, {"groups": "nobody"}, {"photo": None}, {"readReceipts": "x"}):
        response = await client.patch("/v1/me/privacy", json=bad, headers=bearer(alice))
        assert response.status_code == 422, bad
        assert response.json()["error"]["code"] == "invalid_request"
    unknown = await client.patch("/v1/me/privacy", json={"phone": "x"}, headers=bearer(alice))
    assert unknown.json()["error"]["code"] == "unknown_field"
    assert (await client.get("/v1/me/privacy", headers=bearer(alice))).json() == changed


async def test_about_follows_its_audience(user: Register, client: httpx.AsyncClient) -> None:
    alice, bob, carol = await people(user, client)
    assert (
        await client.patch("/v1/me", json={"about": "at the beach"}, headers=bearer(alice))
    ).status_code == 200

    async def about_seen_by(viewer: dict[str, Any]) -> str:
        response = await client.get(f"/v1/users/{alice['user_id']}", headers=bearer(viewer))
        return str(response.json()["about"])

    assert [await about_seen_by(v) for v in (alice, bob, carol)] == ["at the beach"] * 3
    await set_privacy(client, alice, about="contacts")
    assert [await about_seen_by(v) for v in (alice, bob, carol)] == [
        "at the beach",
        "",
        "at the beach",
    ]
    # A lookup shows it the same way.
    found = await client.post("/v1/contacts/lookup", json={"phones": [ALICE]}, headers=bearer(bob))
    assert found.json()["matches"][0]["about"] == ""
    await set_privacy(client, alice, about="nobody")
    assert [await about_seen_by(v) for v in (alice, bob, carol)] == ["at the beach", "", ""]


async def test_last_seen_and_online_follow_their_audience(
    user: Register, connect: Connect, client: httpx.AsyncClient
) -> None:
    alice, bob, carol = await people(user, client)
    b, c = await online(connect, bob), await online(connect, carol)
    for ws in (b, c):
        await ws.call("createChat", {"participants": [alice["user_id"]]})
    await set_privacy(client, alice, lastSeen="contacts")

    a = await online(connect, alice)
    assert (await c.next_event("presence"))["data"]["userId"] == alice["user_id"]
    assert of_kind(await b.ping_barrier(), "presence") == []
    asked = {"userIds": [alice["user_id"]]}
    assert await b.call("getPresence", asked) == {"presence": []}
    assert (await c.call("getPresence", asked))["presence"][0]["state"] == "online"

    await set_privacy(client, alice, lastSeen="nobody")
    await a.call("setPresence", {"state": "offline"})
    assert of_kind(await c.ping_barrier(), "presence") == []
    assert of_kind(await b.ping_barrier(), "presence") == []
    assert await c.call("getPresence", asked) == {"presence": []}


async def test_read_receipts_off_works_both_ways_in_1to1_chats_and_groups_keep_them(
    user: Register, connect: Connect, client: httpx.AsyncClient
) -> None:
    alice, bob, _ = await people(user, client)
    a, b = await online(connect, alice), await online(connect, bob)
    direct = (await a.call("createChat", {"participants": [bob["user_id"]]}))["chatId"]
    group = (await a.call("createChat", {"participants": [bob["user_id"]], "name": "G"}))["chatId"]
    await set_privacy(client, alice, readReceipts=False)

    # Bob writes; Alice reads: Bob gets "delivered" but no "read".
    sent = await mark(b, direct, "hello")
    await before_message(a, sent["messageId"])
    await a.call("markRead", {"chatId": direct, "upToSeq": sent["seq"]})
    after = await mark(a, direct, "after reading")
    receipts = of_kind(await before_message(b, after["messageId"]), "receipt")
    assert "read" not in {r["data"]["type"] for r in receipts}

    # Alice writes; Bob reads: Alice sees no "read" either (off works both ways).
    sent = await mark(a, direct, "question")
    await before_message(b, sent["messageId"])
    await b.call("markRead", {"chatId": direct, "upToSeq": sent["seq"]})
    after = await mark(b, direct, "answer")
    receipts = of_kind(await before_message(a, after["messageId"]), "receipt")
    assert "read" not in {r["data"]["type"] for r in receipts}

    # In a group, read receipts still flow.
    sent = await mark(a, group, "to the group")
    await before_message(b, sent["messageId"])
    await b.call("markRead", {"chatId": group, "upToSeq": sent["seq"]})
    after = await mark(b, group, "seen")
    receipts = of_kind(await before_message(a, after["messageId"]), "receipt")
    assert ("read", group) in {(r["data"]["type"], r["data"]["chatId"]) for r in receipts}


async def test_only_contacts_may_add_me_to_groups_when_i_say_so(
    user: Register, connect: Connect, client: httpx.AsyncClient
) -> None:
    alice, bob, carol = await people(user, client)
    await set_privacy(client, alice, groups="contacts")
    b, c = await online(connect, bob), await online(connect, carol)
    refused = await b.request("createChat", {"participants": [alice["user_id"]], "name": "G"})
    assert refused["ok"] is False
    assert refused["error"]["code"] == "group_add_not_allowed"
    # Bob can still write to her 1:1 (the invite the error message suggests).
    await b.call("createChat", {"participants": [alice["user_id"]]})
    # Carol is in Alice's contacts: she may.
    await c.call("createChat", {"participants": [alice["user_id"], bob["user_id"]], "name": "G"})
