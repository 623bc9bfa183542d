"""What every node answers, whatever its role: liveness, readiness and metrics.

`/readyz` answers 503 listing every problem the parts reported to the node's `Health` (a side
task that keeps failing, a lost database connection) or a store that does not answer its ping
in time.
"""

from __future__ import annotations

import asyncio
import hmac

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from homing.actions.context import Services
from homing.config import Settings
from homing.web.http import JSON


async def healthz(request: Request) -> Response:
    return JSON({"status": "ok"})


# A probe must answer quickly even when the database stalls: a stalled store is unready.
READY_PING_TIMEOUT_S = 0.8


async def readyz(request: Request) -> Response:
    svc: Services = request.state.services
    problems = svc.health.problems()
    try:
        await asyncio.wait_for(svc.storage.ping(), READY_PING_TIMEOUT_S)
    except TimeoutError:
        problems["storage"] = f"the store did not answer within {READY_PING_TIMEOUT_S} s"
    except Exception as exc:
        problems["storage"] = str(exc) or type(exc).__name__
    if problems:
        reason = "; ".join(f"{name}: {text}" for name, text in sorted(problems.items()))
        return JSON(
            {"status": "unavailable", "error": reason, "problems": problems}, status_code=503
        )
    return JSON({"status": "ready"})


async def metrics(request: Request) -> Response:
    svc: Services = request.state.services
    expected = svc.settings.metrics_token
    if expected and not hmac.compare_digest(
        request.headers.get("authorization", "").encode(), f"Bearer {expected}".encode()
    ):
        return JSON({"error": "metrics need the metrics token"}, status_code=401)
    body = await svc.metrics.render(svc.storage)
    return Response(body, media_type="text/plain; version=0.0.4; charset=utf-8")


def probe_routes(settings: Settings) -> list[BaseRoute]:
    routes: list[BaseRoute] = [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
    ]
    if settings.metrics_path:
        routes.append(Route(settings.metrics_path, metrics, methods=["GET"]))
    return routes
