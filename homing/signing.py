"""`Upstash-Signature`: the JWT every delivery carries, as the SDKs' `Receiver` verifies it.

Signed with PyJWT, HS256, keyed by the UTF-8 bytes of the account's current signing key, so the
official SDK receivers (PyJWT in Python, jose in TypeScript) verify it unchanged.
"""

from __future__ import annotations

import base64
import hashlib

import orjson
from jwt.algorithms import HMACAlgorithm
from jwt.api_jws import PyJWS

from homing import ids

JWT_LIFETIME_S = 300


class _KeyedHMAC(HMACAlgorithm):
    """PyJWT's HS256, remembering prepared keys.

    `prepare_key` refuses asymmetric keys by trying to parse the secret as PEM, SSH and DER,
    which cost more than the whole signature did on every attempt; an account has two keys.
    """

    def __init__(self) -> None:
        super().__init__(HMACAlgorithm.SHA256)
        self._prepared: dict[str | bytes, bytes] = {}

    def prepare_key(self, key: str | bytes) -> bytes:
        prepared = self._prepared.get(key)
        if prepared is None:
            if len(self._prepared) >= 1024:
                self._prepared.clear()
            prepared = self._prepared[key] = super().prepare_key(key)
        return prepared


_jws = PyJWS(algorithms=[])
_jws.register_algorithm("HS256", _KeyedHMAC())


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
    # Compact JSON in insertion order, as PyJWT's `jwt.encode` writes it, except that non-ASCII
    # characters of the URL are UTF-8 rather than \u escapes (equivalent JSON; both SDK
    # receivers verify it).
    return _jws.encode(orjson.dumps(claims), key.encode("utf-8"), algorithm="HS256")
