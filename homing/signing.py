"""`Upstash-Signature`: the JWT every delivery carries, as the SDKs' `Receiver` verifies it.

HS256, keyed by the UTF-8 bytes of the account's current signing key, so the official SDK
receivers (PyJWT in Python, jose in TypeScript) verify it unchanged.

The token is assembled here rather than by `jwt.encode`: every attempt signs one, and PyJWT
rebuilt and re-serialised the same JOSE header and validated the key each time. The header
segment is still PyJWT's own (made by it once, below), the claims are the ones `jwt.encode`
would write, and the tests verify our tokens with PyJWT and with both SDK receivers.

Hashes are made by copying prepared OpenSSL contexts (an empty SHA-256, an HMAC per key):
creating one from scratch looks the algorithm up in OpenSSL 3's provider tables, which cost
more than hashing a small body, measured between two HTTP requests (`bench/attempt.py`).
"""

from __future__ import annotations

import binascii
import hashlib
import hmac

import orjson
from jwt.api_jws import PyJWS

from homing import ids

JWT_LIFETIME_S = 300

# base64 -> base64url (RFC 4648 section 5).
_URLSAFE = bytes.maketrans(b"+/", b"-_")


def _b64url(data: bytes) -> bytes:
    """base64url without padding, as JWS segments are written."""
    return binascii.b2a_base64(data, newline=False).translate(_URLSAFE).rstrip(b"=")


_SHA256 = hashlib.sha256()
_keyed: dict[str, hmac.HMAC] = {}  # signing key -> its HMAC-SHA256 before any message


def _hmac(key: str) -> hmac.HMAC:
    prepared = _keyed.get(key)
    if prepared is None:
        if len(_keyed) >= 1024:  # an account has two keys; bounded all the same
            _keyed.clear()
        prepared = _keyed[key] = hmac.new(key.encode("utf-8"), digestmod=hashlib.sha256)
    return prepared.copy()


# `{"alg":"HS256","typ":"JWT"}` exactly as PyJWT encodes it (sorted keys, compact), plus the dot.
_HEADER = PyJWS().encode(b"", b"0" * 32, algorithm="HS256").partition(".")[0].encode() + b"."


def body_hash(body: bytes) -> str:
    """base64url(SHA-256(body)) with `=` padding, as Upstash sends it."""
    hashed = _SHA256.copy()
    hashed.update(body)
    return binascii.b2a_base64(hashed.digest(), newline=False).translate(_URLSAFE).decode("ascii")


def sign(*, key: str, url: str, body: bytes, now_s: int, digest: str | None = None) -> str:
    """A fresh token for one attempt to `url` (the exact URL called, query string included).

    `digest` is `body_hash(body)` when the caller already has it (the hops of one attempt)."""
    claims = {
        "iss": "Upstash",
        "sub": url,
        "iat": now_s,
        # nbf 0, as Upstash does since 2024-09: a receiver whose clock lags ours must not
        # reject a token "not yet valid".
        "nbf": 0,
        "exp": now_s + JWT_LIFETIME_S,
        "jti": ids.jwt_id(),
        "body": body_hash(body) if digest is None else digest,
    }
    # Compact JSON in insertion order, as PyJWT's `jwt.encode` writes it, except that non-ASCII
    # characters of the URL are UTF-8 rather than \u escapes (equivalent JSON; both SDK
    # receivers verify it).
    signing_input = _HEADER + _b64url(orjson.dumps(claims))
    mac = _hmac(key)
    mac.update(signing_input)
    return (signing_input + b"." + _b64url(mac.digest())).decode("ascii")
