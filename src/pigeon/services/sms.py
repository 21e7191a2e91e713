"""Sending templated SMS through whichever provider is configured."""

from __future__ import annotations

from collections.abc import Callable

from pigeon.services.ports import SmsMessage, SmsProvider, SmsTemplates


class SmsService:
    """Renders a named template in the recipient's language and sends it."""

    def __init__(
        self,
        provider: SmsProvider,
        templates: SmsTemplates,
        on_sent: Callable[[str], None] = lambda template: None,
    ) -> None:
        self._provider = provider
        self._templates = templates
        self._on_sent = on_sent

    async def send(self, to: str, template: str, locale: str | None, **params: str) -> None:
        body = self._templates.render(template, locale, params)
        await self._provider.send(SmsMessage(to=to, template=template, body=body))
        self._on_sent(template)
