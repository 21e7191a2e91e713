"""Two people chat in two browser profiles: text both ways, ticks, typing, presence, reloads."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.web.support import WAIT_MS, Web

ALICE = "+14155550101"
BOB = "+14155550102"


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_two_people_chat_both_ways_with_ticks_sent_delivered_read(web: Web) -> None:
    alice = web.register(ALICE, "Alice")
    bob = web.register(BOB, "Bob")
    web.screenshot(bob, "chat-list-empty")
    web.chat_between(alice, bob, "hi from alice's phone")

    # Bob's list shows the chat with its last message and one unread.
    item = bob.by("chat-item").filter(has_text="Alice")
    expect(item).to_contain_text("hi from alice's phone", timeout=WAIT_MS)
    expect(item.get_by_test_id("unread")).to_have_text("1")

    # While Bob is offline, Alice's message is sent (committed) but not delivered.
    bob.context.set_offline(True)
    expect(bob.by("connection-status")).to_have_attribute("data-state", "offline")
    alice.open_chat("Bob")
    alice.send("Hello Bob")
    mine = alice.bubble("Hello Bob")
    expect(mine).to_have_attribute("data-status", "sent", timeout=WAIT_MS)
    expect(alice.by("presence")).to_have_attribute("data-state", "offline", timeout=WAIT_MS)

    # Bob comes back: his device stores and acks it (delivered); he opens the chat (read).
    bob.context.set_offline(False)
    expect(mine).to_have_attribute("data-status", "delivered", timeout=WAIT_MS)
    expect(alice.by("presence")).to_have_attribute("data-state", "online", timeout=WAIT_MS)
    expect(item.get_by_test_id("unread")).to_have_text("2", timeout=WAIT_MS)
    web.screenshot(bob, "chat-list")
    bob.open_chat("Alice")
    expect(bob.bubble("Hello Bob")).to_have_count(1)
    expect(mine).to_have_attribute("data-status", "read", timeout=WAIT_MS)
    expect(item.get_by_test_id("unread")).to_have_count(0)

    # Typing shows on the other side, then Bob answers on two lines (Shift+Enter).
    bob.by("composer").press_sequentially("Hi")
    expect(alice.by("typing")).to_be_visible(timeout=WAIT_MS)
    bob.by("composer").press("Shift+Enter")
    bob.by("composer").press_sequentially("how are you?")
    bob.by("composer").press("Enter")
    expect(bob.by("composer")).to_have_value("")
    answer = alice.bubble("how are you?")
    expect(answer.locator(".text")).to_have_text("Hi\nhow are you?", timeout=WAIT_MS)
    # Alice has the chat open, so Bob's message is read at once.
    expect(bob.bubble("how are you?")).to_have_attribute("data-status", "read", timeout=WAIT_MS)
    web.screenshot(alice, "chat")

    # Alice answers Bob's message: both see which one it answers.
    answer.get_by_test_id("reply").click()
    expect(alice.by("replying")).to_contain_text("Replying to Bob: Hi")  # its first line
    alice.send("fine, thanks")
    expect(alice.by("replying")).to_have_count(0)
    for person in (alice, bob):
        quoted = person.bubble("fine, thanks").get_by_test_id("quote")
        expect(quoted).to_have_text(re.compile(r"^(Bob|You)\s*Hi$"), timeout=WAIT_MS)

    # Each message shows exactly once on each side.
    for person in (alice, bob):
        for text in ("hi from alice's phone", "Hello Bob", "how are you?"):
            expect(person.by("message").locator(".text").filter(has_text=text)).to_have_count(1)


def test_reload_and_server_restart_lose_nothing_and_duplicate_nothing(web: Web) -> None:
    alice = web.register(ALICE, "Alice")
    bob = web.register(BOB, "Bob")
    web.chat_between(alice, bob, "first")
    bob.open_chat("Alice")
    bob.send("second")
    expect(bob.bubble("second")).to_have_attribute("data-status", "delivered", timeout=WAIT_MS)

    # The server deleted both messages once delivered: a reload shows them from IndexedDB.
    alice.page.reload()
    expect(alice.by("chat-item").filter(has_text="Bob")).to_contain_text("second")
    alice.open_chat("Bob")
    expect(alice.messages()).to_have_count(2)

    # While the server restarts, Alice's message waits (pending), then goes exactly once.
    web.restart_server(
        during=lambda: (
            expect(alice.by("connection-status")).not_to_have_attribute("data-state", "online"),
            alice.send("during the restart"),
            expect(alice.bubble("during the restart")).to_have_attribute("data-status", "pending"),
        )
    )
    expect(alice.bubble("during the restart")).to_have_attribute(
        "data-status", "read", timeout=WAIT_MS * 2
    )
    expect(bob.bubble("during the restart")).to_have_count(1)
    bob.page.reload()
    bob.open_chat("Alice")
    expect(bob.messages()).to_have_count(3)
    expect(bob.bubble("during the restart")).to_have_count(1)


def test_offline_then_online_resumes(web: Web) -> None:
    alice = web.register(ALICE, "Alice")
    bob = web.register(BOB, "Bob")
    web.chat_between(alice, bob, "first")
    alice.open_chat("Bob")
    bob.open_chat("Alice")

    alice.context.set_offline(True)
    expect(alice.by("connection-status")).to_have_attribute("data-state", "offline")
    expect(alice.by("connection-status")).to_be_visible()
    web.screenshot(alice, "offline")
    alice.send("written offline")
    expect(alice.bubble("written offline")).to_have_attribute("data-status", "pending")
    bob.send("sent while alice was away")
    expect(bob.bubble("sent while alice was away")).to_have_attribute("data-status", "sent")

    alice.context.set_offline(False)
    expect(alice.by("connection-status")).to_have_attribute("data-state", "online", timeout=WAIT_MS)
    expect(alice.by("connection-status")).to_be_hidden()
    expect(alice.bubble("written offline")).to_have_attribute(
        "data-status", "read", timeout=WAIT_MS
    )
    expect(alice.bubble("sent while alice was away")).to_have_count(1, timeout=WAIT_MS)
    expect(bob.bubble("sent while alice was away")).to_have_attribute(
        "data-status", "read", timeout=WAIT_MS
    )
    expect(bob.bubble("written offline")).to_have_count(1)
