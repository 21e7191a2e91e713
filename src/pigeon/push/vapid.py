"""The server's VAPID key pair (RFC 8292) and the JWT that signs each Web Push request."""

from __future__ import annotations

import os
import time
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from pigeon.domain.push import b64url_decode
from pigeon.push.jwt import b64url, es256

KEY_FILE = "vapid_private.pem"
JWT_LIFETIME_SECONDS = 12 * 3600  # RFC 8292 allows at most 24 h


class VapidKeys:
    def __init__(self, private_key: ec.EllipticCurvePrivateKey, subject: str) -> None:
        self.private_key = private_key
        self.subject = subject
        point = private_key.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
        self.public_key = b64url(point)  # what browsers pass as applicationServerKey

    def authorization(self, audience: str, now: float | None = None) -> str:
        """The ``Authorization: vapid t=..., k=...`` header for a push service's origin."""
        claims = {
            "aud": audience,
            "exp": int((now or time.time()) + JWT_LIFETIME_SECONDS),
            "sub": self.subject,
        }
        return f"vapid t={es256(self.private_key, claims)}, k={self.public_key}"


def parse_private_key(text: str) -> ec.EllipticCurvePrivateKey:
    """A P-256 key as PEM, or as the base64url private scalar web-push tools print."""
    text = text.strip()
    if text.startswith("-----BEGIN"):
        key = serialization.load_pem_private_key(text.encode(), password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
            raise ValueError("not a P-256 private key")
        return key
    scalar = b64url_decode(text)
    if len(scalar) != 32:
        raise ValueError("a raw VAPID private key is 32 bytes, base64url")
    return ec.derive_private_key(int.from_bytes(scalar, "big"), ec.SECP256R1())


def load_vapid_keys(configured: str | None, data_dir: Path, subject: str) -> VapidKeys:
    """The configured key (PIGEON_VAPID_PRIVATE_KEY), or one generated once into the data dir.

    Kept across restarts: browsers subscribed with the public key, and a new
    key would orphan every Web Push subscription.
    """
    if configured:
        return VapidKeys(parse_private_key(configured), subject)
    path = data_dir / KEY_FILE
    if not path.exists():
        pem = ec.generate_private_key(ec.SECP256R1()).private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        # Written whole beside it, then linked into place: a node starting at the
        # same moment (``--workers``, a shared data dir) sees no key or a whole one.
        draft = path.with_name(f"{KEY_FILE}.{os.getpid()}.tmp")
        fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(pem)
        try:
            os.link(draft, path)
        except FileExistsError:  # another process made it first: use theirs
            pass
        finally:
            draft.unlink()
    return VapidKeys(parse_private_key(path.read_text()), subject)
