"""One delivery attempt over HTTP: build the request QStash sends (forwarded headers, `Upstash-*`
delivery headers, signature), send it, read the answer.

The request goes out on `homing.delivery.http1` (why a client of our own: see there), which
connects only to the addresses the destination policy checked. Every attempt runs under one
overall deadline, follows at most five redirects with each hop checked again, keeps at most
`max_response_bytes` of the answer, and never goes through a proxy.

The attempt is on the hot path of every delivery, so its per-request work is kept small
(`python -m bench.attempt` measures it against a bare aiohttp request): the token is assembled
by hand (`homing.signing`), the body hash is computed once per attempt, URLs are parsed once per
destination, and deadlines share one timer (`_Deadlines`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from urllib.parse import quote

from yarl import URL

from homing import signing
from homing.delivery import errors, http1
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
        self._client: http1.Client | None = None
        self._urls: dict[str, URL] = {}
        self._deadlines = _Deadlines()

    async def start(self) -> None:
        allow_private, resolve = self._resolver_args
        self._client = http1.Client(
            resolver=PolicyResolver(allow_private=allow_private, resolve=resolve),
            max_connections=self._max_connections,
            cap=self._max_response_bytes,
        )

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None

    def _headers(self, message: Message, signature: str) -> list[tuple[str, str]]:
        headers = [
            (name, value) for name, values in message.spec.headers.items() for value in values
        ]
        headers.extend(message.spec.trace.items())
        headers.append(("Upstash-Message-Id", message.id))
        headers.append(("Upstash-Retried", str(message.attempts)))
        headers.append(("Upstash-Signature", signature))
        headers.append(("User-Agent", USER_AGENT))
        headers.append(("Upstash-Caller-Ip", message.caller_ip))
        if message.topic_name:
            headers.append(("Upstash-Topic-Name", message.topic_name))
        if message.schedule_id:
            headers.append(("Upstash-Schedule-Id", message.schedule_id))
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
        except HomingError as exc:  # a redirect hop refused by the destination policy
            return Response(status=0, error=exc.message)
        except (OSError, ValueError, http1.AnswerError) as exc:
            return Response(status=0, error=errors.describe(exc))
        finally:
            if self._deadlines.remove(task, tick):
                # The deadline passed just as the attempt ended otherwise: its cancel is void.
                task.uncancel()

    async def _follow(self, message: Message, signing_key: str) -> Response:
        client = self._client
        assert client is not None, "Sender.start() was not called"
        url, method, body = message.url, message.spec.method, message.body
        digest = signing.body_hash(body)
        for _hop in range(MAX_REDIRECTS + 1):
            self.policy.check_url(url)
            signature = signing.sign(
                key=signing_key, url=url, body=body, now_s=int(time.time()), digest=digest
            )
            target = self._url(url)
            answer = await client.request(method, target, self._headers(message, signature), body)
            status = answer.status
            if status in _REDIRECTS:
                location = _first(answer.headers, "location")
                if location:
                    url = str(target.join(URL(location)))
                    if status == 303 or (status in (301, 302) and method == "POST"):
                        method, body = "GET", b""
                        digest = signing.body_hash(body)
                    continue
            return Response(status=status, headers=_header_map(answer.headers), body=answer.body)
        return Response(status=0, error=errors.too_many_redirects(MAX_REDIRECTS))


def _first(headers: list[tuple[str, str]], name: str) -> str | None:
    for key, value in headers:
        if key.lower() == name:
            return value
    return None


def _header_map(headers: list[tuple[str, str]]) -> Headers:
    out: Headers = {}
    for name, value in headers:
        out.setdefault(canonical(name), []).append(value)
    return out


def _ascii_target(url: str) -> str:
    """The URL as it goes on the wire: stored bytes kept, non-ASCII characters of the path and
    query percent-encoded (a raw UTF-8 request line is refused by conforming servers), and an
    internationalised host in its IDNA form, the host the destination policy checked."""
    if url.isascii():
        return url
    scheme, _, rest = url.partition("://")
    end = min((i for i in (rest.find("/"), rest.find("?"), rest.find("#")) if i >= 0), default=-1)
    authority, tail = (rest, "") if end < 0 else (rest[:end], rest[end:])
    if not authority.isascii():
        authority = URL(url).raw_authority
    return f"{scheme}://{authority}" + "".join(
        c if c.isascii() else quote(c, safe="") for c in tail
    )
