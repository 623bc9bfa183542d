"""The ASGI application of a node, and `serve` that runs it under uvicorn.

The app is the node's front: the probes for every role, and for roles `all` and `api` the QStash
API (`homing.api`) and the console (`homing.console`) side by side, neither knowing the other.
Its lifespan starts the node's `Runtime` and stops it. On a `worker` node every path but the
probes answers a JSON 404.
"""

from __future__ import annotations

import contextlib
import importlib.util
from collections.abc import AsyncIterator
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.routing import BaseRoute, Mount
from starlette.types import ASGIApp, Receive, Scope, Send

from homing.api import publish
from homing.api.app import ROUTES as API_ROUTES
from homing.api.app import Entry
from homing.api.errors import EXCEPTION_HANDLERS
from homing.clock import Clock
from homing.config import Settings
from homing.console.app import create_console
from homing.destinations import ResolveFunc
from homing.probes import probe_routes
from homing.runtime import Runtime
from homing.storage.base import Storage


class ConsoleHome:
    """`/console` is the console's home, served without a redirect hop to `/console/`."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == "/console":
            scope = dict(scope, path="/console/")
        await self.app(scope, receive, send)


class Front(Starlette):
    """The app, with `POST /v2/publish/...` and `/v2/enqueue/...` answered before any of its
    layers (`homing.api.publish.serve`): they are most of the traffic, and the middleware
    stack, router and `Request` cost about as much CPU as the publish itself."""

    serves_publish = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.serves_publish and publish.is_fast(scope):
            await publish.serve(scope, receive, send)
            return
        await super().__call__(scope, receive, send)


def create_app(
    settings: Settings,
    *,
    storage: Storage | None = None,
    clock: Clock | None = None,
    resolve: ResolveFunc | None = None,
) -> Starlette:
    """The node's app for `settings.role`; tests inject their storage (not yet opened), clock
    and name resolver. `app.state.runtime` and `app.state.services` are set while it runs."""
    runtime = Runtime(settings, storage=storage, clock=clock, resolve=resolve)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[dict[str, Any]]:
        services = await runtime.start()
        try:
            app.state.services = services
            yield {"services": services}
        finally:
            await runtime.stop()

    routes: list[BaseRoute] = probe_routes(settings)
    if runtime.serves_api:
        routes += [*API_ROUTES, Mount("/console", app=create_console(settings.console_secret))]
    app = Front(routes=routes, exception_handlers=EXCEPTION_HANDLERS, lifespan=lifespan)
    app.state.runtime = runtime
    if runtime.serves_api:
        app.serves_publish = True
        app.add_middleware(Entry)
        app.add_middleware(ConsoleHome)
    return app


def serve(settings: Settings, *, log_level: str = "info") -> None:
    app = create_app(settings)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        loop="uvloop" if importlib.util.find_spec("uvloop") else "asyncio",
        http="httptools" if importlib.util.find_spec("httptools") else "h11",
        lifespan="on",
        log_config=None,  # keep the handlers `homing.logs` installed (JSON in serve)
        log_level=log_level,
        access_log=False,
        server_header=False,
        timeout_graceful_shutdown=int(settings.shutdown_timeout_s) + 2,
    )
    uvicorn.Server(config).run()
