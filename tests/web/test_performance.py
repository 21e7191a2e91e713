"""The figures of issue 17: bundle size, first load, opening a chat of 10,000 stored messages.

Each is printed and written to ``test-artifacts/web/performance.json``
(docs/performance.md quotes them). The bounds are the issue's, with room for
a loaded 2-core machine where noted.
"""

from __future__ import annotations

import gzip
import json
import re
import time
from pathlib import Path

from playwright.sync_api import expect

from pigeon.web import STATIC_DIR
from tests.web.conftest import ARTIFACTS
from tests.web.support import WAIT_MS, Web

ALICE = "+14155550151"
BOB = "+14155550152"
MAX_GZIPPED_JS = 250 * 1024
STORED = 10_000
# Bubbles in the DOM at once: the rows on a screen and a few around, never the whole chat.
MAX_DRAWN = 100

# Click the chat and time, in the page, until the frame that shows ``text`` on screen
# (Playwright's own polling of expect() would round the figure up to its intervals).
OPEN_AND_TIME = """async (text) => {
    const started = performance.now();
    document.querySelector('[data-testid="chat-item"]').click();
    for (;;) {
        await new Promise((resolve) => requestAnimationFrame(resolve));
        const shown = [...document.querySelectorAll('[data-testid="message"]')].find((m) => {
            const box = m.getBoundingClientRect();
            return m.textContent.includes(text) && box.height > 0
                && box.top >= 0 && box.bottom <= window.innerHeight;
        });
        if (shown) return performance.now() - started;
        if (performance.now() - started > 10000) throw new Error(`${text} never shown`);
    }
}"""

# One poll: scroll the timeline to its top (rows measured on the way move it), and say
# whether the chat's first message is drawn there.
SCROLLED_TO_FIRST = """() => {
    const timeline = document.querySelector('[data-testid="timeline"]');
    timeline.scrollTop = 0;
    return timeline.scrollTop === 0
        && document.querySelector('[data-message-id="seed-1"]') !== null;
}"""

# 10,000 messages of the chat in this device's IndexedDB, as if received over months;
# their seqs from ``first`` (default: after the few the test's server sends).
SEED = """async ([chatId, sender, count, first = 1001]) => {
    const db = await new Promise((resolve, reject) => {
        const open = indexedDB.open("pigeon");
        open.onerror = () => reject(open.error);
        open.onsuccess = () => resolve(open.result);
    });
    const tx = db.transaction("messages", "readwrite");
    const store = tx.objectStore("messages");
    for (let i = 1; i <= count; i++) {
        store.put({
            key: `seed-${i}`, chatId, messageId: `seed-${i}`, clientMessageId: null,
            seq: first + i - 1, order: first + i - 1, kind: "text", senderId: sender,
            text: `stored message ${i}`,
            attachments: [], createdAt: new Date(Date.UTC(2026, 0, 1, 0, 0, i)).toISOString(),
            own: false, sent: true,
        });
    }
    await new Promise((resolve, reject) => { tx.oncomplete = resolve; tx.onerror = reject; });
    db.close();
}"""


def record(name: str, value: float) -> None:
    path = ARTIFACTS / "performance.json"
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    figures = json.loads(path.read_text()) if path.exists() else {}
    figures[name] = round(value, 1)
    path.write_text(json.dumps(figures, indent=2))
    print(f"{name}: {value:.1f}")


def test_the_javascript_gzipped_stays_under_250_kb() -> None:
    scripts = list((STATIC_DIR / "assets").glob("*.js"))
    assert scripts, "the web client is not built: make web"
    size = sum(len(gzip.compress(Path(s).read_bytes(), 9)) for s in scripts)
    record("gzipped_js_kb", size / 1024)
    assert size < MAX_GZIPPED_JS


def test_first_load_and_a_chat_of_ten_thousand_stored_messages(web: Web) -> None:
    alice = web.register(ALICE, "Alice")
    bob = web.register(BOB, "Bob")
    chat_id = web.chat_between(bob, alice, "the newest one")
    expect(alice.by("chat-item")).to_have_count(1, timeout=WAIT_MS)

    # First load of a logged-in profile on loopback, to the chat list on screen.
    page = alice.context.new_page()
    started = time.perf_counter()
    page.goto("/")
    expect(page.get_by_test_id("chat-item")).to_be_visible(timeout=WAIT_MS)
    first_load_ms = (time.perf_counter() - started) * 1000
    record("first_load_ms", first_load_ms)
    page.close()
    assert first_load_ms < 2000  # 1 s on an idle machine; room for a shared CI core

    alice.page.evaluate(SEED, [chat_id, bob.user_id, STORED])
    alice.page.reload()
    expect(alice.by("chat-item")).to_have_count(1, timeout=WAIT_MS)
    started = time.perf_counter()
    open_ms = alice.page.evaluate(OPEN_AND_TIME, "stored message 10000")
    record("open_chat_10000_ms", open_ms)
    expect(alice.bubble("stored message 10000")).to_be_in_viewport()
    # The newest are on screen, and only the rows on screen (and a few around) are drawn.
    assert alice.messages().count() < MAX_DRAWN
    assert open_ms < 1000  # 300 ms on an idle machine

    # Scrolled to the top, through all 10,000: the first message, still a handful of rows.
    alice.page.wait_for_function(SCROLLED_TO_FIRST, polling=100, timeout=WAIT_MS * 2)
    # From the click: the older 9,800 are read in the background after the first frames.
    record("first_message_reached_ms", (time.perf_counter() - started) * 1000)
    first = alice.page.locator('[data-message-id="seed-1"]')
    expect(first).to_contain_text(re.compile(r"stored message 1(?!\d)"))
    expect(first).to_be_in_viewport()
    drawn = alice.messages().count()
    record("bubbles_in_dom_at_top", drawn)
    assert drawn < MAX_DRAWN
    expect(alice.bubble("stored message 10000")).to_have_count(0)
