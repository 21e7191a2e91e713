"""The default SMS provider: writes each message to the log and to an outbox file.

A developer running ``make run`` reads their code from
``<data dir>/sms-outbox.jsonl``, one JSON object per line.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import structlog

from pigeon.outbox_file import JsonLinesOutbox
from pigeon.services.ports import SmsMessage

log = structlog.get_logger(__name__)


class ConsoleSmsProvider:
    def __init__(self, outbox: Path) -> None:
        self._outbox = JsonLinesOutbox(outbox)

    async def send(self, message: SmsMessage) -> None:
        line = json.dumps(
            {
                "to": message.to,
                "template": message.template,
                "body": message.body,
                "sent_at": datetime.now(UTC).isoformat(),
            },
            ensure_ascii=False,
        )
        await self._outbox.append(line)
        log.info("sms.console", to=message.to, template=message.template, body=message.body)
