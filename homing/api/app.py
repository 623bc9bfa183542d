"""The ASGI application: routes, error mapping, and a lifespan that owns every resource.

The lifespan opens storage, seeds the configured accounts, starts the HTTP sender and the
delivery engine, and tears them down in reverse order. Tests build a fresh app with their own
storage, clock and resolver.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Mount, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from homing.api import (
    dlq,
    flow_control,
    keys,
    logs,
    messages,
    publish,
    queues,
    schedules,
    url_groups,
)
from homing.api.context import Services
from homing.api.errors import EXCEPTION_HANDLERS, client_disconnected, homing_error
from homing.api.http import JSON
from homing.api.openapi import openapi_document
from homing.clock import Clock, SystemClock
from homing.config import Settings
from homing.console.app import create_console
from homing.delivery.engine import DeliveryEngine, EngineSettings
from homing.delivery.outcome import Policy
from homing.delivery.sender import Sender
from homing.destinations import DestinationPolicy, ResolveFunc
from homing.errors import HomingError, StorageUnavailable
from homing.health import Health
from homing.metrics import Metrics
from homing.models import SigningKeys
from homing.scheduler.loop import Scheduler
from homing.storage import open_storage
from homing.storage.base import Storage
from homing.telemetry import Telemetry

log = logging.getLogger(__name__)

# Paths whose tail is a destination: a trailing slash there is part of the destination URL.
_DESTINATION_PREFIXES = ("/v2/publish/", "/v2/enqueue/", "/v2/schedules/")


class Entry:
    """What every request passes first.

    * `/v2/queues/` means `/v2/queues` (spec 1.1), except inside a destination.
    * `POST /v2/publish/...` goes straight to its handler: it is most of the traffic, and
      routing it through the router's and exception middleware's layers cost about a tenth of
      its CPU. Its errors are mapped by the same handler as everywhere else; anything
      unexpected still reaches the server-error middleware (a JSON 500).
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path: str = scope["path"]
            if scope["method"] == "POST" and path.startswith("/v2/publish/"):
                request = Request(scope, receive)
                try:
                    response = await publish.publish(request)
                except HomingError as exc:
                    response = await homing_error(request, exc)
                except ClientDisconnect as exc:
                    response = await client_disconnected(request, exc)
                await response(scope, receive, send)
                return
            if path == "/console":  # the console's home, without a redirect hop
                scope = dict(scope, path="/console/")
            if len(path) > 4 and path.endswith("/") and path.startswith("/v2/"):
                is_destination = path.startswith(_DESTINATION_PREFIXES) and not (
                    path.startswith("/v2/schedules/") and scope["method"] != "POST"
                )
                if not is_destination or path.count("/") <= 3:
                    scope = dict(scope, path=path[:-1])
        await self.app(scope, receive, send)


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


async def openapi(request: Request) -> Response:
    return JSON(openapi_document())


ROUTES = [
    Route("/v2/publish/{rest:path}", publish.publish, methods=["POST"]),
    Route("/v2/enqueue/{rest:path}", publish.enqueue, methods=["POST"]),
    Route("/v2/batch", publish.batch, methods=["POST"]),
    Route("/v2/messages/{message_id}", messages.get_message, methods=["GET"]),
    Route("/v2/messages/{message_id}", messages.cancel_message, methods=["DELETE"]),
    Route("/v2/messages", messages.cancel_many, methods=["DELETE"]),
    Route("/v2/dlq", dlq.list_dlq, methods=["GET"]),
    Route("/v2/dlq", dlq.delete_many, methods=["DELETE"]),
    Route("/v2/dlq/retry", dlq.retry_many, methods=["POST"]),
    Route("/v2/dlq/retry/{dlq_id}", dlq.retry_one, methods=["POST"]),
    Route("/v2/dlq/{dlq_id}", dlq.get_dlq, methods=["GET"]),
    Route("/v2/dlq/{dlq_id}", dlq.delete_dlq, methods=["DELETE"]),
    Route("/v2/events", logs.events, methods=["GET"]),
    Route("/v2/logs", logs.logs, methods=["GET"]),
    Route("/v2/keys", keys.get_keys, methods=["GET"]),
    Route("/v2/keys/rotate", keys.rotate_keys, methods=["POST"]),
    Route("/v2/queues", queues.upsert, methods=["POST"]),
    Route("/v2/queues", queues.list_queues, methods=["GET"]),
    Route("/v2/queues/{queue}", queues.get_queue, methods=["GET"]),
    Route("/v2/queues/{queue}", queues.delete_queue, methods=["DELETE"]),
    Route("/v2/queues/{queue}/pause", queues.pause, methods=["POST"]),
    Route("/v2/queues/{queue}/resume", queues.resume, methods=["POST"]),
    Route("/v2/topics", url_groups.list_groups, methods=["GET"]),
    Route("/v2/topics/{group}", url_groups.get_group, methods=["GET"]),
    Route("/v2/topics/{group}", url_groups.delete_group, methods=["DELETE"]),
    Route("/v2/topics/{group}/endpoints", url_groups.upsert_endpoints, methods=["POST"]),
    Route("/v2/topics/{group}/endpoints", url_groups.remove_endpoints, methods=["DELETE"]),
    Route("/v2/schedules", schedules.list_schedules, methods=["GET"]),
    Route("/v2/schedules/{schedule_id}", schedules.get_schedule, methods=["GET"]),
    Route("/v2/schedules/{schedule_id}", schedules.delete_schedule, methods=["DELETE"]),
    Route("/v2/schedules/{schedule_id}/{action}", schedules.pause_resume, methods=["PATCH"]),
    Route("/v2/schedules/{rest:path}", schedules.create_or_pause, methods=["POST"]),
    Route("/v2/flowControl", flow_control.list_keys, methods=["GET"]),
    Route("/v2/flowControl/{rest:path}", flow_control.get_key, methods=["GET"]),
    Route("/v2/flowControl/{rest:path}", flow_control.act, methods=["POST"]),
    Route("/v2/globalParallelism", flow_control.global_parallelism, methods=["GET"]),
    Route("/openapi.json", openapi, methods=["GET"]),
    Route("/healthz", healthz, methods=["GET"]),
    Route("/readyz", readyz, methods=["GET"]),
]


async def seed_accounts(storage: Storage, settings: Settings, now_ms: int) -> None:
    for seed in settings.accounts:
        await storage.ensure_account(
            seed.account_id,
            now_ms=now_ms,
            keys=SigningKeys(seed.current_key, seed.next_key),
            token=seed.token,
            reset_keys=seed.reset_keys,
        )


def create_app(
    settings: Settings,
    *,
    storage: Storage | None = None,
    clock: Clock | None = None,
    resolve: ResolveFunc | None = None,
) -> Starlette:
    clock = clock or SystemClock()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[dict[str, Any]]:
        health = Health()
        store = storage or open_storage(
            settings.store_url,
            sqlite_synchronous=settings.sqlite_synchronous,
            settings=settings,
            health=health,
        )
        await store.open()
        warning = await store.check_durability()
        if warning is not None:
            if not settings.allow_unsafe_durability:
                await store.close()
                raise StorageUnavailable(
                    warning + " (start with --allow-unsafe-durability to accept)"
                )
            log.warning(warning, extra={"event": "storage.unsafe_durability"})
        registry = Metrics()
        sender = Sender(
            allow_private=settings.allow_private_destinations,
            max_timeout_s=settings.limits.max_timeout_s,
            resolve=resolve,
        )
        engine = DeliveryEngine(
            store,
            sender,
            clock,
            metrics=registry,
            settings=EngineSettings(
                concurrency=settings.concurrency,
                shutdown_timeout_s=settings.shutdown_timeout_s,
                retention_ms=settings.retention_ms,
                dlq_retention_ms=settings.dlq_retention_ms,
                policy=Policy(
                    backoff_scale=settings.backoff_scale, max_callback_body=settings.max_body_size
                ),
            ),
        )
        scheduler = Scheduler(store, clock, grace_ms=settings.schedule_grace_ms, metrics=registry)
        telemetry: Telemetry | None = None
        try:
            telemetry = engine.telemetry = Telemetry.from_settings(
                settings.otel_endpoint, node_id=engine.node_id
            )
            await seed_accounts(store, settings, clock.now_ms())
            await sender.start()
            await engine.recover()
            await engine.start()
            await scheduler.start()
            services = Services(
                settings=settings,
                storage=store,
                engine=engine,
                clock=clock,
                policy=DestinationPolicy(allow_private=settings.allow_private_destinations),
                scheduler=scheduler,
                metrics=registry,
                telemetry=telemetry,
                health=health,
            )
            app.state.services = services
            yield {"services": services}
        finally:
            await scheduler.stop()
            await engine.stop()
            if telemetry is not None:
                await telemetry.aclose()
            await sender.close()
            await store.close()

    routes = [*ROUTES, Mount("/console", app=create_console(settings.console_secret))]
    if settings.metrics_path:
        routes.append(Route(settings.metrics_path, metrics, methods=["GET"]))
    app = Starlette(routes=routes, exception_handlers=EXCEPTION_HANDLERS, lifespan=lifespan)
    app.add_middleware(Entry)
    return app
