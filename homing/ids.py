"""Identifiers in the shapes QStash uses (spec 1.5). All are opaque to clients."""

from __future__ import annotations

import itertools
import secrets

_ALPHABET = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"  # base58


def _random(length: int) -> str:
    n = secrets.randbits(6 * length)
    out = []
    for _ in range(length):
        n, r = divmod(n, 58)
        out.append(_ALPHABET[r])
    return "".join(out)


def message_id() -> str:
    return "msg_" + _random(22)


def schedule_id() -> str:
    return "scd_" + _random(22)


def signing_key() -> str:
    return "sig_" + _random(28)


def jwt_id() -> str:
    return "jwt_" + _random(22)


def token() -> str:
    return "hmg_" + secrets.token_urlsafe(32)


class DlqIdSource:
    """`<unixMillis>-<sequence>` ids (spec 1.5), unique within this process.

    The random node suffix keeps ids from two nodes that fail a message in the same millisecond
    apart.
    """

    def __init__(self) -> None:
        self._seq = itertools.count()
        self._node = secrets.randbelow(1_000_000)

    def next(self, now_ms: int) -> str:
        return f"{now_ms}-{self._node * 1_000_000 + next(self._seq) % 1_000_000}"
