"""Email texts: one TOML file per language (a subject, a text and an HTML body per
template), rendered with Jinja2; HTML with autoescaping, so a name cannot inject markup.

Like the SMS texts: English is the fallback, and an operator's directory of
``<locale>.toml`` files overrides the built-in ones entry by entry.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from jinja2 import Environment, StrictUndefined

from pigeon.locales import catalog_files, fallbacks


class EmailTemplateCatalog:
    def __init__(self, default_locale: str = "en", override_dir: Path | None = None) -> None:
        self._default = default_locale
        self._texts: dict[str, dict[str, dict[str, str]]] = {}
        self._text_env = Environment(autoescape=False, undefined=StrictUndefined)  # noqa: S701 (plain text)
        self._html_env = Environment(autoescape=True, undefined=StrictUndefined)
        for tag, entries in catalog_files("pigeon.mail", override_dir):
            catalog = self._texts.setdefault(tag, {})
            for name, parts in entries.items():
                catalog.setdefault(name, {}).update({k: str(v) for k, v in parts.items()})

    def render(
        self, template: str, locale: str | None, params: Mapping[str, str]
    ) -> tuple[str, str, str]:
        """(subject, text, html) of ``template`` in the best match for ``locale``."""
        for candidate in fallbacks(locale, self._default):
            parts = self._texts.get(candidate, {}).get(template)
            if parts is not None:
                subject = self._text_env.from_string(parts["subject"]).render(params)
                text = self._text_env.from_string(parts["text"]).render(params)
                html = self._html_env.from_string(parts["html"]).render(params)
                return subject.strip(), text, html
        raise KeyError(f"no email template named {template!r}")
