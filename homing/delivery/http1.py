"""The HTTP/1.1 client that makes delivery attempts: keep-alive connections, one request at a
time on each, to the address the destination policy checked.

Why not a general-purpose client. aiohttp's client was the attempt's largest cost: about 85 us
of CPU per request on the event loop (`python -m bench.attempt`), a quarter of everything Homing
spends on a delivered message, for features a delivery never uses (cookies, proxies,
decompression, redirects, streaming uploads, tracing). A client written in Rust (`pyreqwest`)
costs less than half that, but it resolves and connects outside Python: the destination policy
could then only pin addresses and hope, and the security tests, which see every connect this
process makes (`tests/security/guard.py`), could no longer prove that no forbidden address is
ever connected to. So this module keeps the parts that need care in maintained libraries (the
parser is httptools' llhttp, the connect is aiohappyeyeballs' Happy Eyeballs, TLS is `ssl`) and
writes only what is left: framing one request, a pool of idle connections, and reading one
answer with a size cap.

What it does, exactly:
* Names are resolved by the `PolicyResolver` (which refuses a name if any of its addresses is
  forbidden) and the connection is made to those addresses and no other; an IP-literal host is
  connected to as written (the policy checked it before the attempt). Lookups are kept 10 s.
* TLS verifies the certificate against the system's trust store (`SSL_CERT_FILE` honoured) and
  the URL's host name, which is also the server name sent.
* A connection is reused only after a complete answer that allows it; one that was idle when the
  destination closed it is replaced once, transparently, if it failed before any byte came back.
* At most `cap` bytes of the answer's body are kept; past that the connection is dropped.
* Errors are the exception types below; `homing.delivery.errors.describe` words them.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import ipaddress
import socket
import ssl
import time
from dataclasses import dataclass
from typing import cast

import aiohappyeyeballs
import httptools
from yarl import URL

from homing.destinations import PolicyResolver

HAPPY_EYEBALLS_DELAY_S = 0.25
# An answer's head: at most this many header lines and bytes (aiohttp's limits were per line;
# these bound what an answer can make Homing hold and store, as the body cap does).
MAX_ANSWER_HEADERS = 256
MAX_ANSWER_HEAD_BYTES = 64 * 1024
DNS_TTL_S = 10.0
IDLE_TIMEOUT_S = 30.0
MAX_IDLE_PER_DESTINATION = 256
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


class ConnectFailed(OSError):
    """No connection could be made to `host:port` (the cause is `os_error`)."""

    def __init__(self, host: str, port: int, os_error: OSError) -> None:
        super().__init__(os_error.errno, str(os_error))
        self.host = host
        self.port = port
        self.os_error = os_error


class LookupFailed(OSError):
    """The name `host` did not resolve, or resolved to a forbidden address (`os_error`)."""

    def __init__(self, host: str, os_error: OSError) -> None:
        super().__init__(os_error.errno, os_error.strerror)
        self.host = host
        self.os_error = os_error


class AnswerError(Exception):
    """The connection was made but no valid, complete answer came back."""


class Disconnected(AnswerError):
    """The destination closed the connection before the answer's headers were complete."""


class Incomplete(AnswerError):
    """The destination closed the connection in the middle of the answer's body."""


class BadAnswer(AnswerError):
    """What came back is not an HTTP/1.x answer."""


@dataclass(slots=True)
class Answer:
    status: int
    headers: list[tuple[str, str]]
    body: bytes


class _Connection(asyncio.Protocol):
    """One TCP (or TLS) connection and the answer being read on it."""

    def __init__(self, cap: int) -> None:
        self._cap = cap
        self._parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.idle_since = 0.0
        self._waiter: asyncio.Future[Answer] | None = None
        self._status = 0
        self._headers: list[tuple[str, str]] = []
        self._chunks: list[bytes] = []
        self._kept = 0
        self._headers_done = False
        self._got_bytes = False
        self._until_close = False  # a body without a length: it ends with the connection
        self._keep_alive = False
        self._head_bytes = 0
        self._answered = False  # the answer to the request in flight is complete

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without deriving from it.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self._got_bytes = True
        waiter = self._waiter
        if waiter is None or waiter.done():
            self.close()  # bytes nobody asked for: the connection is not in a usable state
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(BadAnswer("protocol upgrade"))
        except httptools.HttpParserError as exc:
            self._fail(BadAnswer(str(exc)))

    def eof_received(self) -> bool:
        return False  # close the transport; connection_lost settles the waiter

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        waiter = self._waiter
        if waiter is None or waiter.done():
            return
        if self._headers_done and self._until_close and exc is None:
            self._finish()  # a body without a length ends with a clean close, not a reset
        elif self._headers_done:
            self._fail(Incomplete())
        elif isinstance(exc, OSError) and not self._got_bytes:
            self._fail(exc)
        else:
            self._fail(Disconnected())

    # httptools callbacks

    def on_message_begin(self) -> None:
        if self._answered:
            # A second answer to one request (bytes past the end of the first): nothing that
            # follows on this connection can be trusted to answer the next request.
            self.close()

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._headers_done or self._answered:
            return  # trailers of a chunked body, or an answer nobody asked for: not kept
        self._head_bytes += len(name) + len(value)
        if len(self._headers) >= MAX_ANSWER_HEADERS or self._head_bytes > MAX_ANSWER_HEAD_BYTES:
            self._fail(BadAnswer("answer headers too large"))
            return
        # Values are sometimes UTF-8 in the wild; whatever they are, what is kept must be text
        # that can be stored and shown (no lone surrogates).
        self._headers.append((name.decode("latin-1"), value.decode("utf-8", "replace")))

    def on_headers_complete(self) -> None:
        if self._answered:
            return
        self._status = status = self._parser.get_status_code()
        if status < 200:
            self._headers = []  # an interim answer (100 Continue): the real one follows
            self._head_bytes = 0
            return
        self._headers_done = True
        if status in (204, 304):
            return
        for name, value in self._headers:
            low = name.lower()
            if low == "content-length" or (
                # Chunked only if it is the last coding (RFC 9112 6.3); llhttp reads it so.
                low == "transfer-encoding" and value.lower().rstrip().endswith("chunked")
            ):
                return
        self._until_close = True

    def on_body(self, body: bytes) -> None:
        if self._answered:
            return
        room = self._cap - self._kept
        if room <= 0:
            return
        if len(body) > room:
            body = body[:room]
        self._chunks.append(body)
        self._kept += len(body)
        if self._kept >= self._cap:
            # Enough kept: the rest is not wanted, and reading it could take long.
            self._finish()
            self.close()

    def on_message_complete(self) -> None:
        if self._status >= 200 and not self._answered:
            # Read here: llhttp resets its flags once the callback returns.
            self._keep_alive = self._parser.should_keep_alive()
            self._finish()

    # the client's side

    def request(self, data: bytes) -> asyncio.Future[Answer]:
        assert self.transport is not None
        loop = asyncio.get_running_loop()
        self._waiter = waiter = loop.create_future()
        self._status = 0
        self._headers = []
        self._chunks = []
        self._kept = 0
        self._headers_done = False
        self._got_bytes = False
        self._until_close = False
        self._keep_alive = False
        self._head_bytes = 0
        self._answered = False
        self.transport.write(data)
        return waiter

    @property
    def reusable(self) -> bool:
        return (
            not self.closed
            and not self._until_close
            and self._kept < self._cap
            and self._keep_alive
            # An early answer (a 413 before the body was sent): what is left of the request
            # would reach the server as the start of the next one.
            and self.transport is not None
            and self.transport.get_write_buffer_size() == 0
        )

    @property
    def got_bytes(self) -> bool:
        return self._got_bytes

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.abort()  # no lingering close: a half-read answer is dropped

    def _finish(self) -> None:
        self._answered = True
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            body = b"".join(self._chunks) if len(self._chunks) != 1 else self._chunks[0]
            waiter.set_result(Answer(self._status, self._headers, body))

    def _fail(self, exc: BaseException) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)
        self.close()


_PoolKey = tuple[bool, str, int]  # (TLS, host, port)


class Client:
    """Keep-alive HTTP/1.1 connections to delivery destinations; `request` makes one exchange."""

    def __init__(self, *, resolver: PolicyResolver, max_connections: int, cap: int) -> None:
        self._resolver = resolver
        self._cap = cap
        self._slots = asyncio.Semaphore(max_connections)
        self._idle: dict[_PoolKey, collections.deque[_Connection]] = {}
        self._lookups: dict[tuple[str, int], tuple[float, list[tuple[int, str]]]] = {}
        self._tls = ssl.create_default_context()
        self._sweeper: asyncio.TimerHandle | None = None
        self._max_idle = max_connections
        self._idle_count = 0
        self._closed = False

    async def close(self) -> None:
        self._closed = True  # requests still in flight drop their connections when done
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        for conns in self._idle.values():
            for conn in conns:
                conn.close()
        self._idle.clear()
        self._idle_count = 0
        await self._resolver.close()

    async def request(
        self, method: str, url: URL, headers: list[tuple[str, str]], body: bytes
    ) -> Answer:
        """One request and its answer. Cancelling it drops the connection."""
        tls = url.scheme == "https"
        host = url.raw_host or ""
        port = url.port or (443 if tls else 80)
        key = (tls, host, port)
        data = _frame(method, url, host, port, tls, headers, body)
        async with self._slots:
            conn = self._take_idle(key)
            if conn is not None:
                try:
                    return await self._exchange(key, conn, data)
                except (Disconnected, OSError):
                    # The destination closed the idle connection as we reused it. Nothing came
                    # back, so the request is made again, once, on a new connection.
                    if conn.got_bytes:
                        raise
            conn = await self._connect(tls, host, port)
            return await self._exchange(key, conn, data)

    async def _exchange(self, key: _PoolKey, conn: _Connection, data: bytes) -> Answer:
        done = False
        try:
            answer = await conn.request(data)
            done = True
        finally:
            if not done:
                conn.close()
        if conn.reusable:
            self._put_idle(key, conn)
        else:
            conn.close()
        return answer

    def _take_idle(self, key: _PoolKey) -> _Connection | None:
        conns = self._idle.get(key)
        while conns:
            conn = conns.pop()  # the most recently used: the least likely to be closed by now
            self._idle_count -= 1
            if not conn.closed:
                return conn
        return None

    def _put_idle(self, key: _PoolKey, conn: _Connection) -> None:
        if self._closed or self._idle_count >= self._max_idle:
            conn.close()  # open sockets stay within `max_connections`, in use or idle
            return
        conns = self._idle.get(key)
        if conns is None:
            conns = self._idle[key] = collections.deque()
        if len(conns) >= MAX_IDLE_PER_DESTINATION:
            conn.close()
            return
        conn.idle_since = time.monotonic()
        conns.append(conn)
        self._idle_count += 1
        if self._sweeper is None:
            loop = asyncio.get_running_loop()
            self._sweeper = loop.call_later(IDLE_TIMEOUT_S / 2, self._sweep)

    def _sweep(self) -> None:
        """Close connections idle for longer than `IDLE_TIMEOUT_S`."""
        self._sweeper = None
        limit = time.monotonic() - IDLE_TIMEOUT_S
        for key in list(self._idle):
            conns = self._idle[key]
            # Oldest first: the deque is in the order the connections were put back.
            while conns and (conns[0].closed or conns[0].idle_since < limit):
                conns.popleft().close()
                self._idle_count -= 1
            if not conns:
                del self._idle[key]
        if self._idle:
            loop = asyncio.get_running_loop()
            self._sweeper = loop.call_later(IDLE_TIMEOUT_S / 2, self._sweep)

    async def _connect(self, tls: bool, host: str, port: int) -> _Connection:
        infos = await self._addresses(host, port)
        loop = asyncio.get_running_loop()
        try:
            sock = await aiohappyeyeballs.start_connection(
                infos, happy_eyeballs_delay=HAPPY_EYEBALLS_DELAY_S, interleave=1, loop=loop
            )
        except OSError as exc:
            raise ConnectFailed(host, port, exc) from None
        try:
            _, conn = await loop.create_connection(
                lambda: _Connection(self._cap),
                sock=sock,
                ssl=self._tls if tls else None,
                # The name as certificates carry it: without a root label's trailing dot.
                server_hostname=host.rstrip(".") if tls else None,
            )
        except ssl.SSLError:
            sock.close()
            raise
        except OSError as exc:
            sock.close()
            raise ConnectFailed(host, port, exc) from None
        except BaseException:
            sock.close()
            raise
        return conn

    async def _addresses(
        self, host: str, port: int
    ) -> list[tuple[int, int, int, str, tuple[str, int] | tuple[str, int, int, int]]]:
        """The addresses to connect to: the literal itself, or what the policy's resolver said."""
        literal = _ip_literal(host)
        if literal is not None:
            family = socket.AF_INET6 if literal.version == 6 else socket.AF_INET
            return [_addr_info(family, str(literal), port)]
        now = time.monotonic()
        cached = self._lookups.get((host, port))
        if cached is None or cached[0] < now:
            try:
                results = await self._resolver.resolve(host, port, socket.AF_UNSPEC)
            except OSError as exc:
                raise LookupFailed(host, exc) from None
            found = [(int(r["family"]), str(r["host"])) for r in results]
            if len(self._lookups) >= 4096:
                self._lookups.clear()
            self._lookups[(host, port)] = (now + DNS_TTL_S, found)
        else:
            found = cached[1]
        return [_addr_info(family, address, port) for family, address in found]


def _addr_info(
    family: int, address: str, port: int
) -> tuple[int, int, int, str, tuple[str, int] | tuple[str, int, int, int]]:
    sockaddr: tuple[str, int] | tuple[str, int, int, int] = (
        (address, port, 0, 0) if family == socket.AF_INET6 else (address, port)
    )
    return (family, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", sockaddr)


def _ip_literal(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """An IP address written in its standard form (a name like `0x7f.1` is resolved instead, as
    the resolver sees fit, and then checked like any name)."""
    if not host or not (host[0].isdigit() or ":" in host):
        return None
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def _frame(
    method: str,
    url: URL,
    host: str,
    port: int,
    tls: bool,
    headers: list[tuple[str, str]],
    body: bytes,
) -> bytes:
    """The request's bytes. Every name and value was checked at publish; a CR or LF here would
    split the request, so it is refused again (a ValueError: "invalid request")."""
    shown = f"[{host}]" if ":" in host else host
    if port != (443 if tls else 80):
        shown = f"{shown}:{port}"
    lines = [f"{method} {url.raw_path_qs or '/'} HTTP/1.1", f"Host: {shown}"]
    accept = authorization = False
    for name, value in headers:
        lines.append(f"{name}: {value}")
        low = name.lower()
        accept = accept or low == "accept"
        authorization = authorization or low == "authorization"
    if not accept:
        lines.append("Accept: */*")
    if url.raw_user is not None:
        # Credentials in the URL (`https://user:pass@host/`) are sent as Basic authentication,
        # as browsers and the previous client did; with an Authorization header as well, which
        # one was meant is unclear: refused.
        if authorization:
            raise ValueError("credentials both in the URL and in an Authorization header")
        credentials = f"{url.user or ''}:{url.password or ''}".encode()
        lines.append(f"Authorization: Basic {base64.b64encode(credentials).decode()}")
    if body or method in _BODY_METHODS:
        lines.append(f"Content-Length: {len(body)}")
    head = "\r\n".join(lines)
    breaks = len(lines) - 1
    if head.count("\n") != breaks or head.count("\r") != breaks or "\x00" in head:
        raise ValueError("a header or the target contains a line break or a NUL")
    return (head + "\r\n\r\n").encode("utf-8") + body
