"""Publish, enqueue and batch (`/v2/publish`, `/v2/enqueue`, `/v2/batch`): read the request,
publish, shape the answer."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from homing.actions.publish import Draft, Published, publish_batch
from homing.actions.publish import publish as publish_draft
from homing.api.context import account, scope_services, token
from homing.api.errors import answer
from homing.errors import InvalidRequest, PayloadTooLarge
from homing.models import InsertResult
from homing.publish import validate_name
from homing.web.http import (
    JSON,
    caller_ip,
    read_json,
    receive_body,
    scope_caller_ip,
    scope_path_remainder,
    send_json,
    split_query_string,
)

PUBLISH = "/v2/publish/"
ENQUEUE = "/v2/enqueue/"


def _item(result: InsertResult) -> dict[str, Any]:
    out: dict[str, Any] = {"messageId": result.message_id, "url": result.url}
    if result.deduplicated:
        out["deduplicated"] = True
    return out


def _shape(published: Published) -> Any:
    if published.is_group:
        return [_item(r) for r in published.results]
    return _item(published.results[0])


def _destination(scope: Mapping[str, Any]) -> tuple[str, str | None]:
    """(destination, queue) from the path of a publish or an enqueue."""
    if scope["path"].startswith(PUBLISH):
        return scope_path_remainder(scope, PUBLISH), None
    rest = scope_path_remainder(scope, ENQUEUE)
    queue, sep, destination = rest.partition("/")
    if not sep:
        raise InvalidRequest("expected /v2/enqueue/{queueName}/{destination}")
    return destination, validate_name(queue, "queue name")


async def _publish(scope: Scope, receive: Receive) -> tuple[int, Any]:
    """(status, JSON answer) of one publish or enqueue, read from its ASGI scope and channel:
    the fast path and the router's route both serve it with this."""
    started_ns = time.time_ns()
    destination, queue = _destination(scope)
    svc = scope_services(scope)
    principal = await svc.authenticate(token(scope), write=True)
    headers: list[tuple[str, str]] = []
    declared = None
    for raw_name, raw_value in scope["headers"]:
        name, value = raw_name.decode("latin-1"), raw_value.decode("latin-1")
        if declared is None and name == "content-length":  # names come in lower case
            declared = value
        headers.append((name, value))
    body = await receive_body(receive, declared, svc.settings.max_body_size)
    query, config = split_query_string(scope.get("query_string", b""))
    if query and destination.lower().startswith(("http:", "https:")):
        destination = f"{destination}?{query}"
    draft = Draft(destination, headers, config, body, queue)
    published = await publish_draft(
        svc, principal.account_id, draft, caller=scope_caller_ip(scope), started_ns=started_ns
    )
    return 202 if published.all_deduplicated else 201, _shape(published)


def is_fast(scope: Scope) -> bool:
    """Whether `serve` answers this request: `POST /v2/publish/...` and `/v2/enqueue/...`, most
    of the traffic (a bare `/v2/enqueue/` is left to the router, which names no queue)."""
    if scope["type"] != "http" or scope["method"] != "POST":
        return False
    path: str = scope["path"]
    return path.startswith(PUBLISH) or (path.startswith(ENQUEUE) and len(path) > len(ENQUEUE))


async def serve(scope: Scope, receive: Receive, send: Send) -> None:
    """Publish and enqueue as a plain ASGI app, in front of the framework's middleware,
    router and `Request`: on this path they cost about as much CPU as Homing's own work. The
    answers, errors included, are the router's (`homing.api.errors.answer`)."""
    try:
        status, content = await _publish(scope, receive)
    except Exception as exc:
        await answer(scope, receive, send, exc)
        return
    await send_json(send, content, status)


async def publish(request: Request) -> Response:
    status, content = await _publish(request.scope, request.receive)
    return JSON(content, status_code=status)


enqueue = publish


def _batch_item(item: Any, index: int) -> tuple[str, list[tuple[str, str]], bytes, str | None]:
    where = f"batch item {index}"
    if not isinstance(item, dict):
        raise InvalidRequest(f"{where} must be an object")
    destination = item.get("destination")
    if not isinstance(destination, str) or not destination:
        raise InvalidRequest(f"{where} needs a 'destination' (URL or URL-group name)")
    raw_headers = item.get("headers") or {}
    if not isinstance(raw_headers, dict):
        raise InvalidRequest(f"{where}: 'headers' must be an object of strings")
    headers: list[tuple[str, str]] = []
    for name, value in raw_headers.items():
        values = value if isinstance(value, list) else [value]
        for v in values:
            if not isinstance(v, str | int | float | bool) or isinstance(v, dict):
                raise InvalidRequest(f"{where}: header {name!r} must be a string")
            headers.append((str(name), v if isinstance(v, str) else str(v)))
    body = item.get("body")
    if body is not None and not isinstance(body, str):
        # The JS SDKs put a `context.call` body in the item as given, an object included; the
        # hosted service delivers such a value as its JSON text.
        body = orjson.dumps(body).decode()
    queue = item.get("queue")
    if queue is not None and not isinstance(queue, str):
        raise InvalidRequest(f"{where}: 'queue' must be a string or null")
    if queue is not None:
        validate_name(queue, "queue name")
    return destination, headers, (body or "").encode(), queue


async def batch(request: Request) -> Response:
    svc, account_id = await account(request)
    started_ns = time.time_ns()
    items = await read_json(request, svc.settings.max_batch_size)
    if not isinstance(items, list) or not items:
        raise InvalidRequest("the batch body must be a non-empty JSON array of messages")
    drafts = []
    for index, item in enumerate(items):
        destination, headers, body, queue = _batch_item(item, index)
        if len(body) > svc.settings.max_body_size:
            raise PayloadTooLarge(
                f"batch item {index}: body exceeds the maximum of "
                f"{svc.settings.max_body_size} bytes"
            )
        drafts.append(Draft(destination, headers, [], body, queue))
    published = await publish_batch(
        svc, account_id, drafts, caller=caller_ip(request), started_ns=started_ns
    )
    every = [r for p in published for r in p.results]
    status = 202 if every and all(r.deduplicated for r in every) else 201
    return JSON([_shape(p) for p in published], status_code=status)
