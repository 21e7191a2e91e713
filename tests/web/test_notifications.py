"""Notifications: asked for on a click only, shown for messages while the tab is hidden."""

from __future__ import annotations

from playwright.sync_api import expect

from tests.web.support import WAIT_MS, Web

ALICE = "+14155550171"
BOB = "+14155550172"

# The operating system's notifications are the edge of the outside world: a recorder
# stands in for them, and the test decides whether the tab is hidden.
RECORDER = """
window.__notifications = [];
window.__permissionAsked = 0;
let permission = "default";
window.Notification = class {
    constructor(title, options) { window.__notifications.push({title, body: options.body}); }
    static get permission() { return permission; }
    static requestPermission() {
        window.__permissionAsked += 1;
        permission = "granted";
        return Promise.resolve(permission);
    }
};
Object.defineProperty(document, "hidden", {get: () => window.__hidden === true});
"""


def test_permission_is_asked_on_a_click_and_hidden_tabs_notify(web: Web) -> None:
    alice = web.register(ALICE, "Alice", init_script=RECORDER)
    bob = web.register(BOB, "Bob")
    assert alice.page.evaluate("() => window.__permissionAsked") == 0  # not on load
    alice.by("enable-notifications").click()
    expect(alice.by("enable-notifications")).to_have_count(0)
    assert alice.page.evaluate("() => window.__permissionAsked") == 1

    web.chat_between(bob, alice, "while you look")
    expect(alice.by("chat-item")).to_contain_text("while you look", timeout=WAIT_MS)
    alice.page.evaluate("() => { window.__hidden = true; }")
    bob.open_chat("Alice")
    bob.send("while you are away")
    expect(alice.by("chat-item")).to_contain_text("while you are away", timeout=WAIT_MS)
    assert alice.page.evaluate("() => window.__notifications") == [
        {"title": "Bob", "body": "while you are away"}
    ]
    expect(alice.page).to_have_title("(2) Pigeon")
