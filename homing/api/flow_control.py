"""Flow-control keys and global parallelism (`/v2/flowControl`, `/v2/globalParallelism`)."""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote

from starlette.requests import Request
from starlette.responses import Response

from homing.api.context import account
from homing.errors import InvalidRequest, NotFound
from homing.headers import parse_bool
from homing.models import FlowKeyInfo
from homing.numbers import parse_int
from homing.web.http import JSON, path_remainder

_ACTIONS = ("pause", "resume", "pin", "unpin", "resetRate", "reset")


def flow_json(info: FlowKeyInfo) -> dict[str, Any]:
    return {
        "flowControlKey": info.key,
        "waitListSize": info.wait_list_size,
        "parallelismMax": info.parallelism_max,
        "parallelismCount": info.parallelism_count,
        "rateMax": info.rate_max,
        "rateCount": info.rate_count,
        "ratePeriod": info.rate_period_s,
        "ratePeriodStart": info.rate_period_start_ms // 1000,
        "isPaused": info.paused,
        "isPinnedParallelism": info.pinned_parallelism,
        "isPinnedRate": info.pinned_rate,
    }


def _key(request: Request) -> str:
    return unquote(path_remainder(request, "/v2/flowControl/"))


async def list_keys(request: Request) -> Response:
    svc, account_id = await account(request)
    keys = await svc.storage.list_flow_keys(
        account_id, search=request.query_params.get("search"), now_ms=svc.clock.now_ms()
    )
    return JSON([flow_json(k) for k in keys])


async def get_key(request: Request) -> Response:
    svc, account_id = await account(request)
    key = _key(request)
    if not key:
        return await list_keys(request)
    info = await svc.storage.get_flow_key(account_id, key, now_ms=svc.clock.now_ms())
    if info is None:
        raise NotFound(f"flow-control key {key!r} not found")
    return JSON(flow_json(info))


def _positive(request: Request, name: str) -> int | None:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return None
    return parse_int(raw, name, 1)


async def act(request: Request) -> Response:
    svc, account_id = await account(request)
    path = _key(request)
    key, _, action = path.rpartition("/")
    if action not in _ACTIONS:
        raise NotFound(f"unknown flow-control action in {path!r}")
    if not key:
        raise InvalidRequest("a flow-control key is required")
    now = svc.clock.now_ms()
    storage = svc.storage
    if action in ("pause", "resume"):
        found = await storage.set_flow_paused(account_id, key, paused=action == "pause", now_ms=now)
    elif action == "pin":
        period = _positive(request, "period")
        if period is not None and period > 7 * 86400:
            raise InvalidRequest("period may be at most 7 days (604800 seconds)")
        found = await storage.pin_flow(
            account_id,
            key,
            parallelism=_positive(request, "parallelism"),
            rate=_positive(request, "rate"),
            period_s=period,
            now_ms=now,
        )
    elif action == "unpin":
        found = await storage.unpin_flow(
            account_id,
            key,
            parallelism=parse_bool(request.query_params.get("parallelism", "false"), "parallelism"),
            rate=parse_bool(request.query_params.get("rate", "false"), "rate"),
        )
    else:  # resetRate, and the legacy reset
        found = await storage.reset_flow_rate(account_id, key, now_ms=now)
    if not found:
        raise NotFound(f"flow-control key {key!r} not found")
    return JSON({})


async def global_parallelism(request: Request) -> Response:
    svc, account_id = await account(request)
    return JSON(
        {
            "parallelismMax": svc.settings.concurrency,
            "parallelismCount": await svc.storage.active_count(account_id),
        }
    )
