"""The default SMS provider: writes each message to the log and to an outbox file.

A developer running ``make run`` reads their code from
``<data dir>/sms-outbox.jsonl``, one JSON object per line.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path

import structlog

from pigeon.services.ports import SmsMessage

log = structlog.get_logger(__name__)


class ConsoleSmsProvider:
    def __init__(self, outbox: Path) -> None:
        self._outbox = outbox
        self._lock = asyncio.Lock()

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
        async with self._lock:
            await asyncio.to_thread(self._append, line)
        log.info("sms.console", to=message.to, template=message.template, body=message.body)

    def _append(self, line: str) -> None:
        self._outbox.parent.mkdir(parents=True, exist_ok=True)
        with self._outbox.open("a", encoding="utf-8") as handle:
            handle.write(line + "\n")
