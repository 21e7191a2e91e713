"""The error tree every layer speaks.

Each error has a stable, machine-readable ``code`` (documented in
docs/errors.md) and a human message. Adapters at the edge (HTTP, WebSocket)
turn the ``kind`` into a status code or an error frame; services never do.

    PigeonError
    ├── InvalidInput        (kind "invalid")       bad phone, bad PIN format, ...
    ├── Unauthenticated     (kind "unauthenticated") missing, unknown or revoked token
    ├── Forbidden           (kind "forbidden")     wrong code, wrong PIN
    ├── NotFound            (kind "not_found")     unknown or invisible object
    ├── Conflict            (kind "conflict")      too many devices, ...
    ├── Locked              (kind "locked")        a PIN is required
    ├── RateLimited         (kind "rate_limited")  carries retry_after seconds
    └── Unavailable         (kind "unavailable")   an upstream (SMS, database) failed
"""

from __future__ import annotations


class PigeonError(Exception):
    kind = "invalid"

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class InvalidInput(PigeonError):
    kind = "invalid"


class Unauthenticated(PigeonError):
    kind = "unauthenticated"


class Forbidden(PigeonError):
    kind = "forbidden"


class NotFound(PigeonError):
    kind = "not_found"


class Conflict(PigeonError):
    kind = "conflict"


class Locked(PigeonError):
    kind = "locked"


class RateLimited(PigeonError):
    kind = "rate_limited"

    def __init__(self, code: str, message: str, retry_after: int) -> None:
        super().__init__(code, message)
        self.retry_after = max(1, retry_after)


class Unavailable(PigeonError):
    kind = "unavailable"


class Unprocessable(PigeonError):
    """Well-formed but unusable input (a push subscription whose keys are not keys): 422."""

    kind = "unprocessable"
