"""The virtualised timeline as a reader notices it: it follows new messages at the bottom,
and stays put while they read above."""

from __future__ import annotations

from playwright.sync_api import expect

from tests.web.support import WAIT_MS, Person, Web
from tests.web.test_performance import SEED

ALICE = "+14155550171"
BOB = "+14155550172"

# The first message whose top is inside the timeline: its id and its top on screen.
TOP_ROW = """() => {
    const timeline = document.querySelector('[data-testid="timeline"]');
    const top = timeline.getBoundingClientRect().top;
    const rows = [...timeline.querySelectorAll('[data-testid="message"]')]
        .map((row) => [row.dataset.messageId, row.getBoundingClientRect().top])
        .filter(([, y]) => y >= top)
        .sort((a, b) => a[1] - b[1]);
    return rows[0];
}"""

# One poll: whether the top row stayed where it was since the last poll (rows measured
# after a scroll may move it once).
SETTLED = """() => {
    const timeline = document.querySelector('[data-testid="timeline"]');
    const now = JSON.stringify([timeline.scrollTop, timeline.scrollHeight]);
    const same = window.__lastLayout === now;
    window.__lastLayout = now;
    return same;
}"""


def at_bottom(person: Person) -> bool:
    result: bool = person.by("timeline").evaluate(
        "(t) => t.scrollHeight - t.scrollTop - t.clientHeight <= 2"
    )
    return result


def test_new_messages_are_followed_at_the_bottom_and_leave_a_reader_above_in_place(
    web: Web,
) -> None:
    alice = web.register(ALICE, "Alice")
    bob = web.register(BOB, "Bob")
    chat_id = web.chat_between(bob, alice, "hello")
    expect(alice.by("chat-item")).to_have_count(1, timeout=WAIT_MS)
    # Stored before the chat's real messages (seq 1 on), so new ones come after them.
    alice.page.evaluate(SEED, [chat_id, bob.user_id, 2000, -3000])
    alice.page.reload()
    alice.open_chat("Bob")
    bob.open_chat("Alice")
    expect(alice.bubble("hello")).to_be_in_viewport(timeout=WAIT_MS)

    # At the bottom: a new message shows, and the timeline is still at the bottom.
    bob.send("a fresh one")
    expect(alice.bubble("a fresh one")).to_be_in_viewport(timeout=WAIT_MS)
    alice.page.wait_for_function(SETTLED, polling=100)
    assert at_bottom(alice)

    # Reading above: the rows on screen stay where they are when another arrives.
    alice.by("timeline").evaluate("(t) => { t.scrollTop = t.scrollHeight / 2; }")
    alice.page.wait_for_function(SETTLED, polling=100)
    reading, top = alice.page.evaluate(TOP_ROW)
    bob.send("while you read")
    expect(alice.by("chat-item")).to_contain_text("while you read", timeout=WAIT_MS)
    alice.page.wait_for_function(SETTLED, polling=100)
    assert alice.page.evaluate(TOP_ROW) == [reading, top]
    expect(alice.bubble("while you read")).to_have_count(0)  # below, not drawn
    assert not at_bottom(alice)

    # Back at the bottom, it is there.
    alice.by("timeline").evaluate("(t) => { t.scrollTop = t.scrollHeight; }")
    expect(alice.bubble("while you read")).to_be_in_viewport(timeout=WAIT_MS)

    # One's own message always brings the timeline to the bottom.
    alice.by("timeline").evaluate("(t) => { t.scrollTop = 0; }")
    alice.send("my answer")
    expect(alice.bubble("my answer")).to_be_in_viewport(timeout=WAIT_MS)


# Holds back the end of every write of the chats store alone (how the app saves a chat)
# until ``window.__releaseChats()``: a message's event is then stored, but its handler
# waits in the chat's save, as it does for a moment on a busy machine.
HOLD_CHAT_SAVES = """() => {
    let release;
    window.__chatsHeld = new Promise((resolve) => { release = resolve; });
    window.__releaseChats = () => release();
    const add = EventTarget.prototype.addEventListener;
    IDBTransaction.prototype.addEventListener = function (type, listener, options) {
        const held = type === "complete" && this.mode === "readwrite"
            && this.objectStoreNames.length === 1 && this.objectStoreNames[0] === "chats";
        const call = held
            ? (event) => window.__chatsHeld.then(() => listener.call(this, event))
            : listener;
        return add.call(this, type, call, options);
    };
}"""

# Whether this device has stored a message with this text (IndexedDB "messages").
STORED = """(text) => new Promise((resolve, reject) => {
    const open = indexedDB.open("pigeon");
    open.onerror = () => reject(open.error);
    open.onsuccess = () => {
        const all = open.result.transaction("messages").objectStore("messages").getAll();
        all.onsuccess = () => {
            resolve(all.result.some((m) => m.text === text));
            open.result.close();
        };
    };
})"""


def test_a_message_arriving_while_its_chat_opens_is_shown_once(web: Web) -> None:
    alice = web.register(ALICE, "Alice")
    bob = web.register(BOB, "Bob")
    web.chat_between(alice, bob, "hello")
    expect(bob.by("chat-item").filter(has_text="hello")).to_have_count(1, timeout=WAIT_MS)
    alice.open_chat("Bob")

    # The message is stored on Bob's device while he opens the chat: the chat's first
    # page, read from the store, already has it when its event's handler goes on.
    bob.page.evaluate(HOLD_CHAT_SAVES)
    alice.send("just in time")
    bob.page.wait_for_function(STORED, arg="just in time", timeout=WAIT_MS)
    bob.open_chat("Alice")
    expect(bob.bubble("just in time")).to_have_count(1, timeout=WAIT_MS)
    bob.page.evaluate("() => window.__releaseChats()")

    # The handler has finished once Bob's read mark reached Alice (it marks the chat
    # read after showing the message); the message is still on Bob's screen once.
    sent = alice.bubble("just in time")
    expect(sent).to_have_attribute("data-status", "read", timeout=WAIT_MS)
    expect(bob.bubble("just in time")).to_have_count(1)
    expect(bob.messages()).to_have_count(2)
