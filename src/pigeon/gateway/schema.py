"""The WebSocket protocol as one JSON Schema document (draft 2020-12).

Generated from the models: client commands from ``frames.COMMANDS``, server
frames from ``gateway.events``. ``pigeon protocol-schema`` prints it, and
``docs/protocol.schema.json`` is a copy the tests keep in step with it.

Every frame, in either direction, is valid against the document's root. Each
command, answer and event also has a definition of its own under ``$defs``
(``SendMessageCommand``, ``SendMessageAnswer``, ``MessageEvent``, ...);
``ClientFrame`` and ``ServerFrame`` are the two directions.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import RootModel
from pydantic.json_schema import models_json_schema

from pigeon.gateway.events import ServerFrame
from pigeon.gateway.frames import CommandUnion

DIALECT = "https://json-schema.org/draft/2020-12/schema"
REF_TEMPLATE = "#/$defs/{model}"


class ClientFrame(RootModel[Any]):
    """Any frame a client sends: `{"id"?, "type": "<command>", "data": {...}}`."""

    root: CommandUnion


def protocol_schema() -> dict[str, Any]:
    """The whole protocol: ``$defs`` for every frame, and a root any frame is valid against."""
    _, document = models_json_schema(
        [(ClientFrame, "validation"), (ServerFrame, "validation")],
        ref_template=REF_TEMPLATE,
    )
    definitions = document["$defs"]
    return {
        "$schema": DIALECT,
        "title": "Pigeon WebSocket protocol",
        "description": (
            "Frames exchanged on ws://HOST:PORT/v1/ws, one JSON object per text frame. "
            "See docs/protocol.md for what they mean."
        ),
        "anyOf": [
            {"$ref": REF_TEMPLATE.format(model=name)} for name in ("ClientFrame", "ServerFrame")
        ],
        "$defs": dict(sorted(definitions.items())),
    }


def render() -> str:
    """The document as committed in ``docs/protocol.schema.json``."""
    return json.dumps(protocol_schema(), indent=2, ensure_ascii=False) + "\n"
