"""One delivery attempt over HTTP: build the request QStash sends (forwarded headers, `Upstash-*`
delivery headers, signature), send it, read the answer.

aiohttp because it is the fastest maintained asyncio client we measured and its resolver is
pluggable, which is what makes the destination policy airtight (`PolicyResolver`: we connect to
the address we checked). Every attempt runs under one overall deadline, follows at most five
redirects with each hop checked again, keeps at most `max_response_bytes` of the answer, and
ignores proxy environment variables (`trust_env=False`).

The attempt is on the hot path of every delivery, so its per-request work is kept close to what
aiohttp itself costs (`python -m bench.attempt` measures both): the token is assembled by hand
(`homing.signing`), the body hash is computed once per attempt, URLs are parsed once per
destination, deadlines share one timer (`_Deadlines`), and a small answer is taken from the
buffer in one step.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from urllib.parse import quote

import aiohttp
from multidict import CIMultiDict
from yarl import URL

from homing import signing
from homing.delivery import errors
from homing.destinations import DestinationPolicy, PolicyResolver, ResolveFunc
from homing.errors import HomingError
from homing.headers import canonical
from homing.models import Headers, Message, Response

USER_AGENT = "Upstash-QStash"
MAX_REDIRECTS = 5
_REDIRECTS = frozenset({301, 302, 303, 307, 308})

KeyLookup = Callable[[str], Awaitable[str]]


class _Deadlines:
    """The deadlines of the attempts in flight, on one shared timer.

    An `asyncio.timeout` per attempt made and cancelled an event-loop timer each time, about
    6 us, a tenth of the attempt's own CPU. Here a deadline is an entry in the bucket of its
    tick, and one timer, ticking only while attempts are in flight, cancels the tasks whose
    deadline has passed: an attempt ends at most two ticks (50 ms) after its deadline. That
    cancel is told apart from any other (shutdown) as `asyncio.timeout` does it: by the task's
    cancel count and the set of tasks this class cancelled.
    """

    TICK_S = 0.025

    def __init__(self) -> None:
        self._buckets: dict[int, set[asyncio.Task[object]]] = {}
        self._expired: set[asyncio.Task[object]] = set()
        self._swept = 0  # every tick up to this one has been swept
        self._timer: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def add(
        self, task: asyncio.Task[object], loop: asyncio.AbstractEventLoop, timeout_s: float
    ) -> int:
        """Watch `task` until `remove`; returns the tick to hand to `remove`."""
        now = loop.time()
        if self._timer is None or self._loop is not loop:  # nothing in flight: start ticking
            if self._loop is not loop:  # a new loop: its clock and tasks are its own
                self._buckets.clear()
                self._expired.clear()
                self._swept = 0
                self._loop = loop
            self._swept = max(self._swept, int(now / self.TICK_S))
            self._timer = loop.call_later(self.TICK_S, self._sweep, loop)
        # The first tick whose sweep sees the deadline passed; never one already swept.
        tick = max(int((now + timeout_s) / self.TICK_S) + 1, self._swept + 1)
        bucket = self._buckets.get(tick)
        if bucket is None:
            bucket = self._buckets[tick] = set()
        bucket.add(task)
        return tick

    def remove(self, task: asyncio.Task[object], tick: int) -> bool:
        """Stop watching `task`; True if this class cancelled it (its deadline passed)."""
        bucket = self._buckets.get(tick)
        if bucket is not None:
            bucket.discard(task)
            if not bucket:
                del self._buckets[tick]
        if self._expired and task in self._expired:
            self._expired.discard(task)
            return True
        return False

    def _sweep(self, loop: asyncio.AbstractEventLoop) -> None:
        now_tick = int(loop.time() / self.TICK_S)
        for tick in range(self._swept + 1, now_tick + 1):
            for task in self._buckets.pop(tick, ()):
                self._expired.add(task)
                task.cancel()
        self._swept = max(self._swept, now_tick)
        self._timer = loop.call_later(self.TICK_S, self._sweep, loop) if self._buckets else None


class Sender:
    def __init__(
        self,
        *,
        allow_private: bool,
        max_timeout_s: int = 15 * 60,
        max_response_bytes: int = 256 * 1024,
        max_connections: int = 1024,
        resolve: ResolveFunc | None = None,
        policy: DestinationPolicy | None = None,
    ) -> None:
        # The node's one policy (the runtime passes the one publishes are checked by).
        self.policy = policy or DestinationPolicy(allow_private=allow_private)
        self._resolver_args = (allow_private, resolve)
        self._max_timeout_s = max_timeout_s
        self._max_response_bytes = max_response_bytes
        self._max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None
        self._urls: dict[str, URL] = {}
        self._deadlines = _Deadlines()

    async def start(self) -> None:
        allow_private, resolve = self._resolver_args
        connector = aiohttp.TCPConnector(
            limit=self._max_connections,
            limit_per_host=0,
            resolver=PolicyResolver(allow_private=allow_private, resolve=resolve),
            ttl_dns_cache=10,
            keepalive_timeout=30,
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            trust_env=False,
            auto_decompress=False,
            cookie_jar=aiohttp.DummyCookieJar(),
            skip_auto_headers=("User-Agent", "Content-Type", "Accept-Encoding"),
            # No aiohttp timeouts: `send` puts one deadline around the whole attempt, and
            # aiohttp's default (300 s total) would cut an allowed 15-minute timeout short.
            timeout=aiohttp.ClientTimeout(),
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _headers(self, message: Message, signature: str) -> CIMultiDict[str]:
        headers: CIMultiDict[str] = CIMultiDict()
        for name, values in message.spec.headers.items():
            for value in values:
                headers.add(name, value)
        for name, value in message.spec.trace.items():
            headers[name] = value
        headers["Upstash-Message-Id"] = message.id
        headers["Upstash-Retried"] = str(message.attempts)
        headers["Upstash-Signature"] = signature
        headers["User-Agent"] = USER_AGENT
        headers["Upstash-Caller-Ip"] = message.caller_ip
        if message.topic_name:
            headers["Upstash-Topic-Name"] = message.topic_name
        if message.schedule_id:
            headers["Upstash-Schedule-Id"] = message.schedule_id
        return headers

    def _url(self, url: str) -> URL:
        """The wire form of a destination, kept: parsing it costs more than a dict lookup and
        most attempts go to a few URLs."""
        found = self._urls.get(url)
        if found is None:
            found = URL(_ascii_target(url), encoded=True)
            if len(url) <= 2048:  # huge URLs are not remembered: they must not pin memory
                if len(self._urls) >= 4096:
                    self._urls.clear()
                self._urls[url] = found
        return found

    async def send(self, message: Message, signing_key: str) -> Response:
        """Make the attempt; never raises for anything the destination does."""
        timeout = min(message.spec.timeout_s or self._max_timeout_s, self._max_timeout_s)
        task = asyncio.current_task()
        assert task is not None, "Sender.send runs in a task"
        cancelling = task.cancelling()
        tick = self._deadlines.add(task, asyncio.get_running_loop(), timeout)
        try:
            return await self._follow(message, signing_key)
        except asyncio.CancelledError:
            if self._deadlines.remove(task, tick) and task.uncancel() <= cancelling:
                return Response(status=0, error=errors.timed_out(timeout))
            raise  # cancelled by someone else (shutdown)
        except TimeoutError:
            return Response(status=0, error=errors.timed_out(timeout))
        except HomingError as exc:  # a redirect hop refused by the destination policy
            return Response(status=0, error=exc.message)
        except (aiohttp.ClientError, OSError, ValueError) as exc:
            return Response(status=0, error=errors.describe(exc))
        finally:
            if self._deadlines.remove(task, tick):
                # The deadline passed just as the attempt ended otherwise: its cancel is void.
                task.uncancel()

    async def _follow(self, message: Message, signing_key: str) -> Response:
        session = self._session
        assert session is not None, "Sender.start() was not called"
        url, method, body = message.url, message.spec.method, message.body
        digest = signing.body_hash(body)
        for _hop in range(MAX_REDIRECTS + 1):
            self.policy.check_url(url)
            signature = signing.sign(
                key=signing_key, url=url, body=body, now_s=int(time.time()), digest=digest
            )
            async with session.request(
                method,
                self._url(url),
                data=body if body else None,
                headers=self._headers(message, signature),
                allow_redirects=False,
            ) as resp:
                status = resp.status
                if status in _REDIRECTS:
                    location = resp.headers.get("Location")
                    if location:
                        url = str(resp.url.join(URL(location)))
                        if status == 303 or (status in (301, 302) and method == "POST"):
                            method, body = "GET", b""
                            digest = signing.body_hash(body)
                        continue
                data = await self._read_capped(resp)
                return Response(status=status, headers=_header_map(resp), body=data)
        return Response(status=0, error=errors.too_many_redirects(MAX_REDIRECTS))

    async def _read_capped(self, resp: aiohttp.ClientResponse) -> bytes:
        """Keep at most `max_response_bytes`; stop reading there instead of draining a flood."""
        content = resp.content
        cap = self._max_response_bytes
        if content.is_eof():
            # The whole answer is already buffered (a small one came with its headers).
            data = content.read_nowait(cap)
            if not content.at_eof():
                resp.close()  # more than the cap: the rest is not wanted
            return data
        chunks: list[bytes] = []
        kept = 0
        while kept < cap:
            chunk = await content.read(cap - kept)
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)
            kept += len(chunk)
        resp.close()  # the rest is not wanted: drop the connection rather than read it
        return b"".join(chunks)


def _header_map(resp: aiohttp.ClientResponse) -> Headers:
    out: Headers = {}
    for name, value in resp.headers.items():
        out.setdefault(canonical(name), []).append(value)
    return out


def _ascii_target(url: str) -> str:
    """The URL as it goes on the wire: stored bytes kept, non-ASCII characters percent-encoded
    (a raw UTF-8 request line is refused by conforming servers)."""
    if url.isascii():
        return url
    return "".join(c if c.isascii() else quote(c, safe="") for c in url)
