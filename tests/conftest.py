"""Shared fixtures: a real Homing server on a loopback port and a real local receiver."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from qstash import QStash
from qstash import Receiver as SignatureReceiver

from homing.clock import ManualClock
from homing.config import Settings, dev_accounts
from tests.support.receiver import Receiver
from tests.support.server import (
    DEV_CURRENT_KEY,
    DEV_NEXT_KEY,
    DEV_TOKEN,
    TEST_BACKEND,
    TEST_POSTGRES_URL,
    PostgresSchemas,
    RunningServer,
    free_port,
    postgres_on_test_clock,
)

# -- the opt-in backend switch (HOMING_TEST_BACKEND=postgres, see tests/support/server.py) --


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "sqlite_only(reason): the test is about the SQLite store itself (its file, the CLI on "
        "--data-dir, killing its single node); skipped when HOMING_TEST_BACKEND=postgres",
    )
    if TEST_BACKEND not in ("sqlite", "postgres"):
        raise pytest.UsageError(
            f"HOMING_TEST_BACKEND must be 'sqlite' or 'postgres', not {TEST_BACKEND!r}"
        )


def pytest_report_header(config: pytest.Config) -> str:
    if TEST_BACKEND == "postgres":
        return f"homing test backend: postgres ({TEST_POSTGRES_URL}, a fresh schema per server)"
    return "homing test backend: sqlite"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if TEST_BACKEND != "postgres":
        return
    for item in items:
        marker = item.get_closest_marker("sqlite_only")
        if marker is not None:
            why = marker.args[0] if marker.args else marker.kwargs.get("reason", "")
            item.add_marker(pytest.mark.skip(reason=f"SQLite only: {why}"))


@pytest.fixture(autouse=True)
def _clean_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests never see the developer's HOMING_* or QSTASH_* settings."""
    for key in list(os.environ):
        if key.startswith(("HOMING_", "QSTASH_")):
            monkeypatch.delenv(key)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def dev_settings(tmp_path: Path, **overrides: Any) -> Settings:
    base = Settings(
        mode="dev",
        port=free_port(),
        data_dir=str(tmp_path / "data"),
        accounts=dev_accounts(),
        allow_private_destinations=True,
        shutdown_timeout_s=2.0,
    )
    return replace(base, **overrides)


ServerFactory = Callable[..., RunningServer]


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator[ServerFactory]:
    """`start_server(clock=..., **settings_overrides)` -> a running Homing; stopped after.

    With HOMING_TEST_BACKEND=postgres, a server given neither `storage` nor `database_url`
    stores in a fresh PostgreSQL schema (one per data dir, dropped after the test)."""
    started: list[RunningServer] = []
    schemas = PostgresSchemas() if TEST_BACKEND == "postgres" else None

    def start(
        *, clock: Any = None, storage: Any = None, resolve: Any = None, **overrides: Any
    ) -> RunningServer:
        settings = dev_settings(tmp_path, **overrides)
        if schemas is not None and storage is None and settings.database_url is None:
            url = schemas.url_for(settings.data_dir)
            if clock is None:
                settings = replace(settings, database_url=url)  # opened as in production
            else:
                storage = postgres_on_test_clock(url, clock)
        server = RunningServer(settings, clock=clock, storage=storage, resolve=resolve).start()
        started.append(server)
        return server

    try:
        yield start
    finally:
        for server in started:
            server.stop()
        if schemas is not None:
            schemas.drop()


@pytest.fixture
def server(start_server: ServerFactory) -> RunningServer:
    return start_server()


@pytest.fixture
def manual_server(start_server: ServerFactory) -> RunningServer:
    return start_server(clock=ManualClock(start_ms=1_800_000_000_000))


@pytest.fixture
def client(server: RunningServer) -> QStash:
    return QStash(DEV_TOKEN, base_url=server.base_url)


@pytest.fixture
def verifier() -> SignatureReceiver:
    return SignatureReceiver(DEV_CURRENT_KEY, DEV_NEXT_KEY)
