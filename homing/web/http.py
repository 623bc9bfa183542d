"""Request and response helpers shared by the API routers."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, unquote

import orjson
from starlette.requests import Request
from starlette.responses import Response

from homing.errors import InvalidRequest, PayloadTooLarge


class JSON(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def raw_path(request: Request) -> str:
    """The request path exactly as sent, with no percent-decoding and no slash merging: a
    destination URL in the path must survive intact."""
    raw = request.scope.get("raw_path")
    if raw is None:
        return str(request.scope["path"])
    return bytes(raw).decode("latin-1")


def path_remainder(request: Request, prefix: str) -> str:
    """What follows `prefix` in the raw path (the destination of publish/enqueue/schedules).

    The raw target is percent-encoded UTF-8; non-ASCII bytes are decoded back to text so that
    a URL with an internationalised path survives, while %XX escapes stay as they were sent.
    """
    path = raw_path(request)
    root = request.scope.get("root_path", "")
    if root and path.startswith(root):
        path = path[len(root) :]
    if not path.startswith(prefix):
        raise InvalidRequest(f"expected a path starting with {prefix}")
    return path[len(prefix) :].encode("latin-1").decode("utf-8", "replace")


def split_query(request: Request) -> tuple[str, list[tuple[str, str]]]:
    """(query string for the destination, upstash-* configuration pairs) of a publish.

    The destination keeps every other parameter byte for byte and in order; the
    token and `upstash-*` configuration keys are removed.
    """
    raw = bytes(request.scope.get("query_string", b"")).decode("latin-1")
    if not raw:
        return "", []
    kept: list[str] = []
    config: list[tuple[str, str]] = []
    for part in raw.split("&"):
        key = unquote(part.split("=", 1)[0].replace("+", " ")).lower()
        if key == "qstash_token":
            continue
        if key.startswith("upstash-"):
            config.extend(parse_qsl(part, keep_blank_values=True))
            continue
        kept.append(part)
    return "&".join(kept), config


async def read_body(request: Request, limit: int) -> bytes:
    """The whole body, refusing more than `limit` bytes (declared or streamed) with 413."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isascii() and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"body of {declared} bytes exceeds the maximum of {limit} bytes")
    chunks = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"body exceeds the maximum of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def read_json(request: Request, limit: int) -> Any:
    body = await read_body(request, limit)
    if not body.strip():
        return None
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(f"request body is not valid JSON: {exc}") from None


def caller_ip(request: Request) -> str:
    return request.client.host if request.client else ""
