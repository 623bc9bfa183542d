"""One delivery attempt over HTTP: build the request QStash sends (forwarded headers, `Upstash-*`
delivery headers, signature), send it, read the answer.

aiohttp because it is the fastest maintained asyncio client we measured and its resolver is
pluggable, which is what makes the destination policy airtight (`PolicyResolver`: we connect to
the address we checked). Every attempt runs under one overall deadline, follows at most five
redirects with each hop checked again, keeps at most `max_response_bytes` of the answer, and
ignores proxy environment variables (`trust_env=False`).
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
        try:
            async with asyncio.timeout(timeout):
                return await self._follow(message, signing_key)
        except TimeoutError:
            return Response(status=0, error=errors.timed_out(timeout))
        except HomingError as exc:  # a redirect hop refused by the destination policy
            return Response(status=0, error=exc.message)
        except (aiohttp.ClientError, OSError, ValueError) as exc:
            return Response(status=0, error=errors.describe(exc))

    async def _follow(self, message: Message, signing_key: str) -> Response:
        assert self._session is not None, "Sender.start() was not called"
        url, method, body = message.url, message.spec.method, message.body
        for _hop in range(MAX_REDIRECTS + 1):
            self.policy.check_url(url)
            signature = signing.sign(key=signing_key, url=url, body=body, now_s=int(time.time()))
            async with self._session.request(
                method,
                self._url(url),
                data=body if body else None,
                headers=self._headers(message, signature),
                allow_redirects=False,
            ) as resp:
                location = resp.headers.get("Location")
                if resp.status in _REDIRECTS and location:
                    url = str(resp.url.join(URL(location)))
                    if resp.status == 303 or (resp.status in (301, 302) and method == "POST"):
                        method, body = "GET", b""
                    continue
                data = await self._read_capped(resp)
                return Response(status=resp.status, headers=_header_map(resp), body=data)
        return Response(status=0, error=errors.too_many_redirects(MAX_REDIRECTS))

    async def _read_capped(self, resp: aiohttp.ClientResponse) -> bytes:
        """Keep at most `max_response_bytes`; stop reading there instead of draining a flood."""
        chunks: list[bytes] = []
        kept = 0
        while kept < self._max_response_bytes:
            chunk = await resp.content.read(self._max_response_bytes - kept)
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
