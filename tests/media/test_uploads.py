"""Uploading files (HTTP, WebSocket, resumable): what is kept and what is refused."""

from __future__ import annotations

import asyncio
import base64
import random
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from pigeon.bootstrap import Container
from pigeon.domain.ids import new_id
from tests.media.conftest import (
    Connect,
    Register,
    RowCounts,
    StoredObjects,
    blob_names,
    download,
    error_code,
    pdf,
    png,
    sha256,
    upload,
    uploaded,
)
from tests.support import bearer, online

NOTHING = {"attachments": 0, "blobs": 0, "uploads": 0}


async def assert_nothing_kept(
    stored_objects: StoredObjects, row_counts: RowCounts, staged: Callable[[], list[Path]]
) -> None:
    assert await stored_objects() == []
    assert await row_counts() == NOTHING
    assert staged() == []


# -- HTTP upload ---------------------------------------------------------------


async def test_http_upload_then_download(
    client: httpx.AsyncClient, user: Register, stored_objects: StoredObjects
) -> None:
    alice = await user()
    body = pdf("report")
    meta = await uploaded(client, alice, body, name="report.pdf")
    assert meta["mimeType"] == "application/pdf"
    assert meta["size"] == len(body)
    assert meta["fileName"] == "report.pdf"
    assert meta["attachmentId"]
    assert "thumbnail" not in meta or meta["thumbnail"] is None
    assert sha256(body) not in str(meta)  # the hash is not handed out: it is no capability

    got = await download(client, alice, meta["attachmentId"])
    assert got.status_code == 200
    assert got.content == body
    # A PDF is a document: offered as opaque bytes to save, whatever it holds.
    assert got.headers["content-type"] == "application/octet-stream"
    assert got.headers["content-length"] == str(len(body))
    assert got.headers["accept-ranges"] == "bytes"
    assert got.headers["x-content-type-options"] == "nosniff"
    assert got.headers["content-disposition"] == "attachment; filename*=UTF-8''report.pdf"
    assert blob_names(await stored_objects()) == [sha256(body)]


async def test_upload_needs_a_token(client: httpx.AsyncClient) -> None:
    body = pdf()
    response = await client.post(
        "/v1/attachments", content=body, headers={"X-Content-SHA256": sha256(body)}
    )
    assert response.status_code == 401
    assert error_code(response) == "missing_token"


async def test_file_names_are_cleaned(client: httpx.AsyncClient, user: Register) -> None:
    alice = await user()
    meta = await uploaded(
        client, alice, b"hello, world\n", name="..%2F..%2Fetc%2FGr%C3%BC%C3%9Fe.txt"
    )
    assert meta["fileName"] == "Grüße.txt"
    assert meta["mimeType"] == "text/plain"
    got = await download(client, alice, meta["attachmentId"])
    assert got.headers["content-disposition"] == (
        "attachment; filename*=UTF-8''Gr%C3%BC%C3%9Fe.txt"
    )


# -- over the WebSocket ------------------------------------------------------------


async def test_websocket_create_attachment_then_download(
    client: httpx.AsyncClient, user: Register, connect: Connect, stored_objects: StoredObjects
) -> None:
    alice = await user()
    ws = await online(connect, alice)
    body = png(64, 48)
    meta = await ws.call(
        "createAttachment",
        {
            "body": base64.b64encode(body).decode(),
            "hash": sha256(body),
            "mimeType": "text/plain",  # ignored: the server sniffs
            "fileName": "dot.txt",
        },
    )
    assert meta["mimeType"] == "image/png"
    assert (meta["width"], meta["height"]) == (64, 48)
    assert meta["size"] == len(body)
    assert meta["fileName"] == "dot.txt"
    assert meta["thumbnail"]
    got = await download(client, alice, meta["attachmentId"])
    assert got.status_code == 200
    assert got.content == body
    assert got.headers["content-type"] == "image/png"
    assert blob_names(await stored_objects()) == [sha256(body)]


RESTRICTED = ["image/*", "video/*", "audio/*", "application/pdf", "text/plain"]


@pytest.mark.parametrize(
    "media_settings",
    [{"media_max_inline_bytes": 1000, "media_allowed_types": RESTRICTED}],
    ids=["restricted"],
)
async def test_websocket_create_attachment_refusals(
    user: Register,
    connect: Connect,
    stored_objects: StoredObjects,
    row_counts: RowCounts,
    staged: Callable[[], list[Path]],
) -> None:
    alice = await user()
    ws = await online(connect, alice)
    small = pdf()
    encoded = base64.b64encode(small).decode()

    async def refused(data: dict[str, Any]) -> str:
        answer = await ws.request("createAttachment", {"fileName": "x.pdf", **data})
        assert answer["ok"] is False, answer
        code: str = answer["error"]["code"]
        return code

    assert await refused({"body": encoded, "hash": sha256(b"other")}) == "hash_mismatch"
    assert await refused({"body": "not base64!", "hash": sha256(small)}) == "invalid_body"
    assert await refused({"body": encoded, "hash": "z" * 64}) == "invalid_hash"
    big = pdf("x" * 2000)
    assert (
        await refused({"body": base64.b64encode(big).decode(), "hash": sha256(big)})
        == "attachment_too_large"
    )
    elf = b"\x7fELF\x02\x01\x01\x00" + bytes(56)
    answer = await ws.request(
        "createAttachment", {"body": base64.b64encode(elf).decode(), "hash": sha256(elf)}
    )
    assert answer["error"]["code"] == "unsupported_media_type"
    # Over the socket too, the refusal names what is accepted and the setting.
    assert "application/pdf" in answer["error"]["message"]
    assert "PIGEON_MEDIA_ALLOWED_TYPES" in answer["error"]["message"]
    await assert_nothing_kept(stored_objects, row_counts, staged)
    # The socket is still fine afterwards.
    assert (await ws.call("createAttachment", {"body": encoded, "hash": sha256(small)}))["size"]


# -- refused uploads leave nothing behind ---------------------------------------------


async def test_hash_mismatch_is_refused_and_nothing_is_kept(
    client: httpx.AsyncClient,
    user: Register,
    stored_objects: StoredObjects,
    row_counts: RowCounts,
    staged: Callable[[], list[Path]],
) -> None:
    alice = await user()
    body = pdf()
    response = await upload(client, alice, body, digest=sha256(body + b"!"))
    assert response.status_code == 400
    assert error_code(response) == "hash_mismatch"
    await assert_nothing_kept(stored_objects, row_counts, staged)


@pytest.mark.parametrize("declared", [-1, +1, +1000])
async def test_size_mismatch_is_refused_and_nothing_is_kept(
    declared: int,
    client: httpx.AsyncClient,
    user: Register,
    stored_objects: StoredObjects,
    row_counts: RowCounts,
    staged: Callable[[], list[Path]],
) -> None:
    alice = await user()
    body = pdf()
    response = await upload(
        client, alice, body, headers={"Content-Length": str(len(body) + declared)}
    )
    assert response.status_code == 400
    assert error_code(response) == "size_mismatch"
    await assert_nothing_kept(stored_objects, row_counts, staged)


@pytest.mark.parametrize("digest", ["abc", "g" * 64, "0" * 63, "0" * 65])
async def test_malformed_hash_is_refused(
    digest: str, client: httpx.AsyncClient, user: Register, row_counts: RowCounts
) -> None:
    alice = await user()
    response = await upload(client, alice, pdf(), digest=digest)
    assert response.status_code == 400
    assert error_code(response) == "invalid_hash"
    assert await row_counts() == NOTHING


async def test_an_uppercase_hash_is_accepted(client: httpx.AsyncClient, user: Register) -> None:
    alice = await user()
    body = pdf()
    response = await upload(client, alice, body, digest=sha256(body).upper())
    assert response.status_code == 201, response.text


@pytest.mark.parametrize("media_settings", [{"media_max_upload_bytes": 1000}])
async def test_oversized_upload_is_refused_and_nothing_is_kept(
    client: httpx.AsyncClient,
    user: Register,
    stored_objects: StoredObjects,
    row_counts: RowCounts,
    staged: Callable[[], list[Path]],
) -> None:
    alice = await user()
    body = pdf("x" * 1000)
    assert len(body) > 1000
    # With a Content-Length: refused before a byte is read.
    response = await upload(client, alice, body)
    assert response.status_code == 413
    assert error_code(response) == "attachment_too_large"

    # Streamed without a length: cut off as soon as the limit is passed.
    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(body), 256):
            yield body[start : start + 256]

    response = await client.post(
        "/v1/attachments",
        content=chunks(),
        headers={**bearer(alice), "X-Content-SHA256": sha256(body)},
    )
    assert response.status_code == 413
    assert error_code(response) == "attachment_too_large"

    # A resumable upload announcing too much is refused at the start.
    response = await client.post(
        "/v1/uploads", json={"size": 1001, "sha256": sha256(body)}, headers=bearer(alice)
    )
    assert response.status_code == 413
    assert error_code(response) == "attachment_too_large"
    await assert_nothing_kept(stored_objects, row_counts, staged)

    # Exactly the limit is fine.
    exact = pdf("y" * (1000 - len(pdf(""))))
    assert len(exact) == 1000
    assert (await upload(client, alice, exact)).status_code == 201


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"\x7fELF\x02\x01\x01\x00" + bytes(120), id="elf"),
        pytest.param(b"MZ\x90\x00\x03\x00\x00\x00\x04\x00" + bytes(120), id="exe"),
        pytest.param(bytes(range(256)) * 4, id="random-binary"),
        pytest.param(random.Random(7).randbytes(4096), id="noise"),
    ],
)
@pytest.mark.parametrize(
    "media_settings", [{"media_allowed_types": RESTRICTED}], ids=["restricted"]
)
async def test_types_off_a_restricted_list_are_refused_and_nothing_is_kept(
    body: bytes,
    client: httpx.AsyncClient,
    user: Register,
    stored_objects: StoredObjects,
    row_counts: RowCounts,
    staged: Callable[[], list[Path]],
) -> None:
    alice = await user()
    response = await upload(client, alice, body, name="holiday.jpg")
    assert response.status_code == 400
    assert error_code(response) == "unsupported_media_type"
    # The refusal names what this server accepts and the setting that says so.
    message = response.json()["error"]["message"]
    assert "image/*" in message
    assert "application/pdf" in message
    assert "PIGEON_MEDIA_ALLOWED_TYPES" in message
    await assert_nothing_kept(stored_objects, row_counts, staged)


DOCUMENTS = [
    pytest.param(b"\x7fELF\x02\x01\x01\x00" + bytes(120), "tool", id="elf"),
    pytest.param(b"MZ\x90\x00\x03\x00\x00\x00\x04\x00" + bytes(120), "setup.exe", id="exe"),
    pytest.param(b"PK\x03\x04\x14\x00\x06\x00" + bytes(120), "letter.docx", id="docx"),
    pytest.param(b"name,amount\nalice,3\n", "sums.csv", id="csv"),
    pytest.param(random.Random(7).randbytes(4096), "noise.bin", id="noise"),
]


@pytest.mark.parametrize(("body", "name"), DOCUMENTS)
async def test_any_file_is_accepted_and_served_as_a_download(
    body: bytes, name: str, client: httpx.AsyncClient, user: Register, connect: Connect
) -> None:
    alice, bob = await user(), await user()
    meta = await uploaded(client, alice, body, name=name)
    assert meta["fileName"] == name
    assert "thumbnail" not in meta or meta["thumbnail"] is None
    # Bob gets it in a message and downloads the same bytes, as a file to save.
    ws = await online(connect, alice)
    chat = await ws.call("createChat", {"participants": [bob["user_id"]]})
    await ws.call(
        "sendMessage",
        {
            "chatId": chat["chatId"],
            "clientMessageId": new_id(),
            "message": "",
            "attachments": [meta["attachmentId"]],
        },
    )
    got = await download(client, bob, meta["attachmentId"])
    assert got.status_code == 200
    assert got.content == body
    assert got.headers["content-type"] == "application/octet-stream"
    assert got.headers["content-disposition"].startswith("attachment;")
    assert got.headers["x-content-type-options"] == "nosniff"


async def test_types_are_sniffed_not_taken_from_the_client(
    client: httpx.AsyncClient, user: Register
) -> None:
    alice = await user()
    body = png()
    response = await upload(
        client, alice, body, name="notes.txt", headers={"Content-Type": "text/plain"}
    )
    assert response.status_code == 201, response.text
    meta = response.json()
    assert meta["mimeType"] == "image/png"
    got = await download(client, alice, meta["attachmentId"])
    assert got.headers["content-type"] == "image/png"


async def signed_link(
    client: httpx.AsyncClient, session: dict[str, Any], attachment_id: str
) -> str:
    response = await client.get(f"/v1/attachments/{attachment_id}/link", headers=bearer(session))
    assert response.status_code == 200, response.text
    url: str = response.json()["url"]
    return url


async def test_html_named_jpg_is_served_as_a_download(
    client: httpx.AsyncClient, user: Register
) -> None:
    alice = await user()
    body = b"<!doctype html><html><script>alert(document.cookie)</script></html>\n"
    meta = await uploaded(client, alice, body, name="holiday.jpg")
    assert meta["mimeType"] == "text/plain"  # sniffed: the name's .jpg is not believed
    assert "thumbnail" not in meta or meta["thumbnail"] is None
    for got in (
        await download(client, alice, meta["attachmentId"]),
        await client.get(await signed_link(client, alice, meta["attachmentId"])),
    ):
        assert got.status_code == 200
        assert got.content == body
        assert got.headers["content-type"] == "application/octet-stream"
        assert got.headers["x-content-type-options"] == "nosniff"
        assert got.headers["content-disposition"] == "attachment; filename*=UTF-8''holiday.jpg"


async def test_an_empty_file_is_refused(
    client: httpx.AsyncClient, user: Register, row_counts: RowCounts
) -> None:
    alice = await user()
    response = await upload(client, alice, b"")
    assert response.status_code == 400
    assert error_code(response) == "invalid_size"
    assert await row_counts() == NOTHING


# -- deduplication ----------------------------------------------------------------


async def test_same_content_is_stored_once_with_separate_attachments(
    client: httpx.AsyncClient,
    user: Register,
    stored_objects: StoredObjects,
    row_counts: RowCounts,
) -> None:
    alice, bob = await user(), await user()
    body = png(100, 100, (1, 2, 3))
    first = await uploaded(client, alice, body, name="a.png")
    again = await uploaded(client, alice, body, name="b.png")
    bobs = await uploaded(client, bob, body, name="c.png")
    ids = {first["attachmentId"], again["attachmentId"], bobs["attachmentId"]}
    assert len(ids) == 3
    assert [first["fileName"], again["fileName"], bobs["fileName"]] == ["a.png", "b.png", "c.png"]
    assert blob_names(await stored_objects()) == [sha256(body)]
    assert await row_counts() == {"attachments": 3, "blobs": 1, "uploads": 0}
    for session, meta in ((alice, first), (alice, again), (bob, bobs)):
        got = await download(client, session, meta["attachmentId"])
        assert got.status_code == 200
        assert got.content == body
    # Having the same bytes grants nothing: bob cannot read alice's attachment.
    assert (await download(client, bob, first["attachmentId"])).status_code == 404


# -- resumable uploads ----------------------------------------------------------------


async def start(
    client: httpx.AsyncClient, session: dict[str, Any], size: int, digest: str, name: str
) -> dict[str, Any]:
    response = await client.post(
        "/v1/uploads",
        json={"size": size, "sha256": digest, "fileName": name},
        headers=bearer(session),
    )
    assert response.status_code == 201, response.text
    started: dict[str, Any] = response.json()
    return started


async def patch(
    client: httpx.AsyncClient, session: dict[str, Any], upload_id: str, offset: int, part: bytes
) -> httpx.Response:
    return await client.patch(
        f"/v1/uploads/{upload_id}",
        content=part,
        headers={
            **bearer(session),
            "Upload-Offset": str(offset),
            "Content-Type": "application/octet-stream",
        },
    )


async def test_resumable_upload(
    client: httpx.AsyncClient,
    user: Register,
    stored_objects: StoredObjects,
    row_counts: RowCounts,
    staged: Callable[[], list[Path]],
) -> None:
    alice = await user()
    body = png(300, 300, (9, 120, 9))
    cut = len(body) // 2
    started = await start(client, alice, len(body), sha256(body), "big.png")
    upload_id = started["uploadId"]
    assert started["offset"] == 0
    assert started["size"] == len(body)
    assert started["attachment"] is None

    first = await patch(client, alice, upload_id, 0, body[:cut])
    assert first.status_code == 200, first.text
    assert first.json()["offset"] == cut
    assert first.json()["attachment"] is None

    # Sending the first part again (a retry after a lost answer) or skipping ahead: 409.
    for offset in (0, cut + 1):
        wrong = await patch(client, alice, upload_id, offset, body[offset:])
        assert wrong.status_code == 409
        assert error_code(wrong) == "offset_mismatch"

    # An interrupted client asks where to resume.
    status = await client.get(f"/v1/uploads/{upload_id}", headers=bearer(alice))
    assert status.status_code == 200
    assert status.json()["offset"] == cut
    assert await stored_objects() == []

    last = await patch(client, alice, upload_id, cut, body[cut:])
    assert last.status_code == 200, last.text
    done = last.json()
    assert done["offset"] == len(body)
    meta = done["attachment"]
    assert meta["mimeType"] == "image/png"
    assert meta["fileName"] == "big.png"
    assert (meta["width"], meta["height"]) == (300, 300)
    assert meta["thumbnail"]

    got = await download(client, alice, meta["attachmentId"])
    assert got.content == body
    assert blob_names(await stored_objects()) == [sha256(body)]
    assert await row_counts() == {"attachments": 1, "blobs": 1, "uploads": 0}
    assert staged() == []
    # The upload is finished: it is gone.
    gone = await client.get(f"/v1/uploads/{upload_id}", headers=bearer(alice))
    assert gone.status_code == 404
    assert error_code(gone) == "upload_not_found"


async def test_resumable_upload_with_a_wrong_hash_keeps_nothing(
    client: httpx.AsyncClient,
    user: Register,
    stored_objects: StoredObjects,
    row_counts: RowCounts,
    staged: Callable[[], list[Path]],
) -> None:
    alice = await user()
    body = pdf("resumable" * 50)
    started = await start(client, alice, len(body), sha256(b"something else"), "doc.pdf")
    upload_id = started["uploadId"]
    assert (await patch(client, alice, upload_id, 0, body[:100])).status_code == 200
    last = await patch(client, alice, upload_id, 100, body[100:])
    assert last.status_code == 400
    assert error_code(last) == "hash_mismatch"
    await assert_nothing_kept(stored_objects, row_counts, staged)
    gone = await client.get(f"/v1/uploads/{upload_id}", headers=bearer(alice))
    assert gone.status_code == 404
    assert error_code(gone) == "upload_not_found"


async def test_resumable_part_past_the_size_is_refused_and_can_be_resent(
    client: httpx.AsyncClient, user: Register, stored_objects: StoredObjects
) -> None:
    alice = await user()
    body = pdf("overflow" * 20)
    upload_id = (await start(client, alice, len(body), sha256(body), "o.pdf"))["uploadId"]
    too_much = await patch(client, alice, upload_id, 0, body + b"extra")
    assert too_much.status_code == 400
    assert error_code(too_much) == "upload_overflow"
    status = await client.get(f"/v1/uploads/{upload_id}", headers=bearer(alice))
    assert status.json()["offset"] == 0
    assert await stored_objects() == []
    done = await patch(client, alice, upload_id, 0, body)
    assert done.status_code == 200, done.text
    meta = done.json()["attachment"]
    assert (await download(client, alice, meta["attachmentId"])).content == body


async def test_someone_elses_upload_is_not_found(client: httpx.AsyncClient, user: Register) -> None:
    alice, mallory = await user(), await user()
    body = pdf()
    upload_id = (await start(client, alice, len(body), sha256(body), "a.pdf"))["uploadId"]
    for response in (
        await client.get(f"/v1/uploads/{upload_id}", headers=bearer(mallory)),
        await patch(client, mallory, upload_id, 0, body),
        await client.get("/v1/uploads/01J0000000000000000000000", headers=bearer(alice)),
    ):
        assert response.status_code == 404
        assert error_code(response) == "upload_not_found"
    # Alice's upload is untouched by mallory's attempt.
    status = await client.get(f"/v1/uploads/{upload_id}", headers=bearer(alice))
    assert status.json()["offset"] == 0


async def test_resumable_start_checks_its_input(client: httpx.AsyncClient, user: Register) -> None:
    alice = await user()
    bad_hash = await client.post(
        "/v1/uploads", json={"size": 10, "sha256": "x" * 64}, headers=bearer(alice)
    )
    assert bad_hash.status_code == 400
    assert error_code(bad_hash) == "invalid_hash"
    empty = await client.post(
        "/v1/uploads", json={"size": 0, "sha256": "0" * 64}, headers=bearer(alice)
    )
    assert empty.status_code == 422


async def test_the_same_content_uploaded_at_the_same_time(
    client: httpx.AsyncClient, user: Register, stored_objects: StoredObjects
) -> None:
    """A popular file forwarded by several people at once is stored once, whole."""
    people = [await user() for _ in range(4)]
    body = pdf("".join(chr(48 + i % 70) for i in range(4_000_000)))
    responses = await asyncio.gather(*(upload(client, who, body) for who in people))
    assert [r.status_code for r in responses] == [201] * len(people), [r.text for r in responses]
    assert blob_names(await stored_objects()) == [sha256(body)]
    for who, response in zip(people, responses, strict=True):
        got = await download(client, who, response.json()["attachmentId"])
        assert got.content == body


# Above 8 MiB the S3 store uploads in parts, which aiohttp warns about (harmlessly).
@pytest.mark.filterwarnings("ignore:Sending a large body directly:ResourceWarning")
async def test_the_store_takes_one_object_several_times_at_once(
    app: FastAPI, container: Container, tmp_path: Path, stored_objects: StoredObjects
) -> None:
    """The race above, without the timing luck: the same object put four times at once."""
    body = random.Random(3).randbytes(16 * 1024 * 1024)
    source = tmp_path / "source.bin"
    source.write_bytes(body)
    key = sha256(body)
    puts = (container.blobs.put(key, source, "application/pdf") for _ in range(4))
    await asyncio.gather(*puts)
    assert blob_names(await stored_objects()) == [key]
    assert b"".join([chunk async for chunk in container.blobs.read(key)]) == body
