"""Profile photos in the app: set at sign-up or later, changed, removed; the other side sees them.

Photos are fetched with the token in the Authorization header (never in a URL)
and shown from blob: URLs; without one, an avatar shows initials.
"""

from __future__ import annotations

import io
import re
from typing import Any

from PIL import Image
from playwright.sync_api import Locator, Request, expect

from tests.web.support import WAIT_MS, Person, Web

ALICE = "+14155550161"
BOB = "+14155550162"
BLOB_URL = re.compile(r"^blob:")
RED = (210, 40, 40)
BLUE = (30, 70, 210)

# The colour at the centre of a shown <img> (the page may read its own blob: images).
CENTRE_COLOUR = """async (img) => {
    await img.decode();
    const canvas = document.createElement("canvas");
    canvas.width = img.naturalWidth;
    canvas.height = img.naturalHeight;
    const context = canvas.getContext("2d");
    context.drawImage(img, 0, 0);
    const pixel = context.getImageData(canvas.width >> 1, canvas.height >> 1, 1, 1).data;
    return [pixel[0], pixel[1], pixel[2]];
}"""


def a_photo(colour: tuple[int, int, int]) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (240, 240), colour).save(out, "PNG")
    return out.getvalue()


def assert_shows(avatar: Locator, colour: tuple[int, int, int]) -> None:
    """The avatar shows a photo (a blob: URL) of about ``colour`` (JPEG moves it a little)."""
    expect(avatar).to_have_attribute("data-photo", "yes", timeout=WAIT_MS)
    image = avatar.locator("img")
    expect(image).to_have_attribute("src", BLOB_URL)
    shown: list[int] = image.evaluate(CENTRE_COLOUR)
    assert all(abs(a - b) <= 12 for a, b in zip(shown, colour, strict=True)), shown


def chat_avatar(person: Person) -> Locator:
    return person.by("chat-item").first.get_by_test_id("avatar")


def header_avatar(person: Person) -> Locator:
    return person.by("chat-avatar").get_by_test_id("avatar")


def watch_photo_requests(person: Person) -> list[Request]:
    seen: list[Request] = []
    person.page.on("request", lambda r: "/photo" in r.url and seen.append(r))
    return seen


def test_a_photo_set_at_sign_up_shows_in_the_other_sides_chat_list_and_header(web: Web) -> None:
    alice = web.register(ALICE, "Alice", photo=a_photo(RED))
    assert_shows(alice.by("open-profile").get_by_test_id("avatar"), RED)
    bob = web.person(BOB, "Bob")
    requests = watch_photo_requests(bob)
    web.log_in(bob)
    # Bob has none: his avatar shows his initial, in his own header and in Alice's list.
    expect(bob.by("open-profile").get_by_test_id("avatar")).to_have_attribute("data-photo", "no")
    web.chat_between(alice, bob, "hello, it's me")

    assert_shows(chat_avatar(bob), RED)
    bob.open_chat("Alice")
    assert_shows(header_avatar(bob), RED)
    web.screenshot(bob, "photos")
    alice.open_chat("Bob")
    expect(header_avatar(alice)).to_have_attribute("data-photo", "no")
    expect(header_avatar(alice)).to_have_text("B")

    # Fetched with the token in the header, never in the URL.
    assert requests, "no photo was fetched"
    for request in requests:
        headers: dict[str, Any] = request.all_headers()
        assert headers["authorization"].startswith("Bearer ")
        assert "token" not in request.url.lower()
        assert "pga_" not in request.url

    # After a reload the photo comes from the device's own copy at once.
    bob.page.reload()
    assert_shows(chat_avatar(bob), RED)


def test_a_photo_changed_or_removed_later_reaches_the_other_side(web: Web) -> None:
    alice = web.register(ALICE, "Alice")
    bob = web.register(BOB, "Bob")
    web.chat_between(alice, bob, "hello")
    expect(chat_avatar(bob)).to_have_attribute("data-photo", "no", timeout=WAIT_MS)
    expect(chat_avatar(bob)).to_have_text("A")

    # Alice sets one from her profile panel.
    alice.by("open-profile").click()
    panel = alice.by("profile-panel")
    expect(panel).to_be_visible()
    alice.by("profile-photo-input").set_input_files(
        files=[{"name": "blue.png", "mimeType": "image/png", "buffer": a_photo(BLUE)}]
    )
    assert_shows(panel.get_by_test_id("avatar"), BLUE)
    web.screenshot(alice, "profile")

    # Bob's app reads a profile again when its chat is opened (no event says it changed),
    # at most every five minutes in one page: it read Alice's when her chat arrived, so
    # here it is the next page load that opens the chat and reads it again.
    bob.page.reload()
    bob.open_chat("Alice")
    assert_shows(header_avatar(bob), BLUE)
    assert_shows(chat_avatar(bob), BLUE)

    # Alice removes it; Bob's next page load reads the profile again on opening the chat.
    alice.by("remove-photo").click()
    expect(panel.get_by_test_id("avatar")).to_have_attribute("data-photo", "no", timeout=WAIT_MS)
    expect(alice.by("remove-photo")).to_have_count(0)
    alice.page.keyboard.press("Escape")
    expect(panel).to_be_hidden()
    bob.page.reload()
    bob.open_chat("Alice")
    expect(header_avatar(bob)).to_have_attribute("data-photo", "no", timeout=WAIT_MS)
    expect(header_avatar(bob)).to_have_text("A")
    expect(chat_avatar(bob)).to_have_attribute("data-photo", "no")


def test_a_file_that_is_not_an_image_is_refused_as_a_photo(web: Web) -> None:
    alice = web.register(ALICE, "Alice")
    alice.by("open-profile").click()
    alice.by("profile-photo-input").set_input_files(
        files=[{"name": "notes.pdf", "mimeType": "application/pdf", "buffer": b"%PDF-1.4\n%x\n"}]
    )
    expect(alice.by("profile-panel").get_by_role("alert")).to_contain_text(
        "application/pdf", timeout=WAIT_MS
    )
    expect(alice.by("profile-panel").get_by_test_id("avatar")).to_have_attribute("data-photo", "no")
