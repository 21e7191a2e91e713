"""SMS texts: one TOML file per language, ``$name`` placeholders, English as fallback."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from string import Template

from pigeon.locales import catalog_files, fallbacks


class TemplateCatalog:
    """Built-in texts, optionally overridden file by file from an operator's directory."""

    def __init__(self, default_locale: str = "en", override_dir: Path | None = None) -> None:
        self._default = default_locale
        self._texts: dict[str, dict[str, str]] = {}
        for tag, entries in catalog_files("pigeon.sms", override_dir):
            self._texts.setdefault(tag, {}).update(
                {name: str(value) for name, value in entries.items()}
            )

    @property
    def locales(self) -> list[str]:
        return sorted(self._texts)

    def render(self, template: str, locale: str | None, params: Mapping[str, str]) -> str:
        """The text of ``template`` in the best match for ``locale`` (``"pt-BR"`` tries ``pt``)."""
        for candidate in fallbacks(locale, self._default):
            text = self._texts.get(candidate, {}).get(template)
            if text is not None:
                return Template(text).substitute(params)
        raise KeyError(f"no SMS template named {template!r}")
