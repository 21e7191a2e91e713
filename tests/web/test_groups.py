"""A group of three in three browser profiles: rename, remove a member who then sees nothing new."""

from __future__ import annotations

from playwright.sync_api import expect

from tests.web.support import WAIT_MS, Web

ALICE = "+14155550131"
BOB = "+14155550132"
CAROL = "+14155550133"


def test_group_of_three_rename_and_a_removed_member_sees_nothing_new(web: Web) -> None:
    alice = web.register(ALICE, "Alice")
    bob = web.register(BOB, "Bob")
    carol = web.register(CAROL, "Carol")
    # Made from another device of Alice's (in the page it needs contacts lookup, issue 16).
    helper = web.side_device(ALICE)
    web.command(
        helper, "createChat", {"participants": [bob.user_id, carol.user_id], "name": "Trip"}
    )
    for person in (alice, bob, carol):
        expect(person.by("chat-item").filter(has_text="Trip")).to_be_visible(timeout=WAIT_MS)

    alice.open_chat("Trip")
    expect(alice.by("message")).to_contain_text("You created the group “Trip”")
    alice.page.get_by_text("Members (3)").click()
    alice.by("rename-group").fill("Trip 2026")
    alice.by("rename-group").press("Enter")
    expect(alice.by("chat-title")).to_have_text("Trip 2026", timeout=WAIT_MS)
    for person in (bob, carol):
        expect(person.by("chat-item").filter(has_text="Trip 2026")).to_be_visible(timeout=WAIT_MS)

    alice.send("everyone")
    for person in (bob, carol):
        person.open_chat("Trip 2026")
        expect(person.bubble("everyone")).to_have_count(1, timeout=WAIT_MS)
    expect(alice.bubble("everyone")).to_have_attribute("data-status", "read", timeout=WAIT_MS)
    web.screenshot(bob, "group")

    # Alice makes Bob an admin: he is told, and can now manage the group himself.
    member = '.group-panel [data-testid="group-member"][data-user-id="{}"]'
    alice.page.locator(member.format(bob.user_id)).get_by_test_id("make-admin").click()
    expect(alice.page.locator(member.format(bob.user_id))).to_contain_text("admin")
    expect(bob.by("message").filter(has_text="You are now admin")).to_have_count(1, timeout=WAIT_MS)
    bob.page.get_by_text("Members (3)").click()
    expect(bob.by("rename-group")).to_be_visible()

    alice.page.locator(
        f'[data-testid="group-member"][data-user-id="{carol.user_id}"]'
    ).get_by_test_id("remove-member").click()
    expect(alice.page.get_by_text("Members (2)")).to_be_visible(timeout=WAIT_MS)
    expect(carol.by("message").filter(has_text="Alice removed You")).to_have_count(
        1, timeout=WAIT_MS
    )
    alice.send("without carol")
    expect(bob.bubble("without carol")).to_have_count(1, timeout=WAIT_MS)

    # A barrier: a 1:1 message to Carol committed after the group's. Her device's queue is
    # in commit order and the page stores in order, so once it shows, the group's would have.
    direct = web.command(helper, "createChat", {"participants": [carol.user_id]})
    web.command(
        helper,
        "sendMessage",
        {"chatId": direct["chatId"], "clientMessageId": "barrier", "message": "barrier"},
    )
    expect(carol.by("chat-item").filter(has_text="barrier")).to_be_visible(timeout=WAIT_MS)
    expect(carol.bubble("without carol")).to_have_count(0)
