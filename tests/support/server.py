"""A real Homing server on a loopback port, run in a background thread, for tests.

Tests talk to it over HTTP with the official SDKs. It can run on a `ManualClock` that the test
moves forward, so backoff and delays need no sleeping.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
import threading
from collections.abc import Callable, Coroutine
from typing import Any
from urllib.parse import quote

import uvicorn

from homing.actions.context import Services
from homing.clock import Clock, ManualClock
from homing.config import Settings
from homing.destinations import ResolveFunc
from homing.runtime import Runtime
from homing.server import _http_protocol, create_app
from homing.storage.base import Storage

DEV_TOKEN = "eyJVc2VySUQiOiJkZWZhdWx0VXNlciIsIlBhc3N3b3JkIjoiZGVmYXVsdFBhc3N3b3JkIn0="
DEV_CURRENT_KEY = "sig_7kYjw48mhY7kAjqNGcy6cr29RJ6r"
DEV_NEXT_KEY = "sig_5ZB6DVzB1wjE8S6rZ7eenA8Pdnhs"

# -- opt-in backend switch -----------------------------------------------------------------
# `HOMING_TEST_BACKEND=postgres` runs the SDK-driven suites (everything on `start_server`) on
# PostgreSQL: each server gets a fresh schema in the database at HOMING_TEST_POSTGRES_URL,
# dropped after the test. Read at import: tests/conftest.py hides HOMING_* during each test.
TEST_BACKEND = os.environ.get("HOMING_TEST_BACKEND", "sqlite").strip().lower() or "sqlite"
TEST_POSTGRES_URL = os.environ.get(
    "HOMING_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
SCHEMA_PREFIX = "homing_t_"


def with_search_path(url: str, schema: str) -> str:
    """`url` with `search_path=<schema>` as a query parameter: asyncpg passes unknown query
    parameters on as server settings, so every session of the pool (and the LISTEN
    connection) works in that schema."""
    return f"{url}{'&' if '?' in url else '?'}search_path={quote(schema)}"


def run_coroutine(make: Callable[[], Coroutine[Any, Any, Any]], timeout: float = 60) -> Any:
    """Run a coroutine to completion on a fresh loop in its own thread (safe from any test,
    including one that already runs inside an event loop)."""
    box: list[Any] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            box.append(asyncio.run(make()))
        except BaseException as exc:  # handed to the caller
            errors.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        raise TimeoutError(f"PostgreSQL admin work took over {timeout} s")
    if errors:
        raise errors[0]
    return box[0] if box else None


async def pg_execute(url: str, *statements: str) -> None:
    import asyncpg  # type: ignore[import-untyped]

    conn = await asyncpg.connect(url, timeout=10)
    try:
        # Never wait forever on a lock held by a server that did not stop.
        await conn.execute("SET lock_timeout = '10s'")
        for sql in statements:
            await conn.execute(sql)
    finally:
        await conn.close()


def postgres_or_skip(url: str = TEST_POSTGRES_URL) -> None:
    """Skip the test when PostgreSQL does not answer at `url`; fail it instead when the `CI`
    environment variable is set (CI provides the server)."""
    import pytest

    try:
        run_coroutine(lambda: pg_execute(url, "SELECT 1"), timeout=10)
    except Exception as exc:  # any failure to connect
        message = f"PostgreSQL at {url} is not reachable: {exc}"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


def postgres_on_test_clock(url: str, clock: Clock) -> Storage:
    """A PostgresStorage whose "database clock" is the test's clock.

    On PostgreSQL the scheduler reads the time from the database (`db_now_ms`), so that nodes
    with skewed clocks agree; a test that drives a `ManualClock` cannot move the database's
    clock, so for such a test the database clock follows the manual one. Everything else
    (storage, fire uniqueness, queries) is the real backend."""
    from homing.storage.postgres.backend import PostgresStorage

    class OnTestClock(PostgresStorage):
        async def db_now_ms(self) -> int | None:
            return clock.now_ms()

    return OnTestClock(url)


class PostgresSchemas:
    """Fresh, empty schemas for one test; `drop()` removes them all.

    `url_for(key)` gives the same schema for the same key (the data dir), so a test that
    restarts a server on its data dir finds its store again, as it would on SQLite.
    """

    def __init__(self, url: str = TEST_POSTGRES_URL) -> None:
        self.url = url
        self.by_key: dict[str, str] = {}
        self.created: list[str] = []

    def new(self) -> str:
        schema = SCHEMA_PREFIX + secrets.token_hex(6)
        run_coroutine(lambda: pg_execute(self.url, f'CREATE SCHEMA "{schema}"'))
        self.created.append(schema)
        return schema

    def url_for(self, key: str) -> str:
        if key not in self.by_key:
            self.by_key[key] = self.new()
        return with_search_path(self.url, self.by_key[key])

    def drop(self) -> None:
        schemas, self.created = self.created, []
        self.by_key.clear()
        if schemas:
            drops = [f'DROP SCHEMA IF EXISTS "{s}" CASCADE' for s in schemas]
            run_coroutine(lambda: pg_execute(self.url, *drops))


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
            loop="asyncio", http=_http_protocol(),  # the protocol `homing serve` runs
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

    @property
    def runtime(self) -> Runtime:
        """The node's parts (`runtime.engine`, `runtime.scheduler`), for white-box checks."""
        found: Runtime = self.app.state.runtime
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
