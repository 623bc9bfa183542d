"""The error text of an attempt that got no HTTP answer: short, stable, and the same whatever
HTTP client made the attempt (docs/operations.md, "Errors of delivery attempts").

Where a loopback socket can cause the failure for real, the exception comes from a real request
by Homing's delivery client (`homing.delivery.http1`); the causes that loopback cannot produce
(unreachable hosts, certificate checks) are built the way the client raises them."""

from __future__ import annotations

import asyncio
import errno
import socket
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from yarl import URL

from homing.delivery import http1
from homing.delivery.errors import describe, timed_out, too_many_redirects
from homing.destinations import PolicyResolver, make_static_resolver

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def failure_of(url: str, *, resolver: PolicyResolver | None = None) -> str:
    """The text for what goes wrong when the delivery client GETs `url` (the test fails if
    nothing does)."""
    client = http1.Client(
        resolver=resolver or PolicyResolver(allow_private=True), max_connections=8, cap=1024
    )
    try:
        await client.request("GET", URL(url), [], b"")
    except (http1.AnswerError, OSError, ValueError) as exc:
        return describe(exc)
    finally:
        await client.close()
    raise AssertionError(f"GET {url} succeeded")


@pytest.fixture
async def serve() -> AsyncIterator[Callable[[Handler], Awaitable[int]]]:
    """`await serve(handler)` -> the port of a loopback TCP server running `handler`."""
    servers: list[asyncio.Server] = []

    async def start(handler: Handler) -> int:
        server = await asyncio.start_server(handler, "127.0.0.1", 0)
        servers.append(server)
        port: int = server.sockets[0].getsockname()[1]
        return port

    yield start
    for server in servers:
        server.close()
        await server.wait_closed()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


async def read_request(reader: asyncio.StreamReader) -> None:
    await reader.readuntil(b"\r\n\r\n")


async def test_a_closed_port_is_connection_refused_with_the_address() -> None:
    port = closed_port()
    assert await failure_of(f"http://127.0.0.1:{port}/") == f"connection refused (127.0.0.1:{port})"


async def test_an_ipv6_address_is_shown_in_brackets() -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6 on this machine")
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
            port = s.getsockname()[1]
    except OSError:
        pytest.skip("no IPv6 loopback on this machine")
    assert await failure_of(f"http://[::1]:{port}/") == f"connection refused ([::1]:{port})"


async def test_an_unknown_name_is_dns_no_such_host() -> None:
    resolver = PolicyResolver(allow_private=True, resolve=make_static_resolver({}))
    text = await failure_of("http://api.example.test/hook", resolver=resolver)
    assert text == "DNS: no such host (api.example.test)"


async def test_the_destination_policy_keeps_its_own_refusal() -> None:
    resolver = PolicyResolver(
        allow_private=False, resolve=make_static_resolver({"inside.test": ["10.0.0.7"]})
    )
    text = await failure_of("http://inside.test/", resolver=resolver)
    assert text.startswith("destination inside.test resolves to forbidden address 10.0.0.7")


async def test_a_peer_that_closes_without_answering(
    serve: Callable[[Handler], Awaitable[int]],
) -> None:
    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.close()

    port = await serve(hang_up)
    text = await failure_of(f"http://127.0.0.1:{port}/")
    assert text == "connection closed by the destination before a complete answer"


async def test_an_answer_cut_short(serve: Callable[[Handler], Awaitable[int]]) -> None:
    async def cut(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly ten b")
        await writer.drain()
        writer.close()

    port = await serve(cut)
    assert await failure_of(f"http://127.0.0.1:{port}/") == "answer cut short (incomplete body)"


async def test_an_answer_that_is_not_http(serve: Callable[[Handler], Awaitable[int]]) -> None:
    async def babble(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"SSH-2.0-OpenSSH_9.6\r\n\r\n")
        await writer.drain()
        writer.close()

    port = await serve(babble)
    assert await failure_of(f"http://127.0.0.1:{port}/") == "invalid HTTP answer"


async def test_tls_to_a_plain_http_server_is_a_failed_handshake(
    serve: Callable[[Handler], Awaitable[int]],
) -> None:
    async def plain(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(1024)
        writer.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()
        writer.close()

    port = await serve(plain)
    text = await failure_of(f"https://127.0.0.1:{port}/")
    assert text.startswith("TLS handshake failed: "), text
    reason = text.removeprefix("TLS handshake failed: ")
    assert reason and "[" not in reason and "SSL" not in reason and "_" not in reason, text


def connect_error(cause: OSError) -> str:
    return describe(http1.ConnectFailed("api.example.com", 443, cause))


def lookup_error(cause: OSError) -> str:
    return describe(http1.LookupFailed("api.example.com", cause))


@pytest.mark.parametrize(
    ("code", "text"),
    [
        (errno.ETIMEDOUT, "connect timed out (api.example.com:443)"),
        (errno.EHOSTUNREACH, "host unreachable (api.example.com:443)"),
        (errno.ENETUNREACH, "network unreachable (api.example.com:443)"),
        (errno.ECONNRESET, "connection reset (api.example.com:443)"),
        (errno.EMFILE, "cannot connect (api.example.com:443): too many open files"),
    ],
)
def test_connect_failures_name_the_cause_and_the_address(code: int, text: str) -> None:
    assert connect_error(OSError(code, "libc text")) == text


def test_several_addresses_that_all_fail() -> None:
    # Happy Eyeballs' "Multiple exceptions: ..." carries no errno.
    cause = OSError("Multiple exceptions: [Errno 111] ..., [Errno 101] ...")
    text = connect_error(cause)
    assert text == "cannot connect (api.example.com:443)"


def test_dns_failures() -> None:
    again = socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")
    assert lookup_error(again) == ("DNS: temporary failure, try again (api.example.com)")
    odd = socket.gaierror(socket.EAI_SERVICE, "Servname not supported")
    assert lookup_error(odd) == ("DNS: lookup failed (api.example.com)")


def test_a_rejected_certificate_says_why() -> None:
    for verify_message, reason in (
        ("certificate has expired", "certificate has expired"),
        ("self-signed certificate", "self-signed certificate"),
        (
            "Hostname mismatch, certificate is not valid for 'api.example.com'.",
            "Hostname mismatch, certificate is not valid for 'api.example.com'",
        ),
    ):
        cause = ssl.SSLCertVerificationError(1, "[SSL: CERTIFICATE_VERIFY_FAILED] ...")
        cause.verify_message = verify_message
        text = describe(cause)
        assert text == f"TLS handshake failed: {reason}"


def test_a_reset_of_an_open_connection() -> None:
    assert describe(OSError(errno.ECONNRESET, "Connection reset by peer")) == "connection reset"
    assert describe(ConnectionResetError(errno.EPIPE, "Broken pipe")) == "connection reset"
    assert describe(ConnectionResetError("Cannot write to closing transport")) == (
        "connection reset"
    )


def test_the_deadline_and_the_redirect_limit() -> None:
    assert timed_out(30) == "timed out after 30 s"
    assert timed_out(1.5) == "timed out after 1.5 s"
    assert too_many_redirects(5) == "too many redirects (more than 5)"


def test_anything_else_never_shows_a_library_text() -> None:
    class Surprise(Exception):
        pass

    assert describe(Surprise("client internals: <object at 0x7f>")) == "request failed"
