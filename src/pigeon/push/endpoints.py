"""The SSRF rule for Web Push endpoints: https, and a host that resolves to public addresses.

A Web Push endpoint is a URL the client chose, and the server will POST to
it: without this rule any user could make the server reach its own network
(a metadata service, a database's HTTP port). It is checked at registration
and again before every send, against a name that resolved to a public
address then and to a private one now (DNS rebinding); the sender then
connects to an address checked here, not to whatever the name says later.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket

import httpx

from pigeon.domain.push import InvalidPushRegistration

MAX_ENDPOINT_LENGTH = 2048


def _parse(endpoint: str) -> httpx.URL:
    if len(endpoint) > MAX_ENDPOINT_LENGTH:
        raise InvalidPushRegistration(
            "invalid_push_endpoint",
            f"The endpoint is longer than {MAX_ENDPOINT_LENGTH} characters.",
        )
    try:
        url = httpx.URL(endpoint)
    except (httpx.InvalidURL, TypeError, ValueError) as exc:
        raise InvalidPushRegistration(
            "invalid_push_endpoint", "The endpoint is not a URL."
        ) from exc
    if url.scheme not in ("http", "https") or not url.host:
        raise InvalidPushRegistration(
            "invalid_push_endpoint", "The endpoint is not an http(s) URL with a host."
        )
    return url


def _is_public(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


class EndpointGuard:
    """``EndpointCheck``; with ``allow_private`` (PIGEON_PUSH_ALLOW_PRIVATE_ENDPOINTS) http and
    private hosts pass too: for tests and private deployments."""

    def __init__(self, allow_private: bool) -> None:
        self.allow_private = allow_private

    async def check(self, endpoint: str) -> None:
        await self.addresses(endpoint)

    async def addresses(self, endpoint: str) -> list[str]:
        """The addresses the endpoint may be reached at (empty: connect by name)."""
        url = _parse(endpoint)
        if self.allow_private:
            return []
        if url.scheme != "https":
            raise InvalidPushRegistration(
                "push_endpoint_not_https", "A push endpoint must be an https URL."
            )
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(
                url.host, url.port or 443, type=socket.SOCK_STREAM
            )
        except (OSError, UnicodeError) as exc:
            raise InvalidPushRegistration(
                "push_endpoint_not_public", f"The endpoint's host {url.host!r} does not resolve."
            ) from exc
        addresses = [str(info[4][0]) for info in infos]
        if not addresses or not all(_is_public(a) for a in addresses):
            raise InvalidPushRegistration(
                "push_endpoint_not_public",
                f"The endpoint's host {url.host!r} resolves to an address that is not public "
                "(set PIGEON_PUSH_ALLOW_PRIVATE_ENDPOINTS=true to allow it on a private network).",
            )
        return addresses
