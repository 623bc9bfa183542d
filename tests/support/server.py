"""A real Homing server on a loopback port, run in a background thread, for tests.

Tests talk to it over HTTP with the official SDKs. It can run on a `ManualClock` that the test
moves forward, so backoff and delays need no sleeping.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Callable
from typing import Any

import uvicorn

from homing.api.app import create_app
from homing.api.context import Services
from homing.clock import Clock, ManualClock
from homing.config import Settings
from homing.destinations import ResolveFunc
from homing.storage.base import Storage

DEV_TOKEN = "eyJVc2VySUQiOiJkZWZhdWx0VXNlciIsIlBhc3N3b3JkIjoiZGVmYXVsdFBhc3N3b3JkIn0="
DEV_CURRENT_KEY = "sig_7kYjw48mhY7kAjqNGcy6cr29RJ6r"
DEV_NEXT_KEY = "sig_5ZB6DVzB1wjE8S6rZ7eenA8Pdnhs"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class RunningServer:
    def __init__(
        self,
        settings: Settings,
        *,
        clock: Clock | None = None,
        storage: Storage | None = None,
        resolve: ResolveFunc | None = None,
    ) -> None:
        self.settings = settings
        self.clock = clock
        self.port = settings.port
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.app = create_app(settings, clock=clock, storage=storage, resolve=resolve)
        config = uvicorn.Config(
            self.app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="on",
            loop="asyncio", http="httptools",
        )  # fmt: skip
        self._server = uvicorn.Server(config)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        self._loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._server.serve())
        finally:
            self._loop.close()

    def start(self) -> RunningServer:
        self._thread.start()
        while not self._server.started:
            if not self._thread.is_alive():
                raise RuntimeError("Homing failed to start")
            self._thread.join(0.01)
        return self

    @property
    def services(self) -> Services:
        found: Services = self.app.state.services
        return found

    def call(self, fn: Callable[[], Any]) -> Any:
        """Run `fn` on the server's event loop (e.g. to move its clock) and wait for it."""
        assert self._loop is not None
        done = threading.Event()
        box: list[Any] = []

        def run() -> None:
            box.append(fn())
            done.set()

        self._loop.call_soon_threadsafe(run)
        done.wait(5)
        return box[0] if box else None

    def advance(self, ms: int) -> None:
        assert isinstance(self.clock, ManualClock)
        clock = self.clock
        self.call(lambda: clock.advance(ms))

    def run(self, coro_fn: Callable[[], Any], timeout: float = 10) -> Any:
        """Run a coroutine on the server's loop (for direct storage checks)."""
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(coro_fn(), self._loop).result(timeout)

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(15)
