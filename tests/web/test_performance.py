"""The figures of issue 17: bundle size, first load, opening a chat of 10,000 stored messages.

Each is printed and written to ``test-artifacts/web/performance.json``
(docs/performance.md quotes them). The bounds are the issue's, with room for
a loaded 2-core machine where noted.
"""

from __future__ import annotations

import gzip
import json
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

# 10,000 messages of the chat in this device's IndexedDB, as if received over months.
SEED = """async ([chatId, sender, count]) => {
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
            seq: 1000 + i, order: 1000 + i, kind: "text", senderId: sender,
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
    alice.by("chat-item").click()
    expect(alice.bubble("stored message 10000")).to_be_visible(timeout=WAIT_MS)
    open_ms = (time.perf_counter() - started) * 1000
    record("open_chat_10000_ms", open_ms)
    # The newest are on screen; the page drew a window of them, not all 10,000.
    shown = alice.messages().count()
    assert shown < 1000
    assert open_ms < 1000  # 300 ms on an idle machine
    alice.by("show-earlier").click()
    expect(alice.messages()).to_have_count(shown + 200, timeout=WAIT_MS)
