"""What the browser enforces: text stays text, the CSP holds, the login page never shows a code."""

from __future__ import annotations

import httpx
from playwright.sync_api import expect

from tests.web.support import WAIT_MS, Web

ALICE = "+14155550111"
BOB = "+14155550112"

HOSTILE = [
    '<img src=x onerror="window.__pwned = 1">',
    "<script>window.__pwned = 2</script>",
    "**bold** _it_ [link](javascript:window.__pwned=3) <b>b</b> &amp; 😀",
]


def test_message_markup_is_shown_as_text_and_nothing_runs(web: Web) -> None:
    alice = web.register(ALICE, "Alice")
    bob = web.register(BOB, "Bob")
    web.chat_between(alice, bob, "hi")
    bob.open_chat("Alice")
    alice.open_chat("Bob")
    for text in HOSTILE:
        bob.send(text)
    for text in HOSTILE:
        bubble = alice.by("message").locator(".text").filter(has_text=text)
        expect(bubble).to_have_text(text, timeout=WAIT_MS)
    timeline = alice.page.locator(".timeline")
    expect(timeline.locator("img, script, b, a[href^='javascript']")).to_have_count(0)
    assert alice.page.evaluate("() => window.__pwned") is None
    # The chat list's preview is text too.
    expect(alice.by("chat-item").first).to_contain_text("**bold**")
    assert alice.page.evaluate("() => window.__pwned") is None


def test_login_page_says_where_the_code_is_never_the_code(web: Web) -> None:
    person = web.person(ALICE, "Alice")
    web.screenshot(person, "login")
    person.by("phone-input").fill(ALICE)
    person.by("request-code").click()
    hint = person.by("code-hint")
    expect(hint).to_contain_text(str(web.outbox.path.resolve()), timeout=WAIT_MS)
    code = web.outbox.last_code(ALICE)
    assert code not in person.page.locator("body").inner_text()
    web.screenshot(person, "login-code")


def test_the_app_is_served_with_a_strict_policy(web: Web) -> None:
    page = httpx.get(web.url + "/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    policy = page.headers["content-security-policy"]
    directives = {}
    for part in policy.split(";"):
        name, _, value = part.strip().partition(" ")
        directives[name] = value
    assert directives["default-src"] == "'self'"
    assert directives["script-src"] == "'self'"  # no 'unsafe-inline', no 'unsafe-eval'
    assert directives["frame-ancestors"] == "'none'"
    host = web.url.removeprefix("http://")
    assert directives["connect-src"] == f"'self' ws://{host} wss://{host}"
    assert page.headers["x-content-type-options"] == "nosniff"
    assert "<script>" not in page.text  # the only script is a file: /assets/...
    asset = page.text.split('src="', 1)[1].split('"', 1)[0]
    script = httpx.get(web.url + asset)
    assert script.headers["content-type"].startswith("text/javascript")
    assert script.headers["content-security-policy"] == policy
    assert script.headers["x-content-type-options"] == "nosniff"
    # The API keeps its own answers: an unknown path under /v1 is still a JSON 404.
    missing = httpx.get(web.url + "/v1/nothing-here")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"]


def test_logout_revokes_the_device_and_forgets_its_history(web: Web) -> None:
    alice = web.register(ALICE, "Alice")
    bob = web.register(BOB, "Bob")
    web.chat_between(alice, bob, "something private")
    expect(bob.by("chat-item")).to_contain_text("something private", timeout=WAIT_MS)
    token = bob.session()["accessToken"]
    bob.by("logout").click()
    expect(bob.by("phone-input")).to_be_visible(timeout=WAIT_MS)
    assert bob.session() is None  # IndexedDB was wiped with the history
    assert "something private" not in bob.page.content()
    me = httpx.get(web.url + "/v1/me", headers={"Authorization": f"Bearer {token}"})
    assert me.status_code == 401


def test_an_expired_access_token_is_refreshed_without_logging_out(web: Web) -> None:
    alice = web.register(ALICE, "Alice")
    bob = web.register(BOB, "Bob")
    web.chat_between(alice, bob, "before")
    old = bob.session()
    # As if the access token had expired: the server refuses it, the refresh token still works.
    bob.page.evaluate(
        """() => new Promise((resolve) => {
            const open = indexedDB.open("pigeon");
            open.onsuccess = () => {
                const tx = open.result.transaction("kv", "readwrite");
                const kv = tx.objectStore("kv");
                kv.get("session").onsuccess = (e) => {
                    kv.put({...e.target.result, accessToken: "pga_expired"}, "session");
                };
                tx.oncomplete = () => { open.result.close(); resolve(null); };
            };
        })"""
    )
    bob.page.reload()
    expect(bob.by("connection-status")).to_have_attribute("data-state", "online", timeout=WAIT_MS)
    fresh = bob.session()
    assert fresh["accessToken"] not in (old["accessToken"], "pga_expired")
    assert fresh["refreshToken"] != old["refreshToken"]
    bob.open_chat("Alice")
    bob.send("after the refresh")
    expect(bob.bubble("after the refresh")).to_have_attribute(
        "data-status", "delivered", timeout=WAIT_MS
    )


def test_a_second_tab_takes_over_and_the_first_offers_to_come_back(web: Web) -> None:
    alice = web.register(ALICE, "Alice")
    second = alice.context.new_page()
    second.goto("/")
    expect(second.get_by_test_id("chat-list")).to_be_visible(timeout=WAIT_MS)
    expect(alice.page.get_by_text("Pigeon is open in another tab.")).to_be_visible(timeout=WAIT_MS)
    alice.page.get_by_role("button", name="Use here").click()
    expect(alice.by("connection-status")).to_have_attribute("data-state", "online", timeout=WAIT_MS)
    expect(second.get_by_text("Pigeon is open in another tab.")).to_be_visible(timeout=WAIT_MS)
