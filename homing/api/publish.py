"""Publish, enqueue and batch (spec 5.1-5.3): the hot path.

Each request is validated completely before anything is stored, then all of its messages are
inserted in one storage call (one transaction, shared with whatever else commits alongside).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from homing import ids
from homing.api import queues
from homing.api.context import Services, account
from homing.api.http import JSON, caller_ip, path_remainder, read_body, read_json, split_query
from homing.errors import InvalidRequest, NotFound, PayloadTooLarge
from homing.headers import PublishOptions, parse_options
from homing.models import InsertResult, NewMessage
from homing.publish import Endpoint, build_messages, parse_destination, validate_name


@dataclass(frozen=True, slots=True)
class Prepared:
    messages: list[NewMessage]
    is_group: bool


def check_destinations(svc: Services, urls: list[str], options: PublishOptions) -> None:
    """Refuse forbidden destinations and callbacks at publish time (spec 3, item 5)."""
    for url in urls:
        svc.policy.check_url(url)
    for cb in (options.callback, options.failure_callback):
        if cb is not None:
            svc.policy.check_url(cb.url)


async def prepare(
    svc: Services,
    account_id: str,
    *,
    destination: str,
    headers: list[tuple[str, str]],
    config: list[tuple[str, str]],
    body: bytes,
    caller: str,
    queue: str | None,
    now_ms: int,
) -> Prepared:
    dest = parse_destination(destination)
    options = parse_options(headers, config, limits=svc.settings.limits)
    if options.delay_s and options.not_before_s is None:
        # The delay counts from the moment the request arrived, which a millisecond clock
        # rounded down would place up to 1 ms too early: "2 s later" must never be 1.9995 s.
        now_ms = max(now_ms, svc.clock.now_ms_ceil())
    if dest.url is not None:
        targets = [Endpoint(dest.url)]
    else:
        assert dest.group is not None
        group = await svc.storage.get_url_group(account_id, dest.group)
        if group is None or not group.endpoints:
            raise NotFound(f"URL group {dest.group!r} does not exist")
        targets = list(group.endpoints)
    check_destinations(svc, [t.url for t in targets], options)
    messages = build_messages(
        account_id=account_id,
        targets=targets,
        options=options,
        body=body,
        now_ms=now_ms,
        new_id=ids.message_id,
        caller_ip=caller,
        topic_name=dest.group,
        queue_name=queue,
    )
    return Prepared(messages, is_group=dest.group is not None)


async def store(
    svc: Services, account_id: str, messages: list[NewMessage], now_ms: int
) -> list[InsertResult]:
    """Insert (durable on return), and count what was accepted."""
    started = time.monotonic()
    results = await svc.storage.insert_messages(
        messages, now_ms=now_ms, dedup_window_ms=svc.settings.dedup_window_ms
    )
    svc.metrics.commit_publish.observe(time.monotonic() - started)
    svc.metrics.record_publish(account_id, [r.url for r in results if not r.deduplicated])
    return results


def _item(result: InsertResult) -> dict[str, Any]:
    out: dict[str, Any] = {"messageId": result.message_id, "url": result.url}
    if result.deduplicated:
        out["deduplicated"] = True
    return out


def _shape(prepared: Prepared, results: list[InsertResult]) -> Any:
    if prepared.is_group:
        return [_item(r) for r in results]
    return _item(results[0])


def _status(results: list[InsertResult]) -> int:
    return 202 if results and all(r.deduplicated for r in results) else 201


def _raw_headers(request: Request) -> list[tuple[str, str]]:
    return [(k.decode("latin-1"), v.decode("latin-1")) for k, v in request.headers.raw]


async def _publish(request: Request, destination: str, queue: str | None) -> Response:
    started_ns = time.time_ns()
    svc, account_id = await account(request)
    body = await read_body(request, svc.settings.max_body_size)
    query, config = split_query(request)
    if query and destination.lower().startswith(("http:", "https:")):
        destination = f"{destination}?{query}"
    now = svc.clock.now_ms()
    if queue is not None:
        await queues.check_quota(svc, account_id, [queue])
    prepared = await prepare(
        svc,
        account_id,
        destination=destination,
        headers=_raw_headers(request),
        config=config,
        body=body,
        caller=caller_ip(request),
        queue=queue,
        now_ms=now,
    )
    results = await store(svc, account_id, prepared.messages, now)
    if queue is not None:
        queues.remember(svc, account_id, [queue])
    status = _status(results)
    if svc.telemetry is not None:
        svc.telemetry.published(
            trace=prepared.messages[0].spec.trace,
            account=account_id,
            message_ids=[r.message_id for r in results],
            destination=destination,
            start_ns=started_ns,
            end_ns=time.time_ns(),
            status=status,
        )
    return JSON(_shape(prepared, results), status_code=status)


async def publish(request: Request) -> Response:
    return await _publish(request, path_remainder(request, "/v2/publish/"), None)


async def enqueue(request: Request) -> Response:
    rest = path_remainder(request, "/v2/enqueue/")
    queue, sep, destination = rest.partition("/")
    if not sep:
        raise InvalidRequest("expected /v2/enqueue/{queueName}/{destination}")
    return await _publish(request, destination, validate_name(queue, "queue name"))


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
        raise InvalidRequest(f"{where}: 'body' must be a string or null")
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
    now = svc.clock.now_ms()
    caller = caller_ip(request)
    prepared: list[Prepared] = []
    for index, item in enumerate(items):
        destination, headers, body, queue = _batch_item(item, index)
        if len(body) > svc.settings.max_body_size:
            raise PayloadTooLarge(
                f"batch item {index}: body exceeds the maximum of "
                f"{svc.settings.max_body_size} bytes"
            )
        try:
            prepared.append(
                await prepare(
                    svc,
                    account_id,
                    destination=destination,
                    headers=headers,
                    config=[],
                    body=body,
                    caller=caller,
                    queue=queue,
                    now_ms=now,
                )
            )
        except InvalidRequest as exc:
            raise type(exc)(f"batch item {index}: {exc.message}") from None
    named = {m.queue_name for p in prepared for m in p.messages if m.queue_name}
    await queues.check_quota(svc, account_id, named)
    every = [m for p in prepared for m in p.messages]
    results = await store(svc, account_id, every, now)
    queues.remember(svc, account_id, named)
    out: list[Any] = []
    position = 0
    for p in prepared:
        mine = results[position : position + len(p.messages)]
        position += len(p.messages)
        out.append(_shape(p, mine))
        if svc.telemetry is not None:
            svc.telemetry.published(
                trace=p.messages[0].spec.trace,
                account=account_id,
                message_ids=[r.message_id for r in mine],
                destination=p.messages[0].topic_name or p.messages[0].url,
                start_ns=started_ns,
                end_ns=time.time_ns(),
                status=_status(mine),
            )
    return JSON(out, status_code=_status(results))
