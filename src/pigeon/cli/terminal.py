"""The terminal ``pigeon chat`` writes to, and its one-line failures."""

from __future__ import annotations

from typing import NoReturn

import typer
from rich.console import Console
from rich.text import Text

# Tests swap this for a console of fixed width; modules reach it as terminal.console.
console = Console()


def say(text: str, style: str | None = None) -> None:
    """A line as it is: no markup, never wrapped (ids and paths get copied from it)."""
    console.print(Text(text, style=style or ""), soft_wrap=True)


def fail(message: str) -> NoReturn:
    """One red line saying what went wrong and what to do, then exit status 1."""
    say(message, "red")
    raise typer.Exit(1)
