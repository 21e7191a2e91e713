"""SMS texts: one TOML file per language, ``$name`` placeholders, English as fallback."""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from importlib.resources import files
from pathlib import Path
from string import Template


def _tag(locale: str) -> str:
    """``"pt_BR"``, ``"PT-br"`` -> ``"pt-br"``: one spelling for file names and requests."""
    return locale.strip().lower().replace("_", "-")


class TemplateCatalog:
    """Built-in texts, optionally overridden file by file from an operator's directory."""

    def __init__(self, default_locale: str = "en", override_dir: Path | None = None) -> None:
        self._default = default_locale
        self._texts: dict[str, dict[str, str]] = {}
        for resource in files("pigeon.sms").joinpath("templates").iterdir():
            if resource.name.endswith(".toml"):
                self._load(resource.name.removesuffix(".toml"), resource.read_text("utf-8"))
        if override_dir is not None:
            for path in sorted(override_dir.glob("*.toml")):
                self._load(path.stem, path.read_text("utf-8"))

    def _load(self, locale: str, text: str) -> None:
        entries = tomllib.loads(text)
        self._texts.setdefault(_tag(locale), {}).update(
            {name: str(value) for name, value in entries.items()}
        )

    @property
    def locales(self) -> list[str]:
        return sorted(self._texts)

    def render(self, template: str, locale: str | None, params: Mapping[str, str]) -> str:
        """The text of ``template`` in the best match for ``locale`` (``"pt-BR"`` tries ``pt``)."""
        for candidate in self._candidates(locale):
            text = self._texts.get(candidate, {}).get(template)
            if text is not None:
                return Template(text).substitute(params)
        raise KeyError(f"no SMS template named {template!r}")

    def _candidates(self, locale: str | None) -> list[str]:
        found = []
        for wanted in (locale, self._default):
            if wanted:
                tag = _tag(wanted)
                found += [tag, tag.split("-")[0]]
        return [*found, "en"]
