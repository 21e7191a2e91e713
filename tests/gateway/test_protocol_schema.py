"""The published protocol: docs/protocol.schema.json, docs/protocol.md, and the live server.

Three things must agree: the schema generated from the models
(``pigeon.gateway.schema``), the copy committed in ``docs/``, and what a
running server really sends. The examples in docs/protocol.md are checked
against the schema too, so the documentation cannot drift either.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from jsonschema import Draft202012Validator
from PIL import Image

from pigeon.gateway.events import ANSWERS, EVENTS
from pigeon.gateway.frames import COMMANDS
from pigeon.gateway.schema import protocol_schema, render
from tests.gateway.conftest import Connect, Register
from tests.live import LiveServer, WsClient
from tests.support import bearer

ROOT = Path(__file__).resolve().parents[2]
SCHEMA_FILE = ROOT / "docs" / "protocol.schema.json"
PROTOCOL_MD = ROOT / "docs" / "protocol.md"
SRC = ROOT / "src" / "pigeon"

REGENERATE = ".venv/bin/pigeon protocol-schema > docs/protocol.schema.json"

# Error codes raised by modules the gateway calls that only HTTP routes can reach.
# (size_mismatch too: createAttachment declares the size of the body it decoded.)
HTTP_ONLY_CODES = {
    "size_mismatch",
    "upload_not_found",
    "offset_mismatch",
    "invalid_size",
    "upload_overflow",
    "link_expired",
    "range_not_satisfiable",
    # A client's thumbnail comes with POST /v1/uploads only (docs/protocol.md, Uploading).
    "invalid_thumbnail",
    "thumbnail_too_large",
    "thumbnail_not_accepted",
}


def _def_name(kind: str, name: str) -> str:
    capital = name[0].upper() + name[1:]
    return f"{capital}{kind}"


class Protocol:
    """The schema, with a validator per definition.

    The root of the document is ``anyOf`` [ClientFrame, ServerFrame], so a
    frame valid against one of those is valid against the root; checking
    the direction and the frame's own definition is the stricter test.
    """

    def __init__(self, document: dict[str, Any]) -> None:
        assert document["anyOf"] == [
            {"$ref": "#/$defs/ClientFrame"},
            {"$ref": "#/$defs/ServerFrame"},
        ]
        self.document = document
        self._validators: dict[str, Draft202012Validator] = {}

    def validator(self, definition: str) -> Draft202012Validator:
        assert definition in self.document["$defs"], definition
        if definition not in self._validators:
            schema = {
                "$schema": self.document["$schema"],
                "$defs": self.document["$defs"],
                "$ref": f"#/$defs/{definition}",
            }
            self._validators[definition] = Draft202012Validator(schema)
        return self._validators[definition]

    def check(self, frame: Any, *definitions: str, where: str = "") -> None:
        """``frame`` is valid against each of ``definitions``."""
        for name in definitions:
            errors = sorted(self.validator(name).iter_errors(frame), key=lambda e: list(e.path))
            assert not errors, (
                f"{where}: not valid against {name}:\n{json.dumps(frame, indent=2)}\n"
                + "\n".join(f"- {list(e.path)}: {e.message}" for e in errors[:5])
            )

    def check_client(self, frame: dict[str, Any], where: str = "") -> None:
        self.check(frame, "ClientFrame", _def_name("Command", frame["type"]), where=where)

    def check_event(self, frame: dict[str, Any], where: str = "") -> None:
        self.check(frame, "ServerFrame", EVENTS[frame["event"]].__name__, where=where)

    def check_answer(self, frame: dict[str, Any], command: str | None, where: str = "") -> None:
        """An answer, against the answer of ``command`` when known."""
        if not frame.get("ok"):
            specific = "ErrorAnswer"
        elif command is not None:
            specific = ANSWERS[command].__name__
        else:
            specific = "Answer"
        self.check(frame, "ServerFrame", specific, where=where)


@pytest.fixture(scope="module")
def protocol() -> Protocol:
    return Protocol(json.loads(SCHEMA_FILE.read_text("utf-8")))


# -- the schema itself ------------------------------------------------------------------


def test_committed_schema_is_the_generated_one() -> None:
    committed = SCHEMA_FILE.read_text("utf-8") if SCHEMA_FILE.exists() else ""
    assert committed == render(), (
        "docs/protocol.schema.json differs from the schema generated from the models "
        f"(pigeon.gateway.frames and pigeon.gateway.events). Regenerate it: {REGENERATE}"
    )


def test_schema_is_a_valid_draft_2020_12_document() -> None:
    Draft202012Validator.check_schema(protocol_schema())


def test_every_command_has_a_definition_and_an_answer() -> None:
    definitions = protocol_schema()["$defs"]
    assert set(ANSWERS) == set(COMMANDS)
    for name in COMMANDS:
        assert _def_name("Command", name) in definitions
        assert ANSWERS[name].__name__ in definitions
    for model in EVENTS.values():
        assert model.__name__ in definitions


def test_the_schema_refuses_what_the_server_never_sends(protocol: Protocol) -> None:
    message = {
        "event": "message",
        "data": {
            "chatId": "c",
            "messageId": "m",
            "seq": 1,
            "kind": "text",
            "senderId": "u",
            "senderDeviceId": "d",
            "message": "hi",
            "attachments": [],
            "createdAt": "2026-01-01T12:00:00.000Z",
            "inboxSeq": 1,
        },
    }
    protocol.check_event(message)
    validator = protocol.validator("MessageEvent")
    wrong = [
        {**message, "data": {**message["data"], "extra": 1}},
        {**message, "data": {**message["data"], "attachments": ["01JQATTACHMENTID"]}},
        {**message, "data": {**message["data"], "createdAt": "2026-01-01T12:00:00Z"}},
        {**message, "data": {**message["data"], "replyTo": None}},
        {
            **message,
            "data": {
                **message["data"],
                "attachments": [
                    {
                        "attachmentId": "a",
                        "mimeType": "image/png",
                        "size": 1,
                        "fileName": "f",
                        "width": 4,
                    }
                ],
            },
        },
    ]
    for frame in wrong:
        assert not validator.is_valid(frame), frame


# -- docs/protocol.md -------------------------------------------------------------------


def _json_blocks(text: str) -> Iterator[tuple[int, list[Any]]]:
    """(line number, frames) for each ```json block: one JSON value, or one per line."""
    for match in re.finditer(r"^```json[ \t]*\n(.*?)^```", text, re.M | re.S):
        line = text.count("\n", 0, match.start()) + 1
        body = match.group(1)
        try:
            yield line, [json.loads(body)]
        except json.JSONDecodeError:
            frames = []
            for offset, raw in enumerate(body.splitlines(), start=1):
                if raw.strip():
                    try:
                        frames.append(json.loads(raw))
                    except json.JSONDecodeError as exc:
                        pytest.fail(f"docs/protocol.md:{line + offset}: not JSON: {exc}")
            yield line, frames


FRAME_ERRORS = ("malformed_frame", "unknown_command", "invalid_frame")


def _doc_frames() -> list[tuple[str, dict[str, Any], str | None]]:
    """Every example frame: (where, frame, the command it answers if the block shows it).

    For a command answered in its block with a frame error, the third item
    is "refused": the example shows a frame the schema must refuse.
    """
    found: list[tuple[str, dict[str, Any], str | None]] = []
    for line, frames in _json_blocks(PROTOCOL_MD.read_text("utf-8")):
        for frame in frames:
            assert isinstance(frame, dict), f"docs/protocol.md:{line}: not an object"
        refused = {
            f.get("id")
            for f in frames
            if f.get("ok") is False and f["error"]["code"] in FRAME_ERRORS
        }
        asked: dict[Any, str] = {}
        for frame in frames:
            where = f"docs/protocol.md:{line}"
            if "type" in frame:
                if "id" in frame:
                    asked[frame["id"]] = frame["type"]
                found.append((where, frame, "refused" if frame.get("id") in refused else None))
            else:
                command = asked.get(frame.get("id")) if "ok" in frame else None
                found.append((where, frame, command))
    return found


def test_every_example_in_protocol_md_is_valid(protocol: Protocol) -> None:
    frames = _doc_frames()
    assert len(frames) > 40
    for where, frame, command in frames:
        if "type" in frame and command == "refused":
            assert not protocol.validator("ClientFrame").is_valid(frame), (where, frame)
        elif "type" in frame:
            protocol.check_client(frame, where)
        elif "event" in frame:
            protocol.check_event(frame, where)
        else:
            protocol.check_answer(frame, command, where)


def _gateway_error_codes() -> set[str]:
    """Codes of the errors a WebSocket command can answer with, read from the source."""
    files = [
        SRC / "gateway" / "connection.py",
        SRC / "gateway" / "commands.py",
        SRC / "gateway" / "outbound.py",
        SRC / "gateway" / "frames.py",
        SRC / "services" / "messaging.py",
        SRC / "services" / "changes.py",
        SRC / "services" / "forwarding.py",
        SRC / "services" / "chats.py",
        SRC / "services" / "presence.py",
        SRC / "services" / "media.py",
        SRC / "services" / "committer.py",
    ]
    pattern = re.compile(
        r"(?:InvalidInput|NotFound|Conflict|Forbidden|TooLarge|Unavailable|FrameError|\berror)"
        r"\(\s*(?:[a-z_.]+,\s*)?\"([a-z_]+)\""
    )
    codes = {code for path in files for code in pattern.findall(path.read_text("utf-8"))}
    return codes - HTTP_ONLY_CODES


def test_protocol_md_shows_every_command_answer_event_and_error_code() -> None:
    frames = _doc_frames()
    commands = {f["type"] for _, f, c in frames if "type" in f and c != "refused"}
    answered = {c for _, f, c in frames if c is not None and f.get("ok")}
    events = {f["event"] for _, f, _ in frames if "event" in f}
    codes = {f["error"]["code"] for _, f, _ in frames if f.get("ok") is False}
    assert set(COMMANDS) - commands == set(), "commands without an example"
    assert set(ANSWERS) - answered == set(), "commands without an example answer after them"
    assert set(EVENTS) - events == set(), "events without an example"
    expected = _gateway_error_codes()
    assert "chat_not_found" in expected
    assert "attachment_too_large" in expected
    assert expected - codes == set(), "error codes without an example error answer"
    text = PROTOCOL_MD.read_text("utf-8")
    for close_code in ("1003", "1007", "1008", "1009", "1011", "1012", "4409"):
        assert f"`{close_code}`" in text, f"close code {close_code} is not described"


# -- frames from a live server --------------------------------------------------------------


def _tiny_png() -> bytes:
    image = Image.new("RGB", (4, 3), (200, 30, 30))
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


async def _frame(client: WsClient, predicate: Any, timeout: float = 5) -> dict[str, Any]:
    """The next event that ``predicate`` accepts."""
    while True:
        frame = await client.next_event(None, timeout)
        if predicate(frame):
            return frame


class Recorder:
    """Sends commands through a WsClient, keeping every command and answer it saw."""

    def __init__(self, client: WsClient) -> None:
        self.client = client
        self.exchanges: list[tuple[dict[str, Any], dict[str, Any]]] = []

    async def call(self, type_: str, data: dict[str, Any] | None = None) -> dict[str, Any]:
        answer = await self.client.request(type_, data)
        command: dict[str, Any] = {"id": "?", "type": type_}
        if data is not None:
            command["data"] = data
        self.exchanges.append((command, answer))
        return answer


async def test_frames_of_a_live_server_match_the_schema(
    protocol: Protocol,
    server: LiveServer,
    user: Register,
    connect: Connect,
    client: httpx.AsyncClient,
) -> None:
    alice, bob, carol = await user("+14155550161"), await user(), await user()
    events: list[dict[str, Any]] = []

    # Authentication by a first frame: the auth answer, then ready.
    raw = await WsClient.open(server.ws_url)
    auth = await raw.request("auth", {"token": alice["access_token"]})
    a = Recorder(raw)
    a.exchanges.append(({"id": 1, "type": "auth", "data": {"token": "x"}}, auth))
    events.append(await raw.next_event("ready"))
    b = Recorder(await connect(bob))
    events.append(await a.client.next_event("drained"))
    events.append(await b.client.next_event("drained"))

    # Chats.
    direct = (await a.call("createChat", {"participants": [bob["user_id"]]}))["data"]
    group = (await a.call("createChat", {"participants": [bob["user_id"]], "name": "Trip"}))["data"]
    created = await b.client.next_event("message")
    assert created["data"]["system"]["action"] == "created"
    events.append(created)
    await a.call(
        "modifyChatParticipants",
        {"chatId": group["chatId"], "userId": carol["user_id"], "operation": "ADD"},
    )
    await a.call("setRole", {"chatId": group["chatId"], "userId": bob["user_id"], "role": "admin"})
    await a.call("updateChat", {"chatId": group["chatId"], "name": "Trip 2026"})
    await b.call(
        "modifyChatParticipants",
        {"chatId": group["chatId"], "userId": bob["user_id"], "operation": "REMOVE"},
    )
    system = [await b.client.next_event("message") for _ in range(4)]
    assert [m["data"]["system"]["action"] for m in system] == ["added", "role", "renamed", "left"]
    events += system
    await a.call("getChats")
    await a.call("getChat", {"chatId": group["chatId"]})

    # An attachment, inline, and a message carrying it.
    png = _tiny_png()
    attachment = (
        await a.call(
            "createAttachment",
            {
                "body": base64.b64encode(png).decode(),
                "hash": hashlib.sha256(png).hexdigest(),
                "mimeType": "image/png",
                "fileName": "dot.png",
            },
        )
    )["data"]
    assert attachment["mimeType"] == "image/png"
    assert (attachment["width"], attachment["height"]) == (4, 3)
    assert base64.b64decode(attachment["thumbnail"])[:2] == b"\xff\xd8"  # a JPEG
    sent = (
        await a.call(
            "sendMessage",
            {
                "chatId": direct["chatId"],
                "clientMessageId": "m-1",
                "message": "",
                "attachments": [attachment["attachmentId"]],
            },
        )
    )["data"]
    await a.call(
        "sendMessage",
        {
            "chatId": direct["chatId"],
            "clientMessageId": "m-2",
            "message": "hello",
            "replyTo": sent["messageId"],
        },
    )
    messages = [await b.client.next_event("message") for _ in range(2)]
    assert messages[0]["data"]["attachments"] == [attachment]
    assert messages[1]["data"]["replyTo"] == sent["messageId"]
    events += messages
    events.append(await a.client.next_event("receipt"))  # delivered (b acks automatically)
    await b.call("markRead", {"chatId": direct["chatId"], "upToSeq": 2})
    read = await _frame(
        a.client, lambda f: f.get("event") == "receipt" and f["data"]["type"] == "read"
    )
    events.append(read)
    await b.call("ack", {"upTo": messages[1]["data"]["inboxSeq"]})

    # Changes to a message: a reaction, an edit, a delete for everyone.
    ref = {"chatId": direct["chatId"], "messageId": messages[1]["data"]["messageId"]}
    await b.call("react", {**ref, "emoji": "👍"})
    events.append(await a.client.next_event("reaction"))
    await a.call("editMessage", {**ref, "text": "hello again"})
    events.append(await b.client.next_event("messageEdited"))
    await a.call("deleteMessage", ref)
    events.append(await b.client.next_event("messageDeleted"))

    # Disappearing messages: the system message, then a message that carries its expiry.
    await a.call("setDisappearing", {"chatId": direct["chatId"], "seconds": 86400})
    events.append(await b.client.next_event("message"))
    assert events[-1]["data"]["system"]["action"] == "disappearing"
    await a.call(
        "sendMessage",
        {
            "chatId": direct["chatId"],
            "clientMessageId": "m-3",
            "message": "gone tomorrow",
            "replyTo": {"messageId": sent["messageId"], "excerpt": "a photo"},
            "forwardedFrom": {"chatId": direct["chatId"], "messageId": sent["messageId"]},
        },
    )
    expiring = await b.client.next_event("message")
    assert "expiresAt" in expiring["data"]
    assert "quote" in expiring["data"]
    assert expiring["data"]["forwarded"] == {"hops": 1, "manyTimes": False}
    events.append(expiring)
    await a.call("getChat", {"chatId": direct["chatId"]})

    # Ephemeral events and the small commands.
    await a.call("typing", {"chatId": direct["chatId"], "state": "composing"})
    events.append(await b.client.next_event("typing"))
    await b.call("setPresence", {"state": "offline"})
    events.append(await _frame(a.client, lambda f: f.get("event") == "presence"))
    await b.call("setPresence", {"state": "online"})
    events.append(await _frame(a.client, lambda f: f.get("event") == "presence"))
    await a.call("getPresence", {"userIds": [bob["user_id"], carol["user_id"]]})
    await a.call("ping")
    await a.call("muteChat", {"chatId": direct["chatId"], "duration": "8h"})
    await a.call("muteChat", {"chatId": direct["chatId"], "duration": "off"})

    # A contact's status update (queued for Bob, who has Alice's number; she shows her
    # statuses to everyone, not only to her own contacts).
    lookup = {"phones": ["+14155550161"]}
    assert (await client.post("/v1/contacts/lookup", json=lookup, headers=bearer(bob))).is_success
    shown = {"statuses": "everyone"}
    assert (await client.patch("/v1/me/privacy", json=shown, headers=bearer(alice))).is_success
    posted = await client.post("/v1/statuses", json={"text": "hi"}, headers=bearer(alice))
    assert posted.status_code == 201
    events.append(await _frame(b.client, lambda f: f.get("event") == "status"))

    # Errors: from services, from the frame checks, and without an id.
    assert not (await a.call("getChat", {"chatId": "01NOSUCHCHAT"}))["ok"]
    assert not (await a.call("sendMessage", {"chatId": direct["chatId"]}))["ok"]
    assert not (await a.call("nonsense", {}))["ok"]
    await a.client.socket.send("{not json")
    malformed = await a.client.next_answer()
    assert malformed["id"] is None
    assert malformed["error"]["code"] == "malformed_frame"

    for frame in events:
        protocol.check_event(frame, "live")
    for command, answer in a.exchanges + b.exchanges:
        if answer["ok"] or answer["error"]["code"] not in ("invalid_frame", "unknown_command"):
            protocol.check_client({**command, "id": 1}, "live command")
        protocol.check_answer(answer, command["type"] if answer["ok"] else None, "live")
    protocol.check_answer(malformed, None, "live")
    seen = {c["type"] for c, answer in a.exchanges + b.exchanges if answer["ok"]}
    assert seen == set(ANSWERS), set(ANSWERS) - seen
    assert {f["event"] for f in events} == set(EVENTS)
    await raw.close()
