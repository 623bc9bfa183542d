"""The hand-assembled token is byte for byte the one PyJWT's `jwt.encode` would make."""

from __future__ import annotations

import base64
import hashlib

import jwt
import orjson
import pytest
from jwt.api_jws import PyJWS

from homing import signing


@pytest.mark.parametrize(
    ("key", "url", "body"),
    [
        ("sig_" + "a" * 28, "http://127.0.0.1:9/hook", b""),
        ("sig_" + "b" * 28, "https://api.example/p?q=1&r=%20", b'{"order": 17}'),
        ("ключ-🔑" * 4, "https://example.com/ü/日本?x=🚀", "Grüße 🚀".encode()),
        ("k" * 32, "http://x/", b"x" * 20_000),
    ],
)
def test_token_is_pyjwts(key: str, url: str, body: bytes) -> None:
    token = signing.sign(key=key, url=url, body=body, now_s=1_700_000_000)
    payload = token.split(".")[1]
    claims = orjson.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    assert list(claims) == ["iss", "sub", "iat", "nbf", "exp", "jti", "body"]
    assert claims["sub"] == url
    assert claims["body"] == base64.urlsafe_b64encode(hashlib.sha256(body).digest()).decode()
    assert token == PyJWS().encode(orjson.dumps(claims), key.encode(), algorithm="HS256")
    decoded = jwt.decode(
        token,
        key,
        algorithms=["HS256"],
        issuer="Upstash",
        options={"verify_exp": False},
    )
    assert decoded == claims


def test_given_digest_is_used() -> None:
    digest = signing.body_hash(b"abc")
    token = signing.sign(key="k" * 32, url="http://x/", body=b"abc", now_s=1, digest=digest)
    claims = jwt.decode(token, "k" * 32, algorithms=["HS256"], options={"verify_exp": False})
    assert claims["body"] == digest
