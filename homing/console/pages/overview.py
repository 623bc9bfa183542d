"""The overview: traffic charts, latency, backlog, DLQ size and the next schedule fires.

The page and its live endpoint (`/console/api/overview`, polled by overview.js) are built from
the same `snapshot`, so what the script redraws is exactly what the server drew.
"""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import Response

from homing.actions.context import Services
from homing.console import charts
from homing.console.context import Viewer, services, state
from homing.console.gate import api, page
from homing.console.masking import mask_url
from homing.console.render import duration_ms, relative, utc
from homing.console.respond import page_response
from homing.web.http import JSON

LATENCY_SAMPLE = 5000
NEXT_FIRES = 5
CACHE_S = 2.0


def _count(value: int) -> str:
    return f"{value:,}"


def _ratio(value: float | None) -> str:
    return "—" if value is None else f"{value * 100:.1f}%"


def _cell(text: str, href: str = "", cls: str = "", badge: str = "") -> dict[str, str]:
    """One table cell of the live tables; `badge` draws the text as a state badge."""
    return {"text": text, "href": href, "cls": cls, "badge": badge}


async def snapshot(svc: Services, account_id: str) -> dict[str, Any]:
    storage = svc.storage
    now = svc.clock.now_ms()
    stats: dict[str, str] = {}
    drawn: dict[str, list[dict[str, Any]]] = {}
    for window in (charts.HOUR, charts.DAY):
        rows = await storage.event_counts(
            account_id, since_ms=window.start(now), bucket_ms=window.bucket_ms
        )
        counts = charts.bucketed(rows, window, now)
        drawn[window.name] = charts.chart(counts, window, now)
        for name, total in charts.totals(counts).items():
            stats[f"{window.name}.{name}"] = _count(total)
        stats[f"{window.name}.ratio"] = _ratio(charts.overall_ratio(counts))
    latencies = await storage.delivery_latencies(
        account_id, since_ms=now - charts.HOUR.buckets * charts.HOUR.bucket_ms, limit=LATENCY_SAMPLE
    )
    found = charts.percentiles(latencies)
    for point in ("p50", "p90", "p99"):
        stats[f"latency.{point}"] = duration_ms(found.get(point))
    stats["latency.n"] = _count(len(latencies))
    states = await storage.state_counts(account_id)
    stats["state.waiting"] = _count(
        states.get("ready", 0) + states.get("queued", 0) + states.get("waiting", 0)
    )
    stats["state.active"] = _count(states.get("active", 0))
    stats["state.dlq"] = _count(states.get("dlq", 0))

    queues = [
        [
            _cell(q.name, f"/console/messages?queueName={quote(q.name)}"),
            _cell(_count(q.lag), cls="num"),
            _cell(str(q.parallelism), cls="num"),
            _cell("PAUSED", badge="st-paused")
            if q.paused
            else _cell("RUNNING", badge="st-delivered"),
        ]
        for q in sorted(await storage.list_queues(account_id), key=lambda q: -q.lag)
    ]
    upcoming = sorted(
        (s for s in await storage.list_schedules(account_id) if not s.paused and s.next_fire_ms),
        key=lambda s: s.next_fire_ms or 0,
    )[:NEXT_FIRES]
    fires = [
        [
            _cell(s.id, f"/console/schedules#{quote(s.id)}"),
            _cell(s.cron, cls="mono"),
            _cell(mask_url(s.destination), cls="url"),
            _cell(f"{utc(s.next_fire_ms)} ({relative(s.next_fire_ms, now)})"),
        ]
        for s in upcoming
    ]
    return {
        "stats": stats,
        "charts": drawn,
        "tables": {"queues": queues, "fires": fires},
        "updated": utc(now),
    }


async def cached(request: Request, account_id: str) -> dict[str, Any]:
    cache = state(request).overview
    now = time.monotonic()
    hit = cache.get(account_id)
    if hit is not None and now - hit[0] < CACHE_S:
        return hit[1]
    data = await snapshot(services(request), account_id)
    if len(cache) > 1000:
        cache.clear()
    cache[account_id] = (now, data)
    return data


@page
async def overview(request: Request, viewer: Viewer) -> Response:
    data = await cached(request, viewer.account_id)
    context = {
        "nav": "overview",
        "data": data,
        "width": charts.WIDTH,
        "height": charts.HEIGHT,
        "series": charts.SERIES,
    }
    return page_response(request, viewer, "overview.html", context)


@api
async def overview_json(request: Request, viewer: Viewer) -> Response:
    return JSON(await cached(request, viewer.account_id))
