"""Identifiers in the shapes QStash uses (`msg_...`, `scd_...`, numeric DLQ ids). All are opaque
to clients."""

from __future__ import annotations

import itertools
import os
import secrets
import threading
import time

_ALPHABET = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"  # base58


_POOL_SIZE = 4096
_pool = b""
_pool_at = _POOL_SIZE
_pool_lock = threading.Lock()


def _random_bytes(n: int) -> bytes:
    """Bytes from the OS CSPRNG, fetched a page at a time: two ids per message made one
    `getrandom` system call each, which showed up in profiles of the publish path."""
    global _pool, _pool_at
    with _pool_lock:  # ids are made on the writer thread too: no two callers get one slice
        if _pool_at + n > len(_pool):
            _pool, _pool_at = secrets.token_bytes(_POOL_SIZE), 0
        start = _pool_at
        _pool_at += n
        return _pool[start:_pool_at]


def _forget_pool() -> None:
    global _pool_at, _pool_lock
    _pool_at = _POOL_SIZE  # a forked child must not hand out its parent's ids
    _pool_lock = threading.Lock()  # nor wait for a lock held by a thread it does not have


os.register_at_fork(after_in_child=_forget_pool)


# Byte -> base58 character: 256 = 4 * 58 + 24, so the first 24 characters are a little more
# likely (5 in 256 against 4); 22 characters still carry over 128 bits of entropy.
_TABLE = bytes(ord(_ALPHABET[b % 58]) for b in range(256))


def _random(length: int) -> str:
    return _random_bytes(length).translate(_TABLE).decode("ascii")


# A message id starts with its creation time (milliseconds, 8 base58 digits, good until the
# year 6000): the alphabet is in ASCII order, so ids sort by time and each new one lands at the
# end of the id index instead of on a random page of it. With random ids every insert (and
# every deletion of an old message) dirtied a page of its own: a third of an insert's cost in
# SQLite. The 14 random characters (over 80 bits) keep ids unique between nodes and unguessable.
_TIME_DIGITS = 8
_last_time: tuple[int, str] = (-1, "")


def _time_prefix(now_ms: int) -> str:
    global _last_time
    if _last_time[0] == now_ms:
        return _last_time[1]
    digits = []
    value = now_ms
    for _ in range(_TIME_DIGITS):
        value, digit = divmod(value, 58)
        digits.append(_ALPHABET[digit])
    prefix = "".join(reversed(digits))
    _last_time = (now_ms, prefix)
    return prefix


def message_id() -> str:
    return "msg_" + _time_prefix(time.time_ns() // 1_000_000) + _random(14)


def schedule_id() -> str:
    return "scd_" + _random(22)


def signing_key() -> str:
    return "sig_" + _random(28)


def jwt_id() -> str:
    return "jwt_" + _random(22)


def token() -> str:
    return "hmg_" + secrets.token_urlsafe(32)


class DlqIdSource:
    """`<unixMillis>-<sequence>` ids (QStash's DLQ ids), unique within this process.

    The random node suffix keeps ids from two nodes that fail a message in the same millisecond
    apart.
    """

    def __init__(self) -> None:
        self._seq = itertools.count()
        self._node = secrets.randbelow(1_000_000)

    def next(self, now_ms: int) -> str:
        return f"{now_ms}-{self._node * 1_000_000 + next(self._seq) % 1_000_000}"
