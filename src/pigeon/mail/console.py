"""The default email provider: appends each message to an outbox file and logs that it did.

A developer reads the recovery-email code from ``<data dir>/email-outbox.jsonl``,
one JSON object per line, as with the SMS outbox.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import structlog

from pigeon.outbox_file import JsonLinesOutbox
from pigeon.services.ports import EmailMessage

log = structlog.get_logger(__name__)


class ConsoleEmailProvider:
    def __init__(self, outbox: Path) -> None:
        self._outbox = JsonLinesOutbox(outbox)

    async def send(self, message: EmailMessage) -> None:
        line = json.dumps(
            {
                "to": message.to,
                "template": message.template,
                "subject": message.subject,
                "text": message.text,
                "html": message.html,
                "sent_at": datetime.now(UTC).isoformat(),
            },
            ensure_ascii=False,
        )
        await self._outbox.append(line)
        log.info("email.console", template=message.template)
