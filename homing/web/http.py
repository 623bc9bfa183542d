"""Request and response helpers shared by the API routers."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl, unquote

import orjson
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.types import Receive, Send

from homing.errors import InvalidRequest, PayloadTooLarge


class JSON(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


async def send_json(send: Send, content: Any, status: int) -> None:
    """What `JSON(content, status)` sends, without building the response object: for a route
    served as a plain ASGI app (the publish fast path). Only for statuses that have a body."""
    body = orjson.dumps(content)
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-length", str(len(body)).encode("latin-1")),
                (b"content-type", b"application/json"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def raw_path(request: Request) -> str:
    """The request path exactly as sent, with no percent-decoding and no slash merging: a
    destination URL in the path must survive intact."""
    return _raw_path(request.scope)


def _raw_path(scope: Mapping[str, Any]) -> str:
    raw = scope.get("raw_path")
    if raw is None:
        return str(scope["path"])
    return bytes(raw).decode("latin-1")


def path_remainder(request: Request, prefix: str) -> str:
    """What follows `prefix` in the raw path (the destination of publish/enqueue/schedules)."""
    return scope_path_remainder(request.scope, prefix)


def scope_path_remainder(scope: Mapping[str, Any], prefix: str) -> str:
    """`path_remainder` of a request known by its ASGI scope.

    The raw target is percent-encoded UTF-8; non-ASCII bytes are decoded back to text so that
    a URL with an internationalised path survives, while %XX escapes stay as they were sent.
    """
    path = _raw_path(scope)
    root = scope.get("root_path", "")
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
    return split_query_string(request.scope.get("query_string", b""))


def split_query_string(query_string: bytes) -> tuple[str, list[tuple[str, str]]]:
    """`split_query` of a raw query string."""
    raw = bytes(query_string).decode("latin-1")
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
    _check_declared(request.headers.get("content-length"), limit)
    chunks = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        chunks.append(chunk)
    return b"".join(chunks)


async def receive_body(receive: Receive, declared: str | None, limit: int) -> bytes:
    """`read_body` straight from the ASGI channel (`declared`: the Content-Length header), for
    a route served without a `Request`; a client gone mid-body is a `ClientDisconnect`, as
    from `Request.stream`."""
    _check_declared(declared, limit)
    chunks = []
    size = 0
    while True:
        message = await receive()
        kind = message["type"]
        if kind == "http.request":
            chunk: bytes = message.get("body", b"")
            if chunk:
                size += len(chunk)
                if size > limit:
                    raise _too_large(limit)
                chunks.append(chunk)
            if not message.get("more_body", False):
                break
        elif kind == "http.disconnect":
            raise ClientDisconnect()
    # One chunk is the usual case: no copy.
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _check_declared(declared: str | None, limit: int) -> None:
    if declared is not None and declared.isascii() and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"body of {declared} bytes exceeds the maximum of {limit} bytes")


def _too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(f"body exceeds the maximum of {limit} bytes")


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


def scope_caller_ip(scope: Mapping[str, Any]) -> str:
    """`caller_ip` of a request known by its ASGI scope."""
    client = scope.get("client")
    return str(client[0]) if client else ""
