"""A client that goes away mid-request is an everyday event, not a server error."""

from __future__ import annotations

import logging
import socket
import time

import pytest

from tests.support.http import nowhere
from tests.support.server import DEV_TOKEN, RunningServer
from tests.support.waiting import eventually


def test_a_client_that_disconnects_mid_body_is_logged_as_such(
    server: RunningServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(
            (
                f"POST /v2/publish/{nowhere('/gone')} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                f"Authorization: Bearer {DEV_TOKEN}\r\nContent-Length: 1000\r\n\r\n"
            ).encode()
            + b"only part of the body"
        )
        time.sleep(0.2)  # the server has started reading the body

    def logged() -> list[logging.LogRecord]:
        return [
            r for r in caplog.records if getattr(r, "event", None) == "request.client_disconnected"
        ]

    [record] = eventually(logged)
    assert record.levelno == logging.INFO
    assert "POST /v2/publish/" in record.getMessage()
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
