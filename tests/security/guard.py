"""A connection spy and guard for the security tests: sees every socket connect of this process.

Python raises the audit event `socket.connect` (and `socket.getaddrinfo`) inside the socket
module before the system call is made, for every caller: aiohttp's connector, aiohappyeyeballs,
httpx, anything. An audit hook that raises there stops the connection before a packet is sent.

`ConnectionGuard` records every connect while it is active and refuses (PermissionError) any
connect not to an explicitly allowed loopback (host, port), e.g. the Homing server under test
and its test client, and any name lookup (getaddrinfo) other than of 127.0.0.1, so no DNS
query can leave the machine either. So even if Homing had a hole, a test could never reach
beyond loopback: the forbidden or public address it tried appears in `refused` instead, and
the test fails on it.

Audit hooks cannot be removed, so one hook is installed once and consults the active guards.
"""

from __future__ import annotations

import sys
import threading
from typing import Any

# getaddrinfo of a numeric loopback address needs no DNS; anything else could query a DNS server.
LOOKUPS_ALLOWED = frozenset({"127.0.0.1", "None"})
_guards: list[ConnectionGuard] = []
_lock = threading.Lock()
_installed = False


def _address(args: tuple[Any, ...]) -> tuple[str, int] | None:
    address = args[1] if len(args) > 1 else None
    if isinstance(address, tuple) and len(address) >= 2:
        return str(address[0]), int(address[1])
    return None  # AF_UNIX paths and the like: not network traffic


def _hook(event: str, args: tuple[Any, ...]) -> None:
    if not _guards:
        return
    if event == "socket.connect":
        address = _address(args)
        if address is None:
            return
        for guard in list(_guards):
            guard._connect(address)
    elif event == "socket.getaddrinfo":
        for guard in list(_guards):
            guard._lookup(args[0])


def _install() -> None:
    global _installed
    with _lock:
        if not _installed:
            sys.addaudithook(_hook)
            _installed = True


class ConnectionGuard:
    """`with ConnectionGuard(allow={("127.0.0.1", port)}) as guard: ...`

    `guard.allowed` and `guard.refused` list the (host, port) of every connect attempted while
    active; `guard.lookups` every name passed to getaddrinfo (refused unless it is 127.0.0.1).
    """

    def __init__(self, allow: set[tuple[str, int]]) -> None:
        self.allow = set(allow)
        self.allowed: list[tuple[str, int]] = []
        self.refused: list[tuple[str, int]] = []
        self.lookups: list[str] = []
        self._lock = threading.Lock()

    def _connect(self, address: tuple[str, int]) -> None:
        with self._lock:
            if address in self.allow:
                self.allowed.append(address)
                return
            self.refused.append(address)
        raise PermissionError(f"test connection guard: connect to {address} is not allowed")

    def _lookup(self, host: object) -> None:
        name = host.decode() if isinstance(host, bytes) else str(host)
        with self._lock:
            self.lookups.append(name)
        if name not in LOOKUPS_ALLOWED:
            raise PermissionError(f"test connection guard: name lookup of {name!r} is not allowed")

    def __enter__(self) -> ConnectionGuard:
        _install()
        with _lock:
            _guards.append(self)
        return self

    def __exit__(self, *exc: object) -> None:
        with _lock:
            _guards.remove(self)
