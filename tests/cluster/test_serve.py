"""``pigeon serve`` as several processes on one port, and the settings it refuses at startup."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from tests.cluster.conftest import BUSES
from tests.test_server import PIGEON, free_port, pigeon_serve

STARTUP_SECONDS = 30


def serve_refusing(tmp_path: Path, **env: str) -> tuple[int, str]:
    """Run ``pigeon serve`` with these settings; its exit status and output (it must stop)."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("PIGEON_")}
    environment |= {"PIGEON_DATA_DIR": str(tmp_path / "var"), "PIGEON_PORT": str(free_port())}
    environment |= env
    done = subprocess.run(
        [str(PIGEON), "serve"],
        env=environment,
        capture_output=True,
        text=True,
        timeout=STARTUP_SECONDS,
        check=False,
    )
    return done.returncode, done.stdout + done.stderr


def test_several_processes_refuse_sqlite(tmp_path: Path) -> None:
    status, output = serve_refusing(tmp_path, PIGEON_WORKERS="2", PIGEON_BUS_URL=BUSES["redis"])
    assert status == 2, output
    assert "need PostgreSQL" in output
    assert "PIGEON_DATABASE_URL" in output
    assert "Traceback" not in output
    assert not (tmp_path / "var" / "pigeon.db").exists()


def test_a_bus_url_with_an_unknown_scheme_is_refused(tmp_path: Path, postgres_url: str) -> None:
    status, output = serve_refusing(
        tmp_path, PIGEON_DATABASE_URL=postgres_url, PIGEON_BUS_URL="kafka://127.0.0.1:9092"
    )
    assert status == 2, output
    assert "PIGEON_BUS_URL has an unknown scheme 'kafka'" in output
    assert "Traceback" not in output


@pytest.mark.parametrize("url", ["redis://127.0.0.1:1/0", "nats://127.0.0.1:1"])
def test_a_bus_that_cannot_be_reached_at_startup_is_named(
    tmp_path: Path, postgres_url: str, url: str
) -> None:
    status, output = serve_refusing(tmp_path, PIGEON_DATABASE_URL=postgres_url, PIGEON_BUS_URL=url)
    assert status == 2, output
    assert f"cannot reach the bus of PIGEON_BUS_URL ({url})" in output
    assert "Traceback" not in output


def test_two_workers_serve_one_port_as_two_nodes(tmp_path: Path, postgres_url: str) -> None:
    env = {"PIGEON_WORKERS": "2", "PIGEON_BUS_URL": BUSES["redis"]}
    with pigeon_serve(tmp_path / "var", database_url=postgres_url, env=env) as server:
        server.wait_until_healthy()
        nodes = set()
        deadline = time.monotonic() + STARTUP_SECONDS
        while len(nodes) < 2 and time.monotonic() < deadline:
            # A new connection each time: the kernel hands it to either worker.
            with httpx.Client(base_url=server.base_url, timeout=5) as client:
                health = client.get("/health").json()
            if health["status"] == "ok":
                nodes.add(health["node"])
        assert len(nodes) == 2, server.output()
        assert {node.rsplit("-", 2)[0] for node in nodes} == {os.uname().nodename}
        assert server.stop() == 0, server.output()
