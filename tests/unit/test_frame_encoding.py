"""How the gateway encodes the frames it sends."""

from __future__ import annotations

import json

from pigeon.gateway.events import encode


def test_frames_are_compact_utf8_json() -> None:
    frame = {"event": "message", "data": {"message": "héllo 👋 \u2028", "inboxSeq": 2**53 - 1}}
    text = encode(frame)
    assert text == json.dumps(frame, separators=(",", ":"), ensure_ascii=False)
    assert json.loads(text) == frame


def test_text_utf8_cannot_hold_goes_out_escaped_instead_of_failing() -> None:
    frame = {"id": 1, "ok": True, "data": {"name": "broken \ud800 text"}}
    text = encode(frame)
    text.encode()  # the socket sends UTF-8: this must not raise
    assert json.loads(text) == frame
