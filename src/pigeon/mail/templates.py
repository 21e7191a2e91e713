"""Email texts: one TOML file per language (a subject, a text and an HTML body per
template), rendered with Jinja2; HTML with autoescaping, so a name cannot inject markup.

Like the SMS texts: English is the fallback, and an operator's directory of
``<locale>.toml`` files overrides the built-in ones entry by entry.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from importlib.resources import files
from pathlib import Path

from jinja2 import Environment, StrictUndefined


def _tag(locale: str) -> str:
    return locale.strip().lower().replace("_", "-")


class EmailTemplateCatalog:
    def __init__(self, default_locale: str = "en", override_dir: Path | None = None) -> None:
        self._default = default_locale
        self._texts: dict[str, dict[str, dict[str, str]]] = {}
        self._text_env = Environment(autoescape=False, undefined=StrictUndefined)  # noqa: S701 (plain text)
        self._html_env = Environment(autoescape=True, undefined=StrictUndefined)
        for resource in files("pigeon.mail").joinpath("templates").iterdir():
            if resource.name.endswith(".toml"):
                self._load(resource.name.removesuffix(".toml"), resource.read_text("utf-8"))
        if override_dir is not None:
            for path in sorted(override_dir.glob("*.toml")):
                self._load(path.stem, path.read_text("utf-8"))

    def _load(self, locale: str, text: str) -> None:
        entries = tomllib.loads(text)
        catalog = self._texts.setdefault(_tag(locale), {})
        for name, parts in entries.items():
            catalog.setdefault(name, {}).update({k: str(v) for k, v in parts.items()})

    def render(
        self, template: str, locale: str | None, params: Mapping[str, str]
    ) -> tuple[str, str, str]:
        """(subject, text, html) of ``template`` in the best match for ``locale``."""
        for candidate in self._candidates(locale):
            parts = self._texts.get(candidate, {}).get(template)
            if parts is not None:
                subject = self._text_env.from_string(parts["subject"]).render(params)
                text = self._text_env.from_string(parts["text"]).render(params)
                html = self._html_env.from_string(parts["html"]).render(params)
                return subject.strip(), text, html
        raise KeyError(f"no email template named {template!r}")

    def _candidates(self, locale: str | None) -> list[str]:
        found = []
        for wanted in (locale, self._default):
            if wanted:
                tag = _tag(wanted)
                found += [tag, tag.split("-")[0]]
        return [*found, "en"]
