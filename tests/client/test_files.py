"""Files through the SDK and ``pigeon chat``: upload, send, receive, download, resume.

Everything runs against the live server on both databases. Network failures
are made by a cuttable proxy (``tests/client/proxy.py``) or by an httpx
transport that breaks a response stream, so the SDK sees real transport errors.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import random
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from pigeon.cli import chat as chat_cli
from pigeon.client import (
    ApiError,
    Attachment,
    CommandError,
    MessageEvent,
    PigeonClient,
    ReceiptEvent,
    Session,
)
from tests.client.conftest import OpenDevice, Register
from tests.client.proxy import Proxy
from tests.client.test_cli_chat import (  # noqa: F401 (fixtures)
    Pipe,
    narrow_console,
    pigeon_chat,
    server_logs_apart,
    streaming_input,
)
from tests.client.test_cli_chat import pipe as pipe  # a fixture
from tests.live import LiveServer

KiB = 1024


# -- helpers ---------------------------------------------------------------------------


def make_png(path: Path, width: int = 64, height: int = 48) -> Path:
    image = Image.new("RGB", (width, height))
    image.putdata(
        [((x * 4) % 256, (y * 5) % 256, (x * y) % 256) for y in range(height) for x in range(width)]
    )
    image.save(path, "PNG")
    return path


def make_text(path: Path, size: int, seed: int = 7) -> Path:
    """``size`` bytes of ASCII text (the server accepts text/plain), different per seed."""
    rng = random.Random(seed)
    alphabet = "abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789\n"
    path.write_text("".join(rng.choices(alphabet, k=size)), "ascii")
    return path


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    status: int | None = None


class _Stream(httpx.AsyncByteStream):
    def __init__(self, chunks: AsyncIterator[bytes], close: Callable[[], Any]) -> None:
        self._chunks = chunks
        self._close = close

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._chunks:
            yield chunk

    async def aclose(self) -> None:
        await self._close()


class Network(httpx.AsyncBaseTransport):
    """A real transport that records every request and can break some on purpose.

    ``cut_patch`` (n): the n-th PATCH cuts the proxy after its first block of body.
    ``break_download`` (n): the first n downloads end after their first chunk
    with a ``ReadError``, as if the connection dropped mid-file.
    """

    def __init__(self, proxy: Proxy | None = None) -> None:
        self._inner = httpx.AsyncHTTPTransport()
        self.proxy = proxy
        self.seen: list[Seen] = []
        self.cut_patch = 0
        self.break_download = 0
        self._patches = 0

    def calls(self, method: str, prefix: str = "") -> list[Seen]:
        return [s for s in self.seen if s.method == method and s.path.startswith(prefix)]

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        seen = Seen(request.method, request.url.path, dict(request.headers))
        self.seen.append(seen)
        if request.method == "PATCH":
            self._patches += 1
            if self._patches == self.cut_patch:
                request.stream = self._cut_after_first_block(request)
        response = await self._inner.handle_async_request(request)
        seen.status = response.status_code
        if (
            request.method == "GET"
            and request.url.path.startswith("/v1/attachments/")
            and self.break_download > 0
            and response.status_code in (200, 206)
        ):
            self.break_download -= 1
            return httpx.Response(
                response.status_code,
                headers=response.headers,
                stream=_Stream(self._first_chunk_then_fail(response), response.aclose),
                extensions=response.extensions,
            )
        return response

    def _cut_after_first_block(self, request: httpx.Request) -> _Stream:
        body = request.stream
        assert isinstance(body, httpx.AsyncByteStream)
        proxy = self.proxy
        assert proxy is not None

        async def chunks() -> AsyncIterator[bytes]:
            first = True
            async for chunk in body:
                yield chunk
                if first:
                    first = False
                    await asyncio.sleep(0.05)  # let the block reach the server
                    proxy.cut()
                    await asyncio.sleep(0.05)

        async def close() -> None:
            await body.aclose()

        return _Stream(chunks(), close)

    @staticmethod
    async def _first_chunk_then_fail(response: httpx.Response) -> AsyncIterator[bytes]:
        # The server still sends the whole file (hanging up on it mid-file makes it
        # leak a file handle: see the report), but the SDK only sees the first chunk.
        assert isinstance(response.stream, httpx.AsyncByteStream)
        first = True
        async for chunk in response.stream:
            if first:
                first = False
                yield chunk
        await response.aclose()
        raise httpx.ReadError("the connection dropped (test)")

    async def aclose(self) -> None:
        await self._inner.aclose()


async def chat_between(open_device: OpenDevice, alice: Session, bob: Session) -> str:
    device = await open_device(alice, read=False)
    return (await device.conn.create_chat([bob.user_id])).chat_id


async def until_gone(sdk: PigeonClient, session: Session, attachment_id: str, dest: Path) -> None:
    """Wait until the server refuses ``session`` the attachment (its message was deleted)."""
    async with asyncio.timeout(10):
        while True:
            try:
                await sdk.download_attachment(session, attachment_id, dest, resume=False)
            except ApiError as exc:
                error = exc
                break
            await asyncio.sleep(0.05)
    assert (error.status, error.code) == (404, "attachment_not_found")


# -- the SDK ---------------------------------------------------------------------------


async def test_an_image_and_a_resumable_upload_reach_the_receiver_byte_for_byte(
    server: LiveServer,
    sdk: PigeonClient,
    register: Register,
    open_device: OpenDevice,
    tmp_path: Path,
) -> None:
    alice_session, bob_session = await register(), await register()
    alice = await open_device(alice_session)
    bob = await open_device(bob_session, read=False)  # this test reads bob's events itself
    chat = await alice.conn.create_chat([bob_session.user_id])
    photo = make_png(tmp_path / "photo.png")
    notes = make_text(tmp_path / "notes.txt", 1_200_000)

    network = Network()
    async with PigeonClient(server.http_url, transport=network) as http:
        image = await http.upload_file(alice_session, photo, resumable_over=256 * KiB)
        big = await http.upload_file(
            alice_session, notes, resumable_over=256 * KiB, chunk_size=256 * KiB
        )

    # The image went in one request, with its hash and name; the big file in parts.
    [post] = network.calls("POST", "/v1/attachments")
    assert post.headers["x-content-sha256"] == sha256(photo)
    assert post.headers["x-file-name"] == "photo.png"
    assert post.status == 201
    assert [s.status for s in network.calls("POST", "/v1/uploads")] == [201]
    patches = network.calls("PATCH", "/v1/uploads/")
    assert [int(s.headers["upload-offset"]) for s in patches] == [n * 256 * KiB for n in range(5)]
    assert image.mime_type == "image/png"
    assert (image.size, image.file_name, image.width, image.height) == (
        photo.stat().st_size,
        "photo.png",
        64,
        48,
    )
    assert image.is_image
    assert image.thumbnail is not None
    assert image.thumbnail.startswith(b"\xff\xd8")  # a JPEG
    assert (big.mime_type, big.size, big.file_name) == ("text/plain", 1_200_000, "notes.txt")
    assert (big.width, big.height, big.thumbnail) == (None, None, None)

    sent = await alice.conn.send_message(
        chat.chat_id, "holiday", attachments=[image, big.attachment_id]
    )
    inbox = tmp_path / "bob"
    inbox.mkdir()
    async with asyncio.timeout(30):
        async for event in bob.conn.events():
            if not isinstance(event, MessageEvent):
                continue
            assert (event.message_id, event.text) == (sent.message_id, "holiday")
            assert event.attachments == (image, big)
            # The message is acked only when the loop asks for the next event,
            # so there is all the time to download here.
            await asyncio.sleep(0.3)
            for attachment in event.attachments:
                saved = await sdk.download_attachment(
                    bob_session, attachment.attachment_id, inbox / attachment.file_name
                )
                assert saved == inbox / attachment.file_name
            break

    assert (inbox / "photo.png").read_bytes() == photo.read_bytes()
    assert sha256(inbox / "notes.txt") == sha256(notes)
    assert sorted(p.name for p in inbox.iterdir()) == ["notes.txt", "photo.png"]  # no .part left

    # Closing acks the message handed out; the server deletes it, and with it
    # bob's access to the files.
    await bob.conn.close()
    await until_gone(sdk, bob_session, image.attachment_id, tmp_path / "late.png")


async def test_an_upload_resumes_from_the_servers_offset_after_the_connection_is_cut(
    proxy: Proxy, sdk: PigeonClient, register: Register, tmp_path: Path
) -> None:
    alice = await register()
    notes = make_text(tmp_path / "notes.txt", 1_500_000, seed=11)
    network = Network(proxy)
    network.cut_patch = 2  # the second part dies halfway
    async with PigeonClient(proxy.http_url, transport=network) as http:
        attachment = await http.upload_file(
            alice, notes, resumable_over=KiB, chunk_size=512 * KiB, retry_delay=0.05
        )

    assert attachment.size == 1_500_000
    offsets = [int(s.headers["upload-offset"]) for s in network.calls("PATCH")]
    # Part two was cut, the SDK asked the server where it stood, and sent part two again.
    assert offsets == [0, 512 * KiB, 512 * KiB, 1024 * KiB]
    statuses = network.calls("GET", "/v1/uploads/")
    assert [s.status for s in statuses] == [200]
    assert proxy.accepted >= 2  # a new connection after the cut
    # The server has exactly the file.
    copy = tmp_path / "copy.txt"
    await sdk.download_attachment(alice, attachment.attachment_id, copy)
    assert sha256(copy) == sha256(notes)


async def test_resume_upload_finishes_an_upload_started_elsewhere(
    sdk: PigeonClient, register: Register, tmp_path: Path, client: httpx.AsyncClient
) -> None:
    alice = await register()
    notes = make_text(tmp_path / "notes.txt", 700_000, seed=3)
    auth = {"Authorization": f"Bearer {alice.access_token}"}
    # Another process started the upload and sent one part before it died.
    started = await client.post(
        "/v1/uploads",
        json={"size": 700_000, "sha256": sha256(notes), "fileName": "notes.txt"},
        headers=auth,
    )
    assert started.status_code == 201, started.text
    upload_id = started.json()["uploadId"]
    part = await client.patch(
        f"/v1/uploads/{upload_id}",
        content=notes.read_bytes()[:300_000],
        headers={**auth, "Upload-Offset": "0"},
    )
    assert part.json()["offset"] == 300_000

    status = await sdk.upload_status(alice, upload_id)
    assert (status.upload_id, status.size, status.offset) == (upload_id, 700_000, 300_000)
    attachment = await sdk.resume_upload(alice, upload_id, notes, chunk_size=128 * KiB)
    assert (attachment.size, attachment.file_name, attachment.mime_type) == (
        700_000,
        "notes.txt",
        "text/plain",
    )
    copy = tmp_path / "copy.txt"
    await sdk.download_attachment(alice, attachment.attachment_id, copy)
    assert copy.read_bytes() == notes.read_bytes()
    # Completed uploads are gone from the server.
    with pytest.raises(ApiError) as gone:
        await sdk.upload_status(alice, upload_id)
    assert (gone.value.status, gone.value.code) == (404, "upload_not_found")


async def test_start_upload_then_resume_upload_sends_it_all(
    sdk: PigeonClient, register: Register, tmp_path: Path
) -> None:
    alice = await register()
    photo = make_png(tmp_path / "photo.png", 200, 100)
    status = await sdk.start_upload(alice, photo, file_name="picture.png")
    assert (status.offset, status.size) == (0, photo.stat().st_size)
    attachment = await sdk.resume_upload(alice, status.upload_id, photo, chunk_size=4 * KiB)
    assert (attachment.file_name, attachment.width, attachment.height) == ("picture.png", 200, 100)


async def test_a_download_resumes_with_a_range(
    server: LiveServer,
    sdk: PigeonClient,
    register: Register,
    open_device: OpenDevice,
    tmp_path: Path,
) -> None:
    alice, bob = await register(), await register()
    chat_id = await chat_between(open_device, alice, bob)
    notes = make_text(tmp_path / "notes.txt", 900_000, seed=5)
    sender = await open_device(alice)
    attachment = await sdk.upload_file(alice, notes)
    await sender.conn.send_message(chat_id, attachments=[attachment])
    # Bob's device never connects, so the message (and the file) stay for him.
    original = notes.read_bytes()

    network = Network()
    network.break_download = 1
    async with PigeonClient(server.http_url, transport=network) as http:
        # 1. The connection drops mid-file: the same call goes on with a Range.
        first = tmp_path / "first.txt"
        await http.download_attachment(bob, attachment.attachment_id, first, retry_delay=0.01)
        assert first.read_bytes() == original
        gets = network.calls("GET", "/v1/attachments/")
        assert [s.status for s in gets] == [200, 206]
        assert "range" not in gets[0].headers
        got = int(gets[1].headers["range"].removeprefix("bytes=").removesuffix("-"))
        assert 0 < got < len(original)

        # 2. A partial file left by an earlier run (the process died) is continued.
        second = tmp_path / "second.txt"
        partial = tmp_path / f".second.txt.{attachment.attachment_id}.part"
        partial.write_bytes(original[:123_456])
        network.seen.clear()
        await http.download_attachment(bob, attachment.attachment_id, second)
        assert second.read_bytes() == original
        assert not partial.exists()
        [get] = network.calls("GET")
        assert (get.headers["range"], get.status) == ("bytes=123456-", 206)

        # 3. A partial file that is already whole: the server says 416, the SDK keeps it.
        third = tmp_path / "third.txt"
        (tmp_path / f".third.txt.{attachment.attachment_id}.part").write_bytes(original)
        network.seen.clear()
        await http.download_attachment(bob, attachment.attachment_id, third)
        assert third.read_bytes() == original
        assert [s.status for s in network.calls("GET")] == [416]

        # 4. resume=False starts over, whatever was there.
        fourth = tmp_path / "fourth.txt"
        (tmp_path / f".fourth.txt.{attachment.attachment_id}.part").write_bytes(b"junk" * 10)
        network.seen.clear()
        await http.download_attachment(bob, attachment.attachment_id, fourth, resume=False)
        assert fourth.read_bytes() == original
        [get] = network.calls("GET")
        assert "range" not in get.headers


async def test_a_non_member_gets_not_found(
    sdk: PigeonClient, register: Register, open_device: OpenDevice, tmp_path: Path
) -> None:
    alice, bob, carol = await register(), await register(), await register()
    chat_id = await chat_between(open_device, alice, bob)
    sender = await open_device(alice)
    work = tmp_path / "files"
    work.mkdir()
    attachment = await sdk.upload_file(alice, make_png(work / "photo.png"))
    await sender.conn.send_message(chat_id, "for bob", attachments=[attachment])

    dest = work / "stolen.png"
    with pytest.raises(ApiError) as refused:
        await sdk.download_attachment(carol, attachment.attachment_id, dest)
    assert (refused.value.status, refused.value.code) == (404, "attachment_not_found")
    assert sorted(await asyncio.to_thread(os.listdir, work)) == ["photo.png"]  # nothing written
    # Nor can carol send it on: she cannot read it.
    outsider = await open_device(carol)
    own = await outsider.conn.create_chat([alice.user_id])
    with pytest.raises(CommandError) as sending:
        await outsider.conn.send_message(own.chat_id, attachments=[attachment.attachment_id])
    assert sending.value.code == "attachment_not_found"
    # Bob can.
    await sdk.download_attachment(bob, attachment.attachment_id, work / "bob.png")
    assert (work / "bob.png").read_bytes() == (work / "photo.png").read_bytes()


async def test_any_file_goes_as_a_document_through_the_sdk_and_the_cli(
    server: LiveServer,
    sdk: PigeonClient,
    register: Register,
    open_device: OpenDevice,
    tmp_path: Path,
) -> None:
    alice, bob = await register(), await register()
    chat_id = await chat_between(open_device, alice, bob)
    sheet = tmp_path / "sums.xlsx"
    sheet.write_bytes(b"PK\x03\x04\x14\x00\x06\x00" + random.Random(3).randbytes(2000))
    attachment = await sdk.upload_file(alice, sheet)
    assert attachment.is_document
    assert not attachment.is_image
    sender = await open_device(alice)
    await sender.conn.send_message(chat_id, "numbers", attachments=[attachment])
    await sdk.download_attachment(bob, attachment.attachment_id, tmp_path / "bob.xlsx")
    assert (tmp_path / "bob.xlsx").read_bytes() == sheet.read_bytes()

    program = tmp_path / "tool"
    program.write_bytes(b"\x7fELF\x02\x01\x01\x00" + bytes(200))
    alice_file = session_file_for(server, alice, tmp_path / "alice.json")
    sent = await pigeon_chat("send-file", chat_id, str(program), "--session-file", str(alice_file))
    assert sent.exit_code == 0, sent.output
    assert "sent #" in sent.output


# -- pigeon chat -------------------------------------------------------------------------


def session_file_for(server: LiveServer, session: Session, path: Path) -> Path:
    chat_cli.save_session(path, server.http_url, session)
    return path


async def test_cli_send_file_and_save_round_trip(
    server: LiveServer, register: Register, open_device: OpenDevice, tmp_path: Path
) -> None:
    alice, bob = await register(), await register()
    chat_id = await chat_between(open_device, alice, bob)
    alice_file = session_file_for(server, alice, tmp_path / "alice.json")
    bob_file = session_file_for(server, bob, tmp_path / "bob.json")
    report = make_text(tmp_path / "report.txt", 300_000, seed=9)

    options = ("--session-file", str(alice_file))
    sent = await pigeon_chat("send-file", chat_id, str(report), "--caption", "the report", *options)
    assert sent.exit_code == 0, sent.output
    assert "sent #" in sent.output
    line = next(line for line in sent.output.splitlines() if line.startswith("Uploaded ["))
    name, mime, size, attachment_id = line.removeprefix("Uploaded [").removesuffix("]").split(", ")
    assert (name, mime, size) == ("report.txt", "text/plain", "293.0 KiB")

    dest = tmp_path / "saved.txt"
    saved = await pigeon_chat("save", attachment_id, str(dest), "--session-file", str(bob_file))
    assert saved.exit_code == 0, saved.output
    assert f"Saved {dest}" in saved.output
    assert dest.read_bytes() == report.read_bytes()

    # Into a directory: named after the attachment id.
    folder = tmp_path / "inbox"
    folder.mkdir()
    again = await pigeon_chat("save", attachment_id, str(folder), "--session-file", str(bob_file))
    assert again.exit_code == 0, again.output
    assert (folder / attachment_id).read_bytes() == report.read_bytes()

    # Someone outside the chat is told it is not there.
    carol_file = session_file_for(server, await register(), tmp_path / "carol.json")
    refused = await pigeon_chat(
        "save", attachment_id, str(tmp_path / "x"), "--session-file", str(carol_file)
    )
    assert refused.exit_code == 1
    assert "attachment_not_found" in refused.output


async def test_cli_open_lists_and_saves_incoming_files_and_sends_with_slash_send(
    server: LiveServer,
    sdk: PigeonClient,
    register: Register,
    open_device: OpenDevice,
    pipe: Pipe,
    tmp_path: Path,
) -> None:
    alice_phone = "+14155550190"
    alice = await register(alice_phone)
    alice_phone_device = await register(alice_phone, device="phone")  # never connects
    bob_session = await register()
    alice_device = await open_device(alice)
    chat = await alice_device.conn.create_chat([bob_session.user_id])
    photo = make_png(tmp_path / "photo.png")
    image = await sdk.upload_file(alice, photo)
    await alice_device.conn.send_message(chat.chat_id, "look", attachments=[image])

    bob_file = session_file_for(server, bob_session, tmp_path / "bob.json")
    downloads = tmp_path / "downloads"
    outgoing = make_text(tmp_path / "answer.txt", 5000, seed=2)
    running = asyncio.create_task(
        pigeon_chat(
            "open",
            chat.chat_id,
            "--download-dir",
            str(downloads),
            "--session-file",
            str(bob_file),
            stdin=pipe.reader,
        )
    )
    try:
        while (read := await alice_device.next(ReceiptEvent, timeout=30)).type != "read":
            pass  # bob's terminal showed (and saved) the photo
        pipe.type(f"/send {outgoing}\n")
        answer = await alice_device.next(MessageEvent, timeout=30)
        pipe.type("/quit\n")
    finally:
        pipe.end()
    result = await asyncio.wait_for(running, 30)
    assert result.exit_code == 0, result.output

    assert read.up_to_seq == 1
    assert (downloads / "photo.png").read_bytes() == photo.read_bytes()
    output = result.output
    size = photo.stat().st_size
    shown = f"[photo.png, image/png, {chat_cli.human_size(size)}, {image.attachment_id}]"
    assert shown in output
    assert f"saved to {downloads / 'photo.png'}" in output

    # /send uploaded the file and sent it; alice's phone has not acked it, so it is there.
    [attachment] = answer.attachments
    assert (answer.sender_id, answer.text) == (bob_session.user_id, "")
    assert (attachment.file_name, attachment.mime_type, attachment.size) == (
        "answer.txt",
        "text/plain",
        5000,
    )
    assert f"[answer.txt, text/plain, 4.9 KiB, {attachment.attachment_id}]" in output
    copy = tmp_path / "copy.txt"
    await sdk.download_attachment(alice_phone_device, attachment.attachment_id, copy)
    assert copy.read_bytes() == outgoing.read_bytes()


def test_download_target_names() -> None:
    def attachment(name: str) -> Attachment:
        return Attachment("01ATTACHMENT", "text/plain", 1, name)

    folder = Path("/nonexistent-folder")
    assert chat_cli.download_target(folder, attachment("a.txt")) == folder / "a.txt"
    assert chat_cli.download_target(folder, attachment("../../etc/passwd")) == folder / "passwd"
    assert chat_cli.download_target(folder, attachment(".bashrc")) == folder / "01ATTACHMENT"
    assert chat_cli.human_size(512) == "512 B"
    assert chat_cli.human_size(1536) == "1.5 KiB"
    assert chat_cli.human_size(3 * 1024 * 1024) == "3.0 MiB"
