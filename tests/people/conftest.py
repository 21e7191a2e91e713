"""People tests run against a live server (HTTP and real WebSockets) on both databases."""

from tests.gateway.conftest import Connect, Register, connect, server, user  # noqa: F401
