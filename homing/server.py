"""The ASGI application of a node, and `serve` that runs it under uvicorn.

The app is the node's front: the probes for every role, and for roles `all` and `api` the QStash
API (`homing.api`) and the console (`homing.console`) side by side, neither knowing the other.
Its lifespan starts the node's `Runtime` and stops it. On a `worker` node every path but the
probes answers a JSON 404.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import importlib.util
from collections.abc import AsyncIterator, Callable
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


# The collector's thresholds once a server has started (CPython's defaults: 700, 10, 10).
GC_THRESHOLDS = (50_000, 50, 100)


def settle_heap() -> None:
    """Tune the garbage collector for a server that has finished starting.

    Every message leaves a few hundred short-lived container objects behind; at the default
    thresholds that meant a young collection every few messages and, with attempts in flight
    surviving them, a full collection of the whole heap (50,000-65,000 objects, 25-50 ms with
    the event loop stopped) about once a second under load: the largest single cause of
    latency spikes and several percent of the CPU. Freezing what the start created takes it
    out of every later collection; larger thresholds let most objects die by reference count
    before a collection looks at them. Cycles are still collected, just in larger batches.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def create_app(
    settings: Settings,
    *,
    storage: Storage | None = None,
    clock: Clock | None = None,
    resolve: ResolveFunc | None = None,
    after_start: Callable[[], None] | None = None,
) -> Starlette:
    """The node's app for `settings.role`; tests inject their storage (not yet opened), clock
    and name resolver; `after_start` runs once the node has started (`serve`: `settle_heap`).
    `app.state.runtime` and `app.state.services` are set while it runs."""
    runtime = Runtime(settings, storage=storage, clock=clock, resolve=resolve)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[dict[str, Any]]:
        services = await runtime.start()
        if after_start is not None:
            after_start()
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


class OneSendPerStep(asyncio.Transport):
    """A connection's transport whose writes made in one step of the event loop leave in one
    `send`.

    uvicorn writes the head of a response and its body separately: two system calls, each a
    trip through the TCP stack, where one does; on a publish that was about a twentieth of the
    CPU. The bytes and their order are unchanged; they are joined and sent when the step ends,
    or at once past `LIMIT`, so that a large response still meets the transport's flow control.
    """

    LIMIT = 64 * 1024

    def __init__(self, transport: asyncio.Transport) -> None:
        super().__init__()
        self._transport = transport
        self._loop = asyncio.get_running_loop()
        self._pending: list[bytes | bytearray | memoryview] = []
        self._size = 0

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not self._pending:
            self._loop.call_soon(self.flush)
        self._pending.append(data)
        self._size += len(data)
        if self._size > self.LIMIT:
            self.flush()

    def flush(self) -> None:
        if self._pending:
            pending, self._pending, self._size = self._pending, [], 0
            self._transport.write(pending[0] if len(pending) == 1 else b"".join(pending))

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def abort(self) -> None:
        self._pending, self._size = [], 0
        self._transport.abort()

    def write_eof(self) -> None:
        self.flush()
        self._transport.write_eof()

    def can_write_eof(self) -> bool:
        return self._transport.can_write_eof()

    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._transport.get_extra_info(name, default)

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._transport.set_protocol(protocol)

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._transport.get_protocol()

    def is_reading(self) -> bool:
        return self._transport.is_reading()

    def pause_reading(self) -> None:
        self._transport.pause_reading()

    def resume_reading(self) -> None:
        self._transport.resume_reading()

    def get_write_buffer_size(self) -> int:
        return self._size + self._transport.get_write_buffer_size()

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return self._transport.get_write_buffer_limits()

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self._transport.set_write_buffer_limits(high, low)


def _http_protocol() -> type[asyncio.Protocol] | str:
    """uvicorn's httptools protocol on a `OneSendPerStep` transport (h11 if httptools is
    missing)."""
    if not importlib.util.find_spec("httptools"):
        return "h11"
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    class Protocol(HttpToolsProtocol):
        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(OneSendPerStep(transport))

    return Protocol


def serve(settings: Settings, *, log_level: str = "info") -> None:
    # Only here, in the server's own process: tests start many apps in one process, where a
    # frozen heap would keep every earlier test's garbage.
    app = create_app(settings, after_start=settle_heap)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        loop="uvloop" if importlib.util.find_spec("uvloop") else "asyncio",
        http=_http_protocol(),
        lifespan="on",
        log_config=None,  # keep the handlers `homing.logs` installed (JSON in serve)
        log_level=log_level,
        access_log=False,
        server_header=False,
        timeout_graceful_shutdown=int(settings.shutdown_timeout_s) + 2,
    )
    uvicorn.Server(config).run()
