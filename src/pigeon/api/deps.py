"""FastAPI dependencies: the container, the caller's address and the caller's device."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from pigeon.bootstrap import Container
from pigeon.domain.errors import Unauthenticated
from pigeon.services.accounts import Principal

_bearer = HTTPBearer(auto_error=False, description="The device's access token.")


# The dependencies are coroutines, though they never await: FastAPI runs a plain
# function in a worker thread, and those two thread hops were a quarter of a
# code request's server CPU (py-spy, docs/performance.md).


async def get_container(request: Request) -> Container:
    container: Container = request.app.state.container
    return container


async def client_ip(request: Request) -> str:
    # uvicorn rewrites the client from X-Forwarded-For only when told to trust it.
    return request.client.host if request.client else "unknown"


async def current_device(
    request: Request,
    container: Annotated[Container, Depends(get_container)],
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise Unauthenticated("missing_token", _missing_token(request.headers.get("authorization")))
    return await container.accounts.authenticate(credentials.credentials)


def _missing_token(header: str | None) -> str:
    """What is wrong with the Authorization header, and how it should read."""
    expected = "send 'Authorization: Bearer <access token>'"
    if header is None or not header.strip():
        return f"An access token is required: {expected}."
    scheme, _, rest = header.strip().partition(" ")
    if not rest.strip():  # one word: a token without its scheme, most likely
        return f"The Authorization header has no scheme: {expected}."
    return f"The Authorization scheme must be Bearer, not {scheme[:20]!r}: {expected}."


ContainerDep = Annotated[Container, Depends(get_container)]
PrincipalDep = Annotated[Principal, Depends(current_device)]
ClientIp = Annotated[str, Depends(client_ip)]
