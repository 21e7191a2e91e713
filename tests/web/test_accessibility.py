"""axe-core on the main screens, keyboard use, and a phone-sized screen (375 px)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from playwright.sync_api import expect

from tests.web.support import WAIT_MS, Person, Web

ALICE = "+14155550141"
BOB = "+14155550142"
AXE = Path(__file__).parents[2] / "web" / "node_modules" / "axe-core" / "axe.min.js"
PHONE = {"width": 375, "height": 740}


def serious_violations(person: Person) -> list[dict[str, Any]]:
    """axe-core's WCAG 2 A/AA findings of serious or critical impact on the current screen."""
    result: dict[str, Any] = person.page.evaluate(
        """async () => {
            const found = await axe.run(document, {
                runOnly: {type: "tag", values: ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]},
            });
            return found.violations.map((v) => ({
                id: v.id, impact: v.impact, nodes: v.nodes.map((n) => n.target.join(" ")),
            }));
        }"""
    )
    return [v for v in result if v["impact"] in ("serious", "critical")]


def with_axe(web: Web, phone: str, name: str) -> Person:
    """A profile with axe-core on each page (an init script: the CSP allows no inline one)."""
    assert AXE.exists(), f"{AXE} is missing: run `make web-test` (npm ci in web/)"
    person = web.person(phone, name)
    person.context.add_init_script(path=str(AXE))
    person.page.reload()
    return person


def test_axe_finds_nothing_serious_on_login_chat_list_and_chat(web: Web) -> None:
    alice = with_axe(web, ALICE, "Alice")
    assert serious_violations(alice) == []
    web.log_in(alice)
    bob = web.register(BOB, "Bob")
    web.chat_between(alice, bob, "hello")
    expect(alice.by("chat-item")).to_have_count(1, timeout=WAIT_MS)
    assert serious_violations(alice) == []
    alice.open_chat("Bob")
    alice.send("a message of mine")
    expect(alice.bubble("a message of mine")).to_have_attribute(
        "data-status", "delivered", timeout=WAIT_MS
    )
    assert serious_violations(alice) == []
    # The profile panel (photo and name), open over the chat.
    alice.by("open-profile").click()
    expect(alice.by("profile-panel")).to_be_visible()
    assert serious_violations(alice) == []


def test_keyboard_alone_opens_a_chat_and_sends(web: Web) -> None:
    alice = web.register(ALICE, "Alice")
    bob = web.register(BOB, "Bob")
    web.chat_between(alice, bob, "hello")
    expect(bob.by("chat-item")).to_have_count(1, timeout=WAIT_MS)
    bob.by("chat-search").fill("nobody by this name")
    expect(bob.by("chat-item")).to_have_count(0)
    bob.by("chat-search").fill("ali")
    expect(bob.by("chat-item")).to_have_count(1)
    bob.by("chat-search").focus()
    bob.page.keyboard.press("Tab")
    expect(bob.by("chat-item")).to_be_focused()
    bob.page.keyboard.press("Enter")
    expect(bob.by("chat-title")).to_have_text("Alice")
    bob.by("composer").focus()
    bob.page.keyboard.type("typed with keys")
    bob.page.keyboard.press("Enter")
    expect(alice.by("chat-item")).to_contain_text("typed with keys", timeout=WAIT_MS)


def test_phone_sized_screen_shows_one_pane_at_a_time(web: Web) -> None:
    alice = web.register(ALICE, "Alice", viewport=PHONE)
    bob = web.register(BOB, "Bob")
    web.chat_between(bob, alice, "hi on your phone")
    expect(alice.by("chat-item")).to_have_count(1, timeout=WAIT_MS)
    web.screenshot(alice, "phone-chat-list")
    alice.open_chat("Bob")
    expect(alice.by("chat-list")).to_be_hidden()
    alice.send("answered from a phone")
    expect(alice.bubble("answered from a phone")).to_have_attribute(
        "data-status", "delivered", timeout=WAIT_MS
    )
    assert alice.page.evaluate("() => document.scrollingElement.scrollWidth") <= PHONE["width"]
    web.screenshot(alice, "phone-chat")
    alice.page.get_by_role("button", name="Back to chats").click()
    expect(alice.by("chat-list")).to_be_visible()
