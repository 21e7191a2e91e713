"""Text catalogs kept as one TOML file per language (the SMS and the email texts).

The package's built-in files come first, then an operator's directory of
``<locale>.toml`` files, which overrides them entry by entry.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterator
from importlib.resources import files
from pathlib import Path
from typing import Any


def locale_tag(locale: str) -> str:
    """``"pt_BR"``, ``"PT-br"`` -> ``"pt-br"``: one spelling for file names and requests."""
    return locale.strip().lower().replace("_", "-")


def catalog_files(package: str, override_dir: Path | None) -> Iterator[tuple[str, dict[str, Any]]]:
    """(locale tag, parsed entries) of ``package``'s ``templates/``, then of the overrides."""
    for resource in files(package).joinpath("templates").iterdir():
        if resource.name.endswith(".toml"):
            locale = resource.name.removesuffix(".toml")
            yield locale_tag(locale), tomllib.loads(resource.read_text("utf-8"))
    if override_dir is not None:
        for path in sorted(override_dir.glob("*.toml")):
            yield locale_tag(path.stem), tomllib.loads(path.read_text("utf-8"))


def fallbacks(locale: str | None, default: str) -> list[str]:
    """The tags to try for ``locale``: itself, its language (``pt-br`` -> ``pt``), the
    default's, then English."""
    found = []
    for wanted in (locale, default):
        if wanted:
            tag = locale_tag(wanted)
            found += [tag, tag.split("-")[0]]
    return [*found, "en"]
