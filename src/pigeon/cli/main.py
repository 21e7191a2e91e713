"""The ``pigeon`` command: serve, migrate and operator tasks."""

from __future__ import annotations

import asyncio
import signal
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Column, Table

from pigeon.cli.chat import chat
from pigeon.config import Settings

app = typer.Typer(help="Pigeon, a self-hostable messaging server.", no_args_is_help=True)
admin = typer.Typer(help="Operator tasks on the database.", no_args_is_help=True)
app.add_typer(admin, name="admin")
app.add_typer(chat, name="chat")
console = Console()

DataDir = Annotated[
    Path | None, typer.Option(help="Data directory.", envvar="PIGEON_DATA_DIR", show_envvar=True)
]
DatabaseUrl = Annotated[
    str | None,
    typer.Option(help="SQLAlchemy database URL.", envvar="PIGEON_DATABASE_URL", show_envvar=True),
]


def _id_column(header: str) -> Column:
    # Ids are what operators copy into the next command: never wrap or cut them,
    # even when the output is piped (rich then assumes 80 columns).
    return Column(header, no_wrap=True, min_width=26)


def _when(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M")


def load_settings(**overrides: Any) -> Settings:
    """Settings from the environment and config file, with command-line options on top."""
    return Settings(**{key: value for key, value in overrides.items() if value is not None})


def _exit_cleanly(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(envvar="PIGEON_HOST", show_envvar=True)] = None,
    port: Annotated[int | None, typer.Option(envvar="PIGEON_PORT", show_envvar=True)] = None,
    data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
    workers: Annotated[
        int | None,
        typer.Option(
            help="Processes on one port, each a node on the bus (needs PostgreSQL and a bus).",
            envvar="PIGEON_WORKERS",
            show_envvar=True,
        ),
    ] = None,
) -> None:
    """Run the server (migrating the database first)."""
    from pigeon.bootstrap import preflight
    from pigeon.cli.serving import serve_in_processes, serve_in_this_process
    from pigeon.observability.logging import configure_logging

    overrides = {"host": host, "port": port, "data_dir": data_dir, "database_url": database_url}
    settings = load_settings(**overrides, workers=workers)
    configure_logging(settings.log_level, settings.log_format)
    problem = asyncio.run(preflight(settings))
    if problem is not None:
        typer.echo(f"pigeon serve: {problem}", err=True)
        raise typer.Exit(2)
    # uvicorn shuts down gracefully on SIGTERM, then raises the signal again with
    # the handler that was there before it; with the default one the process would
    # die by the signal (exit status 143) after a clean stop. Exit with 0 instead.
    signal.signal(signal.SIGTERM, _exit_cleanly)
    if settings.workers > 1:
        started = serve_in_processes(settings, overrides)
    else:
        started = serve_in_this_process(settings)
    if not started:  # the port is taken, say (uvicorn.run exits the same way)
        raise typer.Exit(1)


@app.command("protocol-schema")
def protocol_schema() -> None:
    """Print the JSON Schema of the WebSocket protocol (docs/protocol.schema.json)."""
    from pigeon.gateway.schema import render

    typer.echo(render(), nl=False)


@app.command()
def migrate(data_dir: DataDir = None, database_url: DatabaseUrl = None) -> None:
    """Apply pending database migrations."""
    from pigeon.storage import migrate as migrations
    from pigeon.storage.engine import create_engine

    settings = load_settings(data_dir=data_dir, database_url=database_url)
    settings.data_dir.mkdir(parents=True, exist_ok=True)

    async def run() -> list[str]:
        engine = create_engine(settings.effective_database_url)
        try:
            pending = await migrations.pending_revisions(engine)
            await migrations.upgrade(engine)
            return pending
        finally:
            await engine.dispose()

    applied = asyncio.run(run())
    # soft_wrap: one line however many migrations, for scripts that read it.
    console.print(
        f"applied {len(applied)} migration(s): {', '.join(applied) or 'none pending'}",
        soft_wrap=True,
    )


def _with_admin(settings: Settings, action: Any) -> Any:
    """Run ``action(admin_service)`` on the server's database, which must exist already."""
    from pigeon.bootstrap import build_admin
    from pigeon.cli.admin_database import (
        NoPigeonDatabase,
        refuse_missing_file,
        require_pigeon_tables,
    )

    async def run() -> Any:
        refuse_missing_file(settings)
        service, engine = build_admin(settings)
        try:
            await require_pigeon_tables(engine, settings)
            return await action(service)
        finally:
            await engine.dispose()

    try:
        return asyncio.run(run())
    except NoPigeonDatabase as exc:
        console.print(f"[red]{escape(str(exc))}[/red]", soft_wrap=True)
        raise typer.Exit(1) from None


@admin.command("users")
def list_users(
    limit: Annotated[int, typer.Option(min=1, max=10_000)] = 100,
    after: Annotated[str | None, typer.Option(help="List users after this id.")] = None,
    data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
) -> None:
    """List users, oldest first."""
    settings = load_settings(data_dir=data_dir, database_url=database_url)
    users = _with_admin(settings, lambda admin: admin.list_users(limit, after))
    table = Table(
        _id_column("id"),
        Column("phone", no_wrap=True),
        Column("name", ratio=1),
        Column("created (UTC)", no_wrap=True),
    )
    for user in users:
        table.add_row(user.id, user.phone, user.name, _when(user.created_at))
    console.print(table)


@admin.command("devices")
def list_devices(user_id: str, data_dir: DataDir = None, database_url: DatabaseUrl = None) -> None:
    """List one user's devices."""
    settings = load_settings(data_dir=data_dir, database_url=database_url)
    devices = _with_admin(settings, lambda admin: admin.list_devices(user_id))
    table = Table(
        _id_column("id"),
        Column("name", ratio=1),
        Column("platform", no_wrap=True),
        Column("last seen (UTC)", no_wrap=True),
    )
    for device in devices:
        table.add_row(device.id, device.name, device.platform.value, _when(device.last_seen_at))
    console.print(table)


@admin.command("revoke-device")
def revoke_device(
    device_id: str, data_dir: DataDir = None, database_url: DatabaseUrl = None
) -> None:
    """Revoke a device: its tokens stop working at once."""
    from pigeon.domain.errors import NotFound

    settings = load_settings(data_dir=data_dir, database_url=database_url)
    try:
        _with_admin(settings, lambda admin: admin.revoke_device(device_id))
    except NotFound:
        console.print(f"[red]no device {device_id}[/red]")
        raise typer.Exit(1) from None
    console.print(f"revoked {device_id}")
