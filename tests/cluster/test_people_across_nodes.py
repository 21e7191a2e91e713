"""Blocks and privacy settings changed through one node hold at once on the other."""

from __future__ import annotations

from tests.cluster.conftest import Node, Person
from tests.support import bearer, before_message, mark, of_kind


async def test_a_block_and_a_privacy_setting_made_on_one_node_hold_on_the_other(
    nodes: tuple[Node, Node], person: Person
) -> None:
    a, b = nodes
    alice, bob, carol = await person(), await person(), await person()
    alice_ws, bob_ws, carol_ws = (
        await a.connect(alice),
        await b.connect(bob),
        await b.connect(carol),
    )
    direct = (await bob_ws.call("createChat", {"participants": [alice["user_id"]]}))["chatId"]
    await carol_ws.call("createChat", {"participants": [alice["user_id"]]})
    group = (
        await carol_ws.call(
            "createChat", {"participants": [alice["user_id"], bob["user_id"]], "name": "G"}
        )
    )["chatId"]

    # Through node b's HTTP API: Alice blocks Bob and hides her last seen from everyone.
    assert (await b.http.put(f"/v1/blocks/{bob['user_id']}", headers=bearer(alice))).is_success
    changed = await b.http.patch(
        "/v1/me/privacy", json={"lastSeen": "nobody"}, headers=bearer(alice)
    )
    assert changed.status_code == 200

    # Node b's committer does not queue Bob's 1:1 message for Alice (on node a).
    await bob_ws.call("sendMessage", {"chatId": direct, "clientMessageId": "x", "message": "x"})
    marker = await mark(carol_ws, group)
    frames = await before_message(alice_ws, marker["messageId"])
    assert [f for f in of_kind(frames, "message") if f["data"]["chatId"] == direct] == []

    # Node a answers presence questions by the setting made through node b.
    asked = {"userIds": [alice["user_id"]]}
    for ws in (bob_ws, carol_ws):
        assert await ws.call("getPresence", asked) == {"presence": []}
    # Her going offline is hidden; once she shows her last seen again, Carol's first
    # presence event is her coming back (the bus keeps node a's events in order).
    await alice_ws.call("setPresence", {"state": "offline"})
    shown = await a.http.patch(
        "/v1/me/privacy", json={"lastSeen": "everyone"}, headers=bearer(alice)
    )
    assert shown.status_code == 200
    await alice_ws.call("setPresence", {"state": "online"})
    first = await carol_ws.next_event("presence")
    assert (first["data"]["userId"], first["data"]["state"]) == (alice["user_id"], "online")


async def test_a_status_posted_through_one_node_reaches_a_contact_on_the_other(
    nodes: tuple[Node, Node], person: Person
) -> None:
    a, b = nodes
    alice, bob = await person(), await person()
    for viewer, other in ((alice, bob), (bob, alice)):
        found = await a.http.post(
            "/v1/contacts/lookup", json={"phones": [other["phone"]]}, headers=bearer(viewer)
        )
        assert len(found.json()["matches"]) == 1
    bob_ws = await b.connect(bob)
    posted = await a.http.post("/v1/statuses", json={"text": "hi"}, headers=bearer(alice))
    assert posted.status_code == 201
    event = (await bob_ws.next_event("status"))["data"]
    assert (event["statusId"], event["authorId"]) == (posted.json()["id"], alice["user_id"])
