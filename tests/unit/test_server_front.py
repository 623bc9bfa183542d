"""The node's front as `homing serve` runs it: one `send` per response, and the publish fast path
answering exactly as the router would."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn
from starlette.types import Message

from homing.config import Settings, dev_accounts
from homing.server import OneSendPerStep, _http_protocol, create_app
from homing.web.http import JSON, send_json
from tests.support.server import DEV_TOKEN, free_port


class Recording(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.sent: list[bytes] = []
        self.closed = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.sent.append(bytes(data))

    def close(self) -> None:
        self.closed = True

    def get_write_buffer_size(self) -> int:
        return 0


async def test_writes_of_one_step_leave_in_one_send_in_order() -> None:
    inner = Recording()
    transport = OneSendPerStep(inner)
    head, body = b"HTTP/1.1 201 Created\r\n\r\n", b'{"messageId":"msg_1"}'
    transport.write(head)
    transport.write(memoryview(body))
    assert inner.sent == []
    assert transport.get_write_buffer_size() == len(head) + len(body)
    await asyncio.sleep(0)
    assert inner.sent == [b'HTTP/1.1 201 Created\r\n\r\n{"messageId":"msg_1"}']
    transport.write(b"next")
    await asyncio.sleep(0)
    assert inner.sent[1:] == [b"next"]


async def test_close_sends_what_is_pending_first() -> None:
    inner = Recording()
    transport = OneSendPerStep(inner)
    transport.write(b"last words")
    transport.close()
    assert inner.sent == [b"last words"] and inner.closed
    await asyncio.sleep(0)  # the scheduled flush finds nothing left
    assert inner.sent == [b"last words"]


async def test_a_large_response_is_not_held_back() -> None:
    inner = Recording()
    transport = OneSendPerStep(inner)
    transport.write(b"x" * (OneSendPerStep.LIMIT + 1))
    assert inner.sent == [b"x" * (OneSendPerStep.LIMIT + 1)]


async def test_send_json_sends_what_the_json_response_sends() -> None:
    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    for content, status in (({"messageId": "msg_1", "url": "https://x"}, 201), ([], 202)):
        sent.clear()
        await send_json(send, content, status)
        expected = JSON(content, status_code=status)
        assert sent == [
            {"type": "http.response.start", "status": status, "headers": expected.raw_headers},
            {"type": "http.response.body", "body": expected.body},
        ]


@pytest.fixture
def served(tmp_path: Path) -> Iterator[str]:
    """A node served as `homing serve` serves it (its HTTP protocol included)."""
    port = free_port()
    settings = Settings(
        mode="dev",
        port=port,
        data_dir=str(tmp_path / "data"),
        accounts=dev_accounts(),
        allow_private_destinations=True,
        shutdown_timeout_s=2.0,
    )
    config = uvicorn.Config(
        create_app(settings),
        host="127.0.0.1",
        port=port,
        http=_http_protocol(),
        lifespan="on",
        log_level="warning",
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        assert thread.is_alive(), "the server failed to start"
        thread.join(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


def test_publish_answers_and_errors_over_the_served_protocol(served: str) -> None:
    auth = {"Authorization": f"Bearer {DEV_TOKEN}"}
    with httpx.Client(base_url=served, timeout=10) as http:
        ok = http.post("/v2/publish/http://127.0.0.1:9/hook", headers=auth, content=b"{}")
        assert ok.status_code == 201 and ok.json()["messageId"].startswith("msg_")
        assert ok.headers["content-type"] == "application/json"
        again = http.post(
            "/v2/enqueue/q1/http://127.0.0.1:9/hook?a=1", headers=auth, content=b"x" * 70_000
        )
        assert again.status_code == 201 and again.json()["url"] == "http://127.0.0.1:9/hook?a=1"
        refused = http.post("/v2/publish/http://127.0.0.1:9/hook")
        assert refused.status_code == 401 and "error" in refused.json()
        bad = http.post(
            "/v2/publish/http://127.0.0.1:9/hook", headers=auth | {"Upstash-Delay": "soon"}
        )
        assert bad.status_code == 400 and "Upstash-Delay" in bad.json()["error"]
        no_queue = http.post("/v2/enqueue/", headers=auth)
        routed = http.get("/v2/publish/http://127.0.0.1:9/hook", headers=auth)
        assert routed.status_code == 405
        assert no_queue.status_code in (307, 404, 405)


def test_pipelined_requests_are_answered_in_order(served: str) -> None:
    port = int(served.rsplit(":", 1)[1])
    request = (
        f"POST /v2/publish/http://127.0.0.1:9/p HTTP/1.1\r\nHost: x\r\n"
        f"Authorization: Bearer {DEV_TOKEN}\r\nContent-Length: 2\r\n\r\n{{}}"
    ).encode()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request * 3 + b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    assert received.count(b"HTTP/1.1 201 Created") == 3
    assert received.rindex(b"HTTP/1.1 201") < received.rindex(b"HTTP/1.1 200 OK")
