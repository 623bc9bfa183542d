"""The delivery client (`homing.delivery.http1`) against raw loopback servers: what goes on the
wire, which answers it reads and how, and when a connection is kept, reused or dropped."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from yarl import URL

from homing.delivery import http1
from homing.destinations import PolicyResolver, make_static_resolver


class Peer:
    """A loopback TCP server; counts the connections it accepted and keeps the requests."""

    def __init__(self) -> None:
        self.connections = 0
        self.requests: list[bytes] = []
        self.port = 0

    async def read_request(self, reader: asyncio.StreamReader) -> bytes:
        head = await reader.readuntil(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":", 1)[1])
        request = head + (await reader.readexactly(length) if length else b"")
        self.requests.append(request)
        return request


Handler = Callable[[Peer, asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
Start = Callable[[Handler], Awaitable[Peer]]


@pytest.fixture
async def peer() -> AsyncIterator[Start]:
    servers: list[asyncio.Server] = []

    async def start(handler: Handler) -> Peer:
        state = Peer()

        async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            state.connections += 1
            try:
                await handler(state, reader, writer)
            except (asyncio.IncompleteReadError, ConnectionError):
                pass
            finally:
                writer.close()

        server = await asyncio.start_server(accept, "127.0.0.1", 0)
        servers.append(server)
        state.port = server.sockets[0].getsockname()[1]
        return state

    yield start
    for server in servers:
        server.close()


@pytest.fixture
async def client() -> AsyncIterator[http1.Client]:
    c = http1.Client(resolver=PolicyResolver(allow_private=True), max_connections=16, cap=1000)
    yield c
    await c.close()


OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


def replying(answer: bytes, *, each: bool = False, linger_s: float = 0.0) -> Handler:
    """A peer that reads a request and writes `answer` (to every request with `each`), then
    waits `linger_s` and closes the connection."""

    async def handle(
        peer: Peer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        while True:
            await peer.read_request(reader)
            writer.write(answer)
            await writer.drain()
            if not each:
                break
        await asyncio.sleep(linger_s)

    return handle


answer_each = replying(OK, each=True)


async def test_the_request_on_the_wire(peer: Start, client: http1.Client) -> None:
    server = await peer(answer_each)
    url = URL(f"http://127.0.0.1:{server.port}/hook/a%20b?x=1&y=%2F", encoded=True)
    answer = await client.request("POST", url, [("Upstash-Message-Id", "msg_1")], b'{"a":1}')
    assert (answer.status, answer.body) == (200, b"ok")
    head, body = server.requests[0].split(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    assert lines[0] == b"POST /hook/a%20b?x=1&y=%2F HTTP/1.1"
    assert f"Host: 127.0.0.1:{server.port}".encode() in lines
    assert b"Upstash-Message-Id: msg_1" in lines
    assert b"Content-Length: 7" in lines
    assert body == b'{"a":1}'


async def test_a_post_without_a_body_says_so_and_a_get_sends_no_length(
    peer: Start, client: http1.Client
) -> None:
    server = await peer(answer_each)
    url = URL(f"http://127.0.0.1:{server.port}/")
    await client.request("POST", url, [], b"")
    await client.request("GET", url, [], b"")
    assert b"Content-Length: 0" in server.requests[0]
    assert b"Content-Length" not in server.requests[1]


async def test_a_header_with_a_line_break_is_refused_before_anything_is_sent(
    peer: Start, client: http1.Client
) -> None:
    server = await peer(answer_each)
    url = URL(f"http://127.0.0.1:{server.port}/")
    for headers in ([("X-A", "1\r\nX-Injected: 1")], [("X-A\n", "1")], [("X-A", "1\r")]):
        with pytest.raises(ValueError):
            await client.request("POST", url, headers, b"")
    assert server.connections == 0


async def test_connections_are_kept_and_reused(peer: Start, client: http1.Client) -> None:
    server = await peer(answer_each)
    url = URL(f"http://127.0.0.1:{server.port}/")
    for _ in range(5):
        assert (await client.request("POST", url, [], b"x")).status == 200
    await asyncio.gather(*(client.request("POST", url, [], b"x") for _ in range(4)))
    assert server.connections == 4  # the first went back to the pool each time
    assert len(server.requests) == 9


async def test_an_idle_connection_the_destination_closed_is_replaced(
    peer: Start, client: http1.Client
) -> None:
    # Keep-alive by HTTP/1.1 default, but then the server goes away.
    server = await peer(replying(OK))
    url = URL(f"http://127.0.0.1:{server.port}/")
    assert (await client.request("POST", url, [], b"1")).status == 200
    await asyncio.sleep(0.05)
    assert (await client.request("POST", url, [], b"2")).status == 200
    assert server.connections == 2


async def test_connection_close_is_honoured(peer: Start, client: http1.Client) -> None:
    # The client, not the server, must not reuse it: the server keeps it open a while.
    answer = b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok"
    server = await peer(replying(answer, linger_s=1))
    url = URL(f"http://127.0.0.1:{server.port}/")
    await client.request("POST", url, [], b"")
    await client.request("POST", url, [], b"")
    assert server.connections == 2


@pytest.mark.parametrize(
    ("raw", "body"),
    [
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
            b"abcde",
        ),
        (b"HTTP/1.0 200 OK\r\n\r\nuntil the end", b"until the end"),
        (b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 1\r\n\r\n!", b"!"),
        (b"HTTP/1.1 204 No Content\r\n\r\n", b""),
    ],
    ids=["chunked", "until-close", "interim-answer", "no-content"],
)
async def test_every_framing_of_an_answer_is_read(
    peer: Start, client: http1.Client, raw: bytes, body: bytes
) -> None:
    server = await peer(replying(raw))
    answer = await client.request("POST", URL(f"http://127.0.0.1:{server.port}/"), [], b"")
    assert answer.body == body
    assert answer.status in (200, 201, 204)


async def test_headers_of_the_answer_are_kept_in_order(peer: Start, client: http1.Client) -> None:
    server = await peer(
        replying(
            b"HTTP/1.1 200 OK\r\nSet-Cookie: a=1\r\nset-cookie: b=2\r\nContent-Length: 0\r\n\r\n"
        )
    )
    answer = await client.request("GET", URL(f"http://127.0.0.1:{server.port}/"), [], b"")
    assert answer.headers[:2] == [("Set-Cookie", "a=1"), ("set-cookie", "b=2")]


async def test_a_large_answer_is_cut_at_the_cap_and_its_connection_dropped(
    peer: Start, client: http1.Client
) -> None:
    async def flood(peer: Peer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await peer.read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100000000\r\n\r\n")
        while True:  # far more than the cap, as fast as the client takes it
            writer.write(b"x" * 65536)
            await writer.drain()

    server = await peer(flood)
    url = URL(f"http://127.0.0.1:{server.port}/")
    answer = await asyncio.wait_for(client.request("POST", url, [], b""), 5)
    assert answer.body == b"x" * 1000
    await asyncio.wait_for(client.request("POST", url, [], b""), 5)
    assert server.connections == 2


async def test_a_cancelled_request_drops_its_connection(peer: Start, client: http1.Client) -> None:
    async def silent(
        peer: Peer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        await peer.read_request(reader)
        await reader.read()  # until the client goes away
        peer.requests.append(b"<closed>")

    server = await peer(silent)
    task = asyncio.create_task(
        client.request("POST", URL(f"http://127.0.0.1:{server.port}/"), [], b"")
    )
    await asyncio.sleep(0.1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.sleep(0.1)
    assert server.requests[-1] == b"<closed>"


async def test_a_name_is_connected_to_at_the_address_the_resolver_gave(
    peer: Start,
) -> None:
    server = await peer(answer_each)
    resolver = PolicyResolver(
        allow_private=True, resolve=make_static_resolver({"hooks.example.test": ["127.0.0.1"]})
    )
    client = http1.Client(resolver=resolver, max_connections=4, cap=100)
    try:
        url = URL(f"http://hooks.example.test:{server.port}/in")
        assert (await client.request("POST", url, [], b"")).status == 200
    finally:
        await client.close()
    assert f"Host: hooks.example.test:{server.port}".encode() in server.requests[0]


async def test_bytes_past_the_end_of_an_answer_are_never_read_as_the_next_answer(
    peer: Start, client: http1.Client
) -> None:
    # Each request gets an answer and the start of another one nobody asked for.
    server = await peer(replying(OK + b"HTTP/1.1 500 Bad\r\nX-Injected: 1\r\n", each=True))
    url = URL(f"http://127.0.0.1:{server.port}/")
    first = await client.request("POST", url, [], b"")
    second = await client.request("POST", url, [], b"")
    assert (first.status, first.headers) == (200, [("Content-Length", "2")])
    assert (second.status, second.headers) == (200, [("Content-Length", "2")])
    assert server.connections == 2  # the first connection was not trusted again


async def test_an_answer_with_too_many_header_bytes_is_refused(
    peer: Start, client: http1.Client
) -> None:
    fillers = b"".join(f"X-Filler-{n}: {'y' * 100}\r\n".encode() for n in range(2000))
    head = b"HTTP/1.1 200 OK\r\n" + fillers + b"Content-Length: 0\r\n\r\n"
    server = await peer(replying(head))
    with pytest.raises(http1.BadAnswer):
        await client.request("GET", URL(f"http://127.0.0.1:{server.port}/"), [], b"")


async def test_trailers_of_a_chunked_answer_are_not_taken_for_headers(
    peer: Start, client: http1.Client
) -> None:
    server = await peer(
        replying(
            b"HTTP/1.1 302 Found\r\nTransfer-Encoding: Chunked\r\n\r\n"
            b"2\r\nok\r\n0\r\nLocation: http://elsewhere.test/\r\n\r\n"
        )
    )
    answer = await client.request("GET", URL(f"http://127.0.0.1:{server.port}/"), [], b"")
    assert (answer.status, answer.body) == (302, b"ok")
    assert answer.headers == [("Transfer-Encoding", "Chunked")]


async def test_a_forwarded_accept_replaces_the_default_one(
    peer: Start, client: http1.Client
) -> None:
    server = await peer(answer_each)
    url = URL(f"http://127.0.0.1:{server.port}/")
    await client.request("POST", url, [("Accept", "application/json")], b"")
    await client.request("POST", url, [], b"")
    assert server.requests[0].count(b"Accept:") == 1
    assert b"Accept: application/json" in server.requests[0]
    assert b"Accept: */*" in server.requests[1]


async def test_credentials_in_the_url_are_sent_as_basic_authentication(
    peer: Start, client: http1.Client
) -> None:
    server = await peer(answer_each)
    url = URL(f"http://hook:s%40cret@127.0.0.1:{server.port}/in", encoded=True)
    await client.request("POST", url, [], b"")
    assert b"Authorization: Basic aG9vazpzQGNyZXQ=" in server.requests[0]  # hook:s@cret
    with pytest.raises(ValueError):
        await client.request("POST", url, [("Authorization", "Bearer x")], b"")


async def test_a_nul_in_a_header_is_refused(peer: Start, client: http1.Client) -> None:
    server = await peer(answer_each)
    with pytest.raises(ValueError):
        await client.request("POST", URL(f"http://127.0.0.1:{server.port}/"), [("X", "a\0b")], b"")
    assert server.connections == 0
