"""Signing keys and rotation (spec 10, 12.8, 12.9): receivers keep verifying across one rotation."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
from qstash import QStash
from qstash import Receiver as SignatureReceiver
from qstash.errors import SignatureError

from tests.support.receiver import Received, Receiver, Reply
from tests.support.server import DEV_CURRENT_KEY, DEV_NEXT_KEY, RunningServer

OLD_PAIR = SignatureReceiver(DEV_CURRENT_KEY, DEV_NEXT_KEY)


def only(key: str) -> SignatureReceiver:
    """A receiver that knows just this one key."""
    return SignatureReceiver(key, "sig_notTheOtherKeyxxxxxxxxxxxxxx")


def verify(receiver: SignatureReceiver, got: Received, url: str) -> None:
    receiver.verify(signature=got.headers["Upstash-Signature"], body=got.body.decode(), url=url)


def deliver(client: QStash, receiver: Receiver, path: str) -> Received:
    client.message.publish(url=receiver.url(path), body=f"body of {path}")
    [got] = receiver.wait_for(1, path)
    return got


def test_get_returns_the_account_keys(client: QStash) -> None:
    keys = client.signing_key.get()
    assert (keys.current, keys.next) == (DEV_CURRENT_KEY, DEV_NEXT_KEY)


def test_rotate_makes_next_current_and_creates_a_new_next(client: QStash) -> None:
    rotated = client.signing_key.rotate()
    assert rotated.current == DEV_NEXT_KEY
    assert re.fullmatch(r"sig_[A-Za-z0-9]{28}", rotated.next)
    assert rotated.next not in (DEV_CURRENT_KEY, DEV_NEXT_KEY)
    again = client.signing_key.get()
    assert (again.current, again.next) == (rotated.current, rotated.next)
    twice = client.signing_key.rotate()
    assert twice.current == rotated.next  # the current key becomes the old next, every time
    assert twice.next not in (rotated.current, rotated.next)


def test_deliveries_verify_before_and_after_one_rotation(
    client: QStash, receiver: Receiver
) -> None:
    before = deliver(client, receiver, "/before")
    verify(OLD_PAIR, before, receiver.url("/before"))
    verify(only(DEV_CURRENT_KEY), before, receiver.url("/before"))

    rotated = client.signing_key.rotate()
    after = deliver(client, receiver, "/after")
    verify(OLD_PAIR, after, receiver.url("/after"))  # a receiver that was not updated yet
    verify(SignatureReceiver(rotated.current, rotated.next), after, receiver.url("/after"))
    verify(only(rotated.current), after, receiver.url("/after"))  # signed with the new current
    with pytest.raises(SignatureError):
        verify(only(DEV_CURRENT_KEY), after, receiver.url("/after"))

    client.signing_key.rotate()
    later = deliver(client, receiver, "/later")
    with pytest.raises(SignatureError):  # two rotations: the old pair no longer works
        verify(OLD_PAIR, later, receiver.url("/later"))
    verify(only(rotated.next), later, receiver.url("/later"))


def test_a_retry_is_signed_with_the_key_current_at_that_attempt(
    client: QStash, receiver: Receiver
) -> None:
    answers: list[Callable[[], Reply]] = [lambda: Reply(500), lambda: Reply(200)]
    receiver.on("/flip", lambda r: answers.pop(0)())
    client.message.publish(url=receiver.url("/flip"), body="x", retries=1, retry_delay="300")
    receiver.wait_for(1, "/flip")
    rotated = client.signing_key.rotate()
    first, second = receiver.wait_for(2, "/flip")
    verify(only(DEV_CURRENT_KEY), first, receiver.url("/flip"))
    verify(only(rotated.current), second, receiver.url("/flip"))
    verify(OLD_PAIR, second, receiver.url("/flip"))


def test_each_account_signs_with_its_own_keys(
    client: QStash, server: RunningServer, receiver: Receiver
) -> None:
    from homing.config import DEV_USERS

    token, current, nxt = DEV_USERS[1]
    other = QStash(token, base_url=server.base_url)
    assert (other.signing_key.get().current, other.signing_key.get().next) == (current, nxt)
    client.signing_key.rotate()  # rotating one account leaves the other alone
    assert other.signing_key.get().current == current
    got = deliver(other, receiver, "/other")
    verify(only(current), got, receiver.url("/other"))
    with pytest.raises(SignatureError):
        verify(OLD_PAIR, got, receiver.url("/other"))


def test_signature_claims(client: QStash, receiver: Receiver) -> None:
    import base64
    import hashlib
    import time

    import jwt

    url = receiver.url("/claims?a=1&b=%2F")
    client.message.publish(url=url, body="héllo")
    [got] = receiver.wait_for(1, "/claims")
    token = got.headers["Upstash-Signature"]
    assert jwt.get_unverified_header(token) == {"alg": "HS256", "typ": "JWT"}
    claims = jwt.decode(token, DEV_CURRENT_KEY, algorithms=["HS256"], issuer="Upstash")
    assert set(claims) == {"iss", "sub", "iat", "nbf", "exp", "jti", "body"}
    assert claims["sub"] == url
    assert claims["nbf"] == 0
    assert claims["exp"] == claims["iat"] + 300
    assert abs(claims["iat"] - time.time()) < 5
    assert isinstance(claims["jti"], str) and claims["jti"].startswith("jwt_")
    digest = hashlib.sha256("héllo".encode()).digest()
    assert claims["body"] == base64.urlsafe_b64encode(digest).decode()  # base64url, padded
