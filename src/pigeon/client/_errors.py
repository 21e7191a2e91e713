"""The SDK's error tree: every failure the application should handle is a ``PigeonError``.

::

    PigeonError                 code, message
    ├── ApiError                the HTTP API refused a request (status)
    ├── AuthenticationError     the token is invalid or expired, or the device was revoked
    ├── NetworkError            the server could not be reached (HTTP or WebSocket)
    ├── CommandError            the server answered a WebSocket command with an error
    ├── RequestTimeout          no answer came in time: the command may or may not have run
    │   └── SendFailed          send_message gave up after its bounded attempts
    ├── ConnectionClosed        the live connection is over for good (replaced, closed,
    │                           reconnecting gave up)
    └── StoreError              the local store could not keep an event (nothing was acked)
"""

from __future__ import annotations

__all__ = [
    "ApiError",
    "AuthenticationError",
    "CommandError",
    "ConnectionClosed",
    "NetworkError",
    "PigeonError",
    "RequestTimeout",
    "SendFailed",
    "StoreError",
]


class PigeonError(Exception):
    """Base class: a stable, machine-readable ``code`` and a human ``message``."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class ApiError(PigeonError):
    """The HTTP API answered with an error (``status`` is the HTTP status).

    ``retry_after`` is the server's ``Retry-After`` in seconds (429, 503), else None.
    """

    def __init__(
        self, status: int, code: str, message: str, *, retry_after: int | None = None
    ) -> None:
        super().__init__(code, message)
        self.status = status
        self.retry_after = retry_after


class AuthenticationError(PigeonError):
    """The server refused the credentials: HTTP 401, or WebSocket close 1008.

    ``code`` is the server's reason (``invalid_token``, ``device_revoked``, ...).
    The connection does not reconnect after it: log in again.
    """

    def __init__(self, code: str, message: str, close_code: int | None = None) -> None:
        super().__init__(code, message)
        self.close_code = close_code


class NetworkError(PigeonError):
    """The server could not be reached, or the WebSocket handshake failed."""


class CommandError(PigeonError):
    """A WebSocket command was answered with ``ok: false`` (e.g. ``chat_not_found``)."""


class RequestTimeout(PigeonError):
    """No answer arrived in time (or the connection dropped before it did).

    The command may or may not have been applied by the server.
    """


class SendFailed(RequestTimeout):
    """``send_message`` got no answer after all its attempts.

    Sending again with the same ``client_message_id`` is safe: the server
    stores and delivers a message at most once per client message id.
    """

    def __init__(self, code: str, message: str, client_message_id: str) -> None:
        super().__init__(code, message)
        self.client_message_id = client_message_id


class ConnectionClosed(PigeonError):
    """The connection ended and will not come back by itself.

    ``code`` is ``replaced`` (another connection of the same device took over,
    close 4409), ``closed`` (the application closed it), ``reconnect_failed``
    (the bounded reconnect attempts ran out) or ``protocol_error``.
    """

    def __init__(self, code: str, message: str, close_code: int | None = None) -> None:
        super().__init__(code, message)
        self.close_code = close_code


class StoreError(PigeonError):
    """The local store (``LocalStore``) failed: ``store_failed`` (disk, database),
    ``store_mismatch`` (the file belongs to another device) or ``store_unbound``.

    An event the store could not keep is neither handed out nor acked: the
    server keeps it, and ``events()`` tries again when iterated again.
    """
