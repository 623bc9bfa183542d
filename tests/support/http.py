"""Talking to a Homing under test over plain HTTP, without the SDKs: the dev token's
`Authorization` header, a raw client, a log reader, and a URL where nothing listens."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from typing import Any

import httpx

from tests.support.server import DEV_TOKEN, RunningServer

AUTH = {"Authorization": f"Bearer {DEV_TOKEN}"}

# Plain HTTP on loopback: one TLS context for every client instead of loading CA certs each time.
_TLS = ssl.create_default_context()


def api(
    server: RunningServer, *, token: str | None = DEV_TOKEN, timeout: float = 10
) -> httpx.Client:
    """An httpx client on the server's base URL that sends `token` (none if `token` is None)."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.Client(base_url=server.base_url, headers=headers, timeout=timeout, verify=_TLS)


def nowhere(path: str) -> str:
    """A destination URL where nothing listens (the discard port), for messages, schedules and
    endpoints that the test never lets be delivered."""
    return f"http://127.0.0.1:9{path}"


def log_entries(base_url: str, **params: Any) -> Iterator[dict[str, Any]]:
    """Every log entry matching `params`, newest first, following cursors."""
    with httpx.Client(base_url=base_url, headers=AUTH, timeout=30) as client:
        cursor: str | None = None
        while True:
            query = dict(params, count=1000)
            if cursor:
                query["cursor"] = cursor
            page = client.get("/v2/logs", params=query).json()
            yield from page["logs"]
            cursor = page.get("cursor")
            if not cursor:
                return
