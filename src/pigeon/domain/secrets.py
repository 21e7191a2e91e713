"""Random codes and tokens, and the one-way forms Pigeon stores instead of them."""

import hashlib
import hmac
import secrets

CODE_LENGTH = 6


def new_code() -> str:
    """A uniformly random six-digit code (leading zeros allowed)."""
    return f"{secrets.randbelow(10**CODE_LENGTH):0{CODE_LENGTH}d}"


def hash_code(key: bytes, phone: str, code: str) -> str:
    """Keyed hash of a code, bound to its phone number.

    Six digits are a million guesses away, so a plain hash would fall to an
    offline search; an HMAC under the server's secret key does not.
    """
    return hmac.new(key, f"{phone}:{code}".encode(), hashlib.sha256).hexdigest()


def codes_match(stored_hash: str, candidate_hash: str) -> bool:
    return hmac.compare_digest(stored_hash, candidate_hash)


def new_token(prefix: str) -> str:
    """A bearer token with 256 random bits; the prefix tells its kind at a glance."""
    return f"{prefix}_{secrets.token_urlsafe(32)}"


def hash_token(token: str) -> str:
    """Tokens carry 256 bits of entropy, so an unkeyed SHA-256 is enough to store them."""
    return hashlib.sha256(token.encode()).hexdigest()


def is_code_shaped(code: str) -> bool:
    return len(code) == CODE_LENGTH and code.isascii() and code.isdigit()
