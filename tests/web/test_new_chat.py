"""Starting chats from the page by phone number, through contacts lookup (issue 16).

``POST /v1/contacts/lookup`` comes with issue 16: until it is merged these
tests fail with the page's "not found" error, as they should.
"""

from __future__ import annotations

from playwright.sync_api import expect

from tests.web.support import WAIT_MS, Web

ALICE = "+14155550161"
BOB = "+14155550162"
CAROL = "+14155550163"


def test_new_chat_by_phone_number(web: Web) -> None:
    alice = web.register(ALICE, "Alice")
    bob = web.register(BOB, "Bob")
    alice.by("new-chat").click()
    alice.by("new-chat-phone").fill(BOB)
    alice.by("start-chat").click()
    expect(alice.by("chat-title")).to_have_text("Bob", timeout=WAIT_MS)
    alice.send("found you by your number")
    expect(bob.by("chat-item").filter(has_text="Alice")).to_contain_text(
        "found you by your number", timeout=WAIT_MS
    )
    expect(alice.bubble("found you by your number")).to_have_attribute(
        "data-status", "delivered", timeout=WAIT_MS
    )


def test_a_number_nobody_has_is_explained(web: Web) -> None:
    alice = web.register(ALICE, "Alice")
    alice.by("new-chat").click()
    alice.by("new-chat-phone").fill("+14155550199")
    alice.by("start-chat").click()
    expect(alice.page.get_by_role("alert")).to_contain_text("+14155550199", timeout=WAIT_MS)
    expect(alice.by("chat-item")).to_have_count(0)


def test_new_group_by_phone_numbers(web: Web) -> None:
    alice = web.register(ALICE, "Alice")
    bob = web.register(BOB, "Bob")
    carol = web.register(CAROL, "Carol")
    alice.by("new-group").click()
    alice.by("group-name").fill("Book club")
    alice.by("group-member-phone").fill(f"{BOB}, {CAROL}")
    alice.by("create-group").click()
    expect(alice.by("chat-title")).to_have_text("Book club", timeout=WAIT_MS)
    alice.send("first meeting on Monday")
    for person in (bob, carol):
        expect(person.by("chat-item").filter(has_text="Book club")).to_contain_text(
            "first meeting on Monday", timeout=WAIT_MS
        )
