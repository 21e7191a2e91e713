"""Images and files from the page's file picker: progress, and the receiver gets the same bytes."""

from __future__ import annotations

import hashlib
import io
import random
import re
from pathlib import Path

import pytest
from PIL import Image
from playwright.sync_api import Locator, Request, Route, expect

from tests.web.support import WAIT_MS, Person, Web

ALICE = "+14155550121"
BOB = "+14155550122"
BLOB_URL = re.compile(r"^blob:")  # the device's own stored copy, not the thumbnail

# Set before the upload starts: whether an upload-progress bar was ever on screen.
WATCH_PROGRESS = """() => {
    window.__sawProgress = false;
    new MutationObserver(() => {
        if (document.querySelector('[data-testid="upload-progress"]')) window.__sawProgress = true;
    }).observe(document.body, {childList: true, subtree: true});
}"""

# The bytes the device stored for a shown image (its blob: URL is made from them), as
# hex SHA-256, and the decoded width. Read from IndexedDB: the CSP lets no fetch of blob:.
SHOWN_IMAGE = """async (img) => {
    await img.decode();
    const id = img.dataset.attachmentId;
    const blob = await new Promise((resolve, reject) => {
        const open = indexedDB.open("pigeon");
        open.onerror = () => reject(open.error);
        open.onsuccess = () => {
            const get = open.result.transaction("media").objectStore("media").get(id);
            get.onsuccess = () => { resolve(get.result.blob); open.result.close(); };
        };
    });
    const digest = await crypto.subtle.digest("SHA-256", await blob.arrayBuffer());
    const hex = [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, "0"));
    return {sha256: hex.join(""), width: img.naturalWidth};
}"""


def shown_image(person: Person, name: str) -> Locator:
    """The image in the timeline (the viewer holds a copy of it)."""
    return person.page.locator(f'[data-testid="message-image"][alt="{name}"]')


def a_photo() -> bytes:
    image = Image.new("RGB", (160, 120))
    for x in range(160):
        for y in range(0, 120, 3):
            image.putpixel((x, y), (x, y * 2, (x * y) % 256))
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def test_an_image_goes_through_with_progress_and_arrives_byte_for_byte(web: Web) -> None:
    alice = web.register(ALICE, "Alice")
    bob = web.register(BOB, "Bob")
    web.chat_between(alice, bob, "sending you a photo")
    alice.open_chat("Bob")
    bob.open_chat("Alice")
    photo = a_photo()

    alice.page.evaluate(WATCH_PROGRESS)
    alice.by("attach-input").set_input_files(
        files=[{"name": "garden.png", "mimeType": "image/png", "buffer": photo}]
    )
    sent = alice.by("message").filter(has=alice.page.get_by_alt_text("garden.png"))
    expect(sent).to_have_attribute("data-status", "read", timeout=WAIT_MS)
    assert alice.page.evaluate("() => window.__sawProgress") is True

    received = shown_image(bob, "garden.png")
    expect(received).to_have_attribute("src", BLOB_URL, timeout=WAIT_MS)
    assert received.evaluate(SHOWN_IMAGE) == {
        "sha256": hashlib.sha256(photo).hexdigest(),
        "width": 160,
    }
    web.screenshot(bob, "image")

    # A click opens it full size; Escape closes it, back to the chat.
    received.click()
    expect(bob.by("image-viewer")).to_be_visible()
    web.screenshot(bob, "image-viewer")
    bob.page.keyboard.press("Escape")
    expect(bob.by("image-viewer")).to_be_hidden()

    # Its Download saves the device's copy, byte for byte; its Close button closes it.
    received.click()
    viewer = bob.by("image-viewer")
    expect(viewer).to_be_visible()
    with bob.page.expect_download() as saving:
        viewer.get_by_test_id("viewer-download").click()
    saved = saving.value
    assert saved.suggested_filename == "garden.png"
    assert Path(saved.path()).read_bytes() == photo
    viewer.get_by_test_id("viewer-close").click()
    expect(viewer).to_be_hidden()

    # The image stays after a reload, from IndexedDB (the server no longer has the message).
    bob.page.reload()
    bob.open_chat("Alice")
    again = shown_image(bob, "garden.png")
    expect(again).to_have_attribute("src", BLOB_URL, timeout=WAIT_MS)
    assert again.evaluate(SHOWN_IMAGE)["sha256"] == hashlib.sha256(photo).hexdigest()


# Every file is accepted as a document unless the operator restricts the types.
@pytest.mark.parametrize(
    "server_settings", [{"PIGEON_MEDIA_ALLOWED_TYPES": '["image/*", "video/*"]'}]
)
def test_a_file_of_a_type_the_server_refuses_is_explained(web: Web) -> None:
    alice = web.register(ALICE, "Alice")
    bob = web.register(BOB, "Bob")
    web.chat_between(alice, bob, "hi")
    alice.open_chat("Bob")
    windows_program = b"MZ" + b"\x90" * 200
    alice.by("attach-input").set_input_files(
        files=[
            {"name": "setup.exe", "mimeType": "application/octet-stream", "buffer": windows_program}
        ]
    )
    expect(alice.page.get_by_role("alert")).to_contain_text("not accepted", timeout=WAIT_MS)
    expect(alice.messages()).to_have_count(1)


# A DataTransfer holding one PNG file, made in the page (as a drag or a paste would carry it).
FILES = """([bytes, name]) => {
    const data = new DataTransfer();
    data.items.add(new File([new Uint8Array(bytes)], name, {type: "image/png"}));
    return data;
}"""


def test_images_can_be_dropped_on_the_chat_or_pasted_into_the_composer(web: Web) -> None:
    alice = web.register(ALICE, "Alice")
    bob = web.register(BOB, "Bob")
    web.chat_between(alice, bob, "drop one")
    alice.open_chat("Bob")
    photo = a_photo()

    dropped = alice.page.evaluate_handle(FILES, [list(photo), "dropped.png"])
    alice.page.locator("main.chat").dispatch_event("drop", {"dataTransfer": dropped})
    pasted = alice.page.evaluate_handle(FILES, [list(photo), "pasted.png"])
    alice.by("composer").evaluate(
        """(composer, data) => composer.dispatchEvent(
            new ClipboardEvent("paste", {clipboardData: data, bubbles: true, cancelable: true}))""",
        pasted,
    )
    bob.open_chat("Alice")
    for name in ("dropped.png", "pasted.png"):
        expect(shown_image(bob, name)).to_have_attribute("src", BLOB_URL, timeout=WAIT_MS)
    expect(alice.by("composer")).to_have_value("")


# The SHA-256 of the bytes a device stored for an attachment (IndexedDB "media").
STORED_SHA256 = """async (id) => {
    const blob = await new Promise((resolve, reject) => {
        const open = indexedDB.open("pigeon");
        open.onerror = () => reject(open.error);
        open.onsuccess = () => {
            const get = open.result.transaction("media").objectStore("media").get(id);
            get.onsuccess = () => { resolve(get.result.blob); open.result.close(); };
        };
    });
    const digest = await crypto.subtle.digest("SHA-256", await blob.arrayBuffer());
    return [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, "0")).join("");
}"""


def test_a_large_file_goes_up_in_resumable_parts_and_arrives_whole(web: Web) -> None:
    alice = web.register(ALICE, "Alice")
    bob = web.register(BOB, "Bob")
    web.chat_between(alice, bob, "the report follows")
    alice.open_chat("Bob")
    bob.open_chat("Alice")
    # 9 MB: over the app's 8 MiB threshold, so three PATCH parts of /v1/uploads.
    report = b"%PDF-1.4\n" + random.Random(17).randbytes(9_000_000)
    # The connection drops during the second part: the app asks where to resume and goes on.
    parts: list[str] = []

    def drop_second_part_once(route: Route) -> None:
        request = route.request
        if request.method != "PATCH":
            route.continue_()
            return
        parts.append(request.headers["upload-offset"])
        if parts == ["0", "4194304"]:
            route.abort("connectionreset")
        else:
            route.continue_()

    alice.page.route("**/v1/uploads/*", drop_second_part_once)
    alice.by("attach-input").set_input_files(
        files=[{"name": "report.pdf", "mimeType": "application/pdf", "buffer": report}]
    )
    link = bob.by("message-file").filter(has_text="report.pdf")
    expect(link).to_have_attribute("href", BLOB_URL, timeout=WAIT_MS * 3)
    stored = bob.page.evaluate(STORED_SHA256, link.get_attribute("data-attachment-id"))
    assert stored == hashlib.sha256(report).hexdigest()
    assert parts == ["0", "4194304", "4194304", "8388608"]


def test_a_video_plays_in_the_page_from_the_stored_copy(web: Web) -> None:
    alice = web.register(ALICE, "Alice")
    bob = web.register(BOB, "Bob")
    web.chat_between(alice, bob, "a clip")
    alice.open_chat("Bob")
    bob.open_chat("Alice")
    # An MP4 header is enough for the server's sniffing; the page shows a player for it.
    clip = b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom" + bytes(2048)
    alice.by("attach-input").set_input_files(
        files=[{"name": "clip.mp4", "mimeType": "video/mp4", "buffer": clip}]
    )
    video = bob.by("message-video")
    expect(video).to_have_attribute("src", BLOB_URL, timeout=WAIT_MS)
    expect(video).to_have_attribute("aria-label", "clip.mp4")


# A real video, made in the page: a canvas recorded by MediaRecorder (WebM, VP8), green with
# a moving white square. Its bytes, as a list.
RECORD_VIDEO = """async () => {
    const canvas = document.createElement("canvas");
    canvas.width = 320;
    canvas.height = 240;
    const context = canvas.getContext("2d");
    const recorder = new MediaRecorder(canvas.captureStream(30), {mimeType: "video/webm"});
    const chunks = [];
    recorder.ondataavailable = (e) => chunks.push(e.data);
    const stopped = new Promise((resolve) => { recorder.onstop = resolve; });
    recorder.start();
    for (let frame = 0; frame < 20; frame++) {
        context.fillStyle = "rgb(30, 160, 60)";
        context.fillRect(0, 0, 320, 240);
        context.fillStyle = "#fff";
        context.fillRect(10 + frame * 5, 200, 20, 20);
        await new Promise((resolve) => setTimeout(resolve, 33));
    }
    recorder.stop();
    await stopped;
    const blob = new Blob(chunks, {type: "video/webm"});
    return Array.from(new Uint8Array(await blob.arrayBuffer()));
}"""

# The poster's size and the colour at its centre, once decoded.
POSTER = """async (img) => {
    await img.decode();
    const canvas = document.createElement("canvas");
    canvas.width = img.naturalWidth;
    canvas.height = img.naturalHeight;
    const context = canvas.getContext("2d");
    context.drawImage(img, 0, 0);
    const pixel = context.getImageData(canvas.width >> 1, canvas.height >> 1, 1, 1).data;
    const colour = [pixel[0], pixel[1], pixel[2]];
    return {width: img.naturalWidth, height: img.naturalHeight, colour};
}"""

# The video's width once it has a frame to show (it decodes and plays).
PLAYABLE = """(video) => new Promise((resolve) => {
    if (video.readyState >= 2) resolve(video.videoWidth);
    else video.addEventListener("loadeddata", () => resolve(video.videoWidth), {once: true});
})"""


def test_a_video_shows_the_poster_its_sender_made_and_plays_in_the_viewer(web: Web) -> None:
    alice = web.register(ALICE, "Alice")
    bob = web.register(BOB, "Bob")
    web.chat_between(alice, bob, "a clip of the garden")
    alice.open_chat("Bob")
    bob.open_chat("Alice")
    clip = bytes(alice.page.evaluate(RECORD_VIDEO))
    started: list[dict[str, object]] = []

    def on_request(request: Request) -> None:
        if request.method == "POST" and request.url.endswith("/v1/uploads"):
            started.append(request.post_data_json)

    alice.page.on("request", on_request)
    alice.by("attach-input").set_input_files(
        files=[{"name": "garden.webm", "mimeType": "video/webm", "buffer": clip}]
    )

    # The receiver sees the poster (a JPEG from the message, no download needed) with a play button.
    poster = bob.by("message-video-poster")
    expect(poster).to_be_visible(timeout=WAIT_MS)
    expect(poster).to_have_attribute("aria-label", "Play video garden.webm")
    image = poster.locator("img")
    expect(image).to_have_attribute("src", re.compile(r"^data:image/jpeg;base64,"))
    shown = image.evaluate(POSTER)
    assert (shown["width"], shown["height"]) == (320, 240)  # at most 320 px a side
    assert all(abs(a - b) <= 30 for a, b in zip(shown["colour"], (30, 160, 60), strict=True))
    # The sender made it and sent it with the upload, within the server's 16 KiB.
    [body] = started
    assert isinstance(body["thumbnail"], str)
    assert len(body["thumbnail"]) <= (16 * 1024 + 2) // 3 * 4
    expect(alice.by("message-video-poster")).to_be_visible()
    web.screenshot(bob, "video")

    # A click opens the viewer, which plays the device's own copy; Escape closes it.
    poster.click()
    viewer = bob.by("video-viewer")
    expect(viewer).to_be_visible()
    video = viewer.get_by_test_id("message-video")
    expect(video).to_have_attribute("src", BLOB_URL, timeout=WAIT_MS)
    assert video.evaluate(PLAYABLE) == 320
    bob.page.keyboard.press("Escape")
    expect(viewer).to_be_hidden()

    # The same Download and Close as the image viewer's.
    poster.click()
    expect(viewer).to_be_visible()
    with bob.page.expect_download() as saving:
        viewer.get_by_test_id("viewer-download").click()
    assert saving.value.suggested_filename == "garden.webm"
    assert Path(saving.value.path()).read_bytes() == clip
    viewer.get_by_test_id("viewer-close").click()
    expect(viewer).to_be_hidden()
