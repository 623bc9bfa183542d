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
from tests.support.server import DEV_CURRENT_KEY, DEV_NEXT_KEY, DEV_TOKEN, RunningServer, free_port


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
    """`start_server(clock=..., **settings_overrides)` -> a running Homing; stopped after."""
    started: list[RunningServer] = []

    def start(
        *, clock: Any = None, storage: Any = None, resolve: Any = None, **overrides: Any
    ) -> RunningServer:
        server = RunningServer(
            dev_settings(tmp_path, **overrides), clock=clock, storage=storage, resolve=resolve
        ).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


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
