"""The attack suite uses the gateway's fixtures: a live server, sockets and registered users."""

from tests.gateway.conftest import Connect, Register, connect, server, user  # noqa: F401

__all__ = ["Connect", "Register"]
