"""`Upstash-Signature`: the JWT every delivery carries (spec 10.1).

Signed with PyJWT, HS256, keyed by the UTF-8 bytes of the account's current signing key, so the
official SDK receivers (PyJWT in Python, jose in TypeScript) verify it unchanged.
"""

from __future__ import annotations

import base64
import hashlib

import jwt

from homing import ids

JWT_LIFETIME_S = 300


def body_hash(body: bytes) -> str:
    """base64url(SHA-256(body)) with `=` padding, as Upstash sends it."""
    return base64.urlsafe_b64encode(hashlib.sha256(body).digest()).decode("ascii")


def sign(*, key: str, url: str, body: bytes, now_s: int) -> str:
    """A fresh token for one attempt to `url` (the exact URL called, query string included)."""
    claims = {
        "iss": "Upstash",
        "sub": url,
        "iat": now_s,
        # nbf 0, as Upstash does since 2024-09: a receiver whose clock lags ours must not
        # reject a token "not yet valid".
        "nbf": 0,
        "exp": now_s + JWT_LIFETIME_S,
        "jti": ids.jwt_id(),
        "body": body_hash(body),
    }
    return jwt.encode(claims, key.encode("utf-8"), algorithm="HS256")
