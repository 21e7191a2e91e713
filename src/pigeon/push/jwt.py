"""The two JWTs push services want: RS256 (Google's OAuth) and ES256 (VAPID, APNs)."""

from __future__ import annotations

import base64
import json

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _signing_input(header: dict[str, str], claims: dict[str, object]) -> str:
    return (
        b64url(json.dumps(header, separators=(",", ":")).encode())
        + "."
        + b64url(json.dumps(claims, separators=(",", ":")).encode())
    )


def es256(
    key: ec.EllipticCurvePrivateKey, claims: dict[str, object], kid: str | None = None
) -> str:
    """Signed with P-256; the signature is r || s, 64 bytes, as JWS requires (not DER)."""
    header = {"typ": "JWT", "alg": "ES256"} | ({"kid": kid} if kid else {})
    signing_input = _signing_input(header, claims)
    r, s = decode_dss_signature(key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256())))
    return signing_input + "." + b64url(r.to_bytes(32, "big") + s.to_bytes(32, "big"))


def rs256(key: rsa.RSAPrivateKey, claims: dict[str, object], kid: str | None = None) -> str:
    header = {"typ": "JWT", "alg": "RS256"} | ({"kid": kid} if kid else {})
    signing_input = _signing_input(header, claims)
    signature = key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
    return signing_input + "." + b64url(signature)
