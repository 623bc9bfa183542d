"""Helpers for the security tests: a raw HTTP client and a recording resolver."""

from __future__ import annotations

import socket
import threading
from typing import Any
from urllib.parse import quote

import orjson
from aiohttp.abc import ResolveResult

from homing.destinations import ResolveFunc, make_static_resolver
from tests.support.server import DEV_TOKEN


def raw_request(
    port: int,
    method: str,
    target: str,
    headers: dict[str, str] | None = None,
    body: bytes = b"",
    *,
    token: str | None = DEV_TOKEN,
    timeout: float = 10,
) -> tuple[int, dict[str, Any] | str]:
    """Send one request with exactly this request target (no client-side normalisation).

    Non-ASCII characters are percent-encoded as UTF-8, as every HTTP client does (the HTTP
    parser refuses raw non-ASCII bytes in a request target). Returns (status, JSON or text).
    """
    target = quote(target, safe="".join(chr(c) for c in range(0x21, 0x7F)))
    lines = [f"{method} {target} HTTP/1.1", f"Host: 127.0.0.1:{port}", "Connection: close"]
    if token is not None:
        lines.append(f"Authorization: Bearer {token}")
    lines.append(f"Content-Length: {len(body)}")
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8")
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(head + body)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    status_line, _, rest = data.partition(b"\r\n")
    _, _, payload = rest.partition(b"\r\n\r\n")
    status = int(status_line.split()[1])
    try:
        return status, orjson.loads(payload)
    except orjson.JSONDecodeError:
        return status, payload.decode("utf-8", "replace")


class RecordingResolver:
    """A static resolver (no DNS) that records every lookup and what it answered.

    `rebind` names answer from their list in turn, one entry per call (DNS rebinding).
    """

    def __init__(
        self, table: dict[str, list[str]], rebind: dict[str, list[list[str]]] | None = None
    ) -> None:
        self._static = make_static_resolver(table)
        self.rebind = {k.lower(): v for k, v in (rebind or {}).items()}
        self.calls: list[tuple[str, list[str]]] = []
        self._turn: dict[str, int] = {}
        self._lock = threading.Lock()

    async def __call__(self, host: str, port: int = 0, family: int = 0) -> list[ResolveResult]:
        name = host.lower().rstrip(".")
        if name in self.rebind:
            with self._lock:
                turn = self._turn.get(name, 0)
                self._turn[name] = turn + 1
            answer = self.rebind[name][turn % len(self.rebind[name])]
            results = await make_static_resolver({name: answer})(name, port, family)
        else:
            try:
                results = await self._static(host, port, family)
            except OSError:
                with self._lock:
                    self.calls.append((name, []))
                raise
        with self._lock:
            self.calls.append((name, [r["host"] for r in results]))
        return results

    @property
    def resolve(self) -> ResolveFunc:
        return self
