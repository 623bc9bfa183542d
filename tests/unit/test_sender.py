"""The delivery client's own settings (what the attempt tests cannot reach in reasonable time)."""

from __future__ import annotations

import asyncio
import time

import pytest

from homing.delivery.sender import Sender
from homing.destinations import make_static_resolver
from homing.models import DeliverySpec, Message, MessageState


async def _silent_server() -> tuple[asyncio.Server, int]:
    """Accepts connections and never answers."""

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(3600)

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


def _message(url: str, timeout_s: int | None) -> Message:
    return Message(
        id="msg_1",
        account_id="a",
        url=url,
        body=b"x",
        spec=DeliverySpec(timeout_s=timeout_s),
        state=MessageState.ACTIVE,
        created_ms=0,
        not_before_ms=0,
        due_ms=0,
        attempts=0,
    )


@pytest.mark.asyncio
async def test_an_attempt_ends_at_its_deadline() -> None:
    server, port = await _silent_server()
    sender = Sender(allow_private=True)
    await sender.start()
    try:
        started = time.monotonic()
        responses = await asyncio.gather(
            *(sender.send(_message(f"http://127.0.0.1:{port}/", 1), "k" * 32) for _ in range(3))
        )
        elapsed = time.monotonic() - started
        assert [r.error for r in responses] == ["timed out after 1 s"] * 3
        assert 1.0 <= elapsed < 1.5
        # The task that made the attempts is not left cancelled.
        assert asyncio.current_task().cancelling() == 0  # type: ignore[union-attr]
        await asyncio.sleep(0)
    finally:
        await sender.close()
        server.close()


@pytest.mark.asyncio
async def test_a_cancel_from_elsewhere_is_not_a_timeout() -> None:
    server, port = await _silent_server()
    sender = Sender(allow_private=True)
    await sender.start()
    try:
        task = asyncio.create_task(sender.send(_message(f"http://127.0.0.1:{port}/", 5), "k" * 32))
        await asyncio.sleep(0.2)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert not sender._deadlines._buckets
    finally:
        await sender.close()
        server.close()


@pytest.mark.asyncio
async def test_an_internationalised_host_is_connected_to_and_named_in_its_idna_form() -> None:
    seen: list[bytes] = []

    async def record(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.append(await reader.readuntil(b"\r\n\r\n"))
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(record, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    sender = Sender(
        allow_private=True,
        resolve=make_static_resolver({"xn--bcher-kva.example": ["127.0.0.1"]}),
    )
    await sender.start()
    try:
        response = await sender.send(_message(f"http://bücher.example:{port}/ä?q=ü", 5), "k" * 32)
        assert response.status == 200, response.error
        request_line, *lines = seen[0].decode().split("\r\n")
        assert request_line == "POST /%C3%A4?q=%C3%BC HTTP/1.1"
        assert f"Host: xn--bcher-kva.example:{port}" in lines
    finally:
        await sender.close()
        server.close()
