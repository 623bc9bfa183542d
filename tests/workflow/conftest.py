"""Fixtures shared by the workflow suites: one Homing per module and the third party that
`context.call` reaches."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.reliability.support import HomingProcess
from tests.support.receiver import Receiver
from tests.workflow.support import THIRD_PARTY_PATH, THIRD_PARTY_REPLY


@pytest.fixture(scope="module")
def homing(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HomingProcess]:
    """`homing dev` as a real process (restartable on its data dir by the kill tests)."""
    tmp = tmp_path_factory.mktemp("homing")
    # Retry backoff scaled down so a failed attempt is retried within the test's patience.
    server = HomingProcess(tmp / "data", tmp / "homing.log", extra=["--backoff-scale", "0.01"])
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def third_party() -> Iterator[Receiver]:
    """The endpoint `context.call` reaches: a receiver in the test, with a distinctive answer."""
    receiver = Receiver()
    receiver.on(THIRD_PARTY_PATH, lambda _: THIRD_PARTY_REPLY)
    try:
        yield receiver
    finally:
        receiver.close()
