"""Email over SMTP with aiosmtplib: STARTTLS, implicit TLS or none, with optional login."""

from __future__ import annotations

from email.message import EmailMessage as MimeMessage
from email.utils import make_msgid
from typing import Literal

import aiosmtplib
import structlog

from pigeon.domain.errors import Unavailable
from pigeon.services.ports import EmailMessage

log = structlog.get_logger(__name__)

Security = Literal["starttls", "tls", "none"]


class SmtpEmailProvider:
    def __init__(
        self,
        host: str,
        port: int,
        sender: str,
        security: Security = "starttls",
        username: str | None = None,
        password: str | None = None,
        timeout: float = 10.0,
    ) -> None:
        self._host = host
        self._port = port
        self._sender = sender
        self._security = security
        self._username = username or None
        self._password = password or None
        self._timeout = timeout

    async def send(self, message: EmailMessage) -> None:
        mime = MimeMessage()
        mime["From"] = self._sender
        mime["To"] = message.to
        mime["Subject"] = message.subject  # non-ASCII becomes an RFC 2047 encoded word
        mime["Message-ID"] = make_msgid(domain=self._sender.rpartition("@")[2] or None)
        mime.set_content(message.text)
        mime.add_alternative(message.html, subtype="html")
        try:
            await aiosmtplib.send(
                mime,
                hostname=self._host,
                port=self._port,
                username=self._username,
                password=self._password,
                use_tls=self._security == "tls",
                start_tls=self._security == "starttls",
                timeout=self._timeout,
            )
        except (aiosmtplib.SMTPException, OSError) as exc:
            log.warning("email.smtp.failed", template=message.template, error=type(exc).__name__)
            raise Unavailable("email_unavailable", "The email could not be sent.") from exc
        log.info("email.smtp.sent", template=message.template)
