"""The load generator: raw HTTP/1.1 over keep-alive connections, in its own process.

    python -m bench.loadgen JOB.json OUT.json

A job (`Job`, as JSON) is either
  * closed loop: `count` requests by `concurrency` workers, each on its own connection, sending
    the next request as soon as its previous answer arrived (throughput), or
  * open loop: `count` requests started on a fixed schedule of `rate` per second whatever the
    answers do (latency without coordinated omission); a request that finds no idle connection
    opens a new one rather than waiting.

Two clients:
  * "raw": a hand-rolled keep-alive client on asyncio protocols with httptools' response
    parser. It costs a fraction of a full client's CPU, which matters on a small box where the
    load generator competes with the server under test. Used for every request to Homing and to
    the framework ceiling, so both see exactly the same bytes and the same client cost.
  * "aiohttp": aiohttp's ClientSession, configured like Homing's delivery client. Used for the
    client-to-sink ceiling because that is what Homing's deliveries pay for each request.

With `ports`, the connections go round-robin to several servers on `host` (several Homing nodes).

Send timestamps are `time.time_ns()` taken immediately before the request is written to the
socket, comparable with the sink's arrival timestamps (same machine, same clock).
"""

from __future__ import annotations

import asyncio
import gc
import itertools
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol, cast

import aiohttp
import httptools
import orjson
import uvloop


@dataclass
class Job:
    host: str
    port: int
    path: str
    count: int
    method: str = "POST"
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: str = ""
    client: str = "raw"  # "raw" or "aiohttp"
    mode: str = "closed"  # "closed" or "open"
    concurrency: int = 64  # closed: workers; open: connections opened before the start
    rate: float = 0.0  # open loop: requests per second
    warmup: int = 0  # requests sent first and left out of every figure
    unique_header: str | None = None  # a header given a distinct value per request
    unique_prefix: str = "req-"
    parse_ids: bool = False  # read "messageId" from each JSON answer
    keep_samples: bool = True  # return per-request timestamps
    ports: list[int] = field(default_factory=list)  # connections round-robin over these; [port]

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Job:
        raw = dict(raw)
        raw["headers"] = [tuple(h) for h in raw.get("headers", [])]
        return cls(**raw)


class Channel(Protocol):
    """One request at a time over one connection (reconnecting when the server closed it)."""

    async def ready(self) -> None: ...

    async def send(self, index: int) -> tuple[int, bytes, int]:
        """(status, body, send_ns)."""
        ...

    def close(self) -> None: ...


# -- raw client ---------------------------------------------------------------------------------


class RawConnection(asyncio.Protocol):
    """A keep-alive HTTP/1.1 connection with at most one request outstanding."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._transport: asyncio.Transport | None = None
        self._parser = httptools.HttpResponseParser(self)
        self._waiter: asyncio.Future[tuple[int, bytes]] | None = None
        self._body: list[bytes] = []
        self.alive = False

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self._transport = cast(asyncio.Transport, transport)
        self.alive = True

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(exc)
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.alive = False
        self._fail(exc or ConnectionResetError("connection closed by the server"))

    # httptools callbacks
    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        status = self._parser.get_status_code()
        if not self._parser.should_keep_alive():
            self.alive = False
        body = b"".join(self._body)
        self._body.clear()
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result((status, body))

    def _fail(self, exc: BaseException) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)

    async def request(self, data: bytes) -> tuple[int, bytes]:
        assert self._transport is not None
        waiter: asyncio.Future[tuple[int, bytes]] = self._loop.create_future()
        self._waiter = waiter
        self._transport.write(data)
        return await waiter

    def close(self) -> None:
        self.alive = False
        if self._transport is not None:
            self._transport.close()


class RawRequests:
    """Pre-built request bytes: everything but the optional unique header is built once."""

    def __init__(self, job: Job, port: int) -> None:
        body = job.body.encode()
        lines = [f"{job.method} {job.path} HTTP/1.1", f"Host: {job.host}:{port}"]
        lines += [f"{name}: {value}" for name, value in job.headers]
        lines.append(f"Content-Length: {len(body)}")
        self._head = ("\r\n".join(lines) + "\r\n").encode("latin-1")
        self._body = body
        self._unique = job.unique_header
        self._prefix = job.unique_prefix
        self._fixed = self._head + b"\r\n" + body

    def payload(self, index: int) -> bytes:
        if self._unique is None:
            return self._fixed
        return b"%s%s: %s%d\r\n\r\n%s" % (
            self._head,
            self._unique.encode(),
            self._prefix.encode(),
            index,
            self._body,
        )


class RawChannel:
    def __init__(self, job: Job, requests: RawRequests, port: int) -> None:
        self._job = job
        self._requests = requests
        self._port = port
        self._conn: RawConnection | None = None

    async def ready(self) -> None:
        if self._conn is None or not self._conn.alive:
            loop = asyncio.get_running_loop()
            _, conn = await loop.create_connection(
                lambda: RawConnection(loop), self._job.host, self._port
            )
            self._conn = conn

    async def send(self, index: int) -> tuple[int, bytes, int]:
        await self.ready()
        assert self._conn is not None
        data = self._requests.payload(index)
        sent = time.time_ns()
        try:
            status, body = await self._conn.request(data)
        except BaseException:
            self._conn.close()
            self._conn = None
            raise
        return status, body, sent

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()


# -- aiohttp client -----------------------------------------------------------------------------


class AiohttpChannel:
    def __init__(self, job: Job, session: aiohttp.ClientSession, port: int) -> None:
        self._job = job
        self._session = session
        self._url = f"http://{job.host}:{port}{job.path}"
        self._body = job.body.encode()
        self._headers = dict(job.headers)

    async def ready(self) -> None:
        return None

    async def send(self, index: int) -> tuple[int, bytes, int]:
        headers = self._headers
        if self._job.unique_header is not None:
            headers = dict(headers)
            headers[self._job.unique_header] = f"{self._job.unique_prefix}{index}"
        sent = time.time_ns()
        async with self._session.request(
            self._job.method, self._url, data=self._body or None, headers=headers
        ) as resp:
            body = await resp.read()
            return resp.status, body, sent

    def close(self) -> None:
        return None


def aiohttp_session(limit: int) -> aiohttp.ClientSession:
    """A session set up like homing.delivery.sender.Sender's."""
    connector = aiohttp.TCPConnector(limit=limit, limit_per_host=0, keepalive_timeout=30)
    return aiohttp.ClientSession(
        connector=connector,
        trust_env=False,
        auto_decompress=False,
        cookie_jar=aiohttp.DummyCookieJar(),
        skip_auto_headers=("User-Agent", "Content-Type", "Accept-Encoding"),
    )


# -- running a job ------------------------------------------------------------------------------


class Recorder:
    def __init__(self, job: Job) -> None:
        total = job.warmup + job.count
        self.job = job
        self.send_ns = [0] * total
        self.done_ns = [0] * total
        self.status = [0] * total
        self.ids = [""] * total if job.parse_ids else []
        self.errors: Counter[str] = Counter()

    async def one(self, channel: Channel, index: int) -> None:
        try:
            status, body, sent = await channel.send(index)
        except Exception as exc:  # counted, never fatal: a benchmark reports failures
            self.errors[f"{type(exc).__name__}: {exc}"[:200]] += 1
            self.send_ns[index] = self.done_ns[index] = time.time_ns()
            self.status[index] = -1
            return
        self.done_ns[index] = time.time_ns()
        self.send_ns[index] = sent
        self.status[index] = status
        if self.job.parse_ids and 200 <= status < 300:
            try:
                self.ids[index] = orjson.loads(body)["messageId"]
            except (orjson.JSONDecodeError, KeyError, TypeError):
                self.errors["answer without messageId"] += 1

    def result(self, extra: dict[str, Any]) -> dict[str, Any]:
        w = self.job.warmup
        send, done, status = self.send_ns[w:], self.done_ns[w:], self.status[w:]
        statuses = Counter(str(s) for s in status)
        ok = sum(1 for s in status if 200 <= s < 300)
        first, last = (min(send), max(done)) if send else (0, 0)
        elapsed = (last - first) / 1e9
        out: dict[str, Any] = {
            "count": len(status),
            "ok": ok,
            "failed": len(status) - ok,
            "statuses": dict(statuses),
            "errors": dict(self.errors.most_common(10)),
            "first_send_ns": first,
            "last_done_ns": last,
            "elapsed_s": elapsed,
            "rps": len(status) / elapsed if elapsed > 0 else 0.0,
        }
        if self.job.keep_samples:
            out["send_ns"] = send
            out["done_ns"] = done
            out["status"] = status
        if self.job.parse_ids:
            out["ids"] = self.ids[w:]
        return out | extra


async def closed_loop(job: Job, channels: list[Channel], rec: Recorder) -> dict[str, Any]:
    total = job.warmup + job.count
    counter = itertools.count()

    async def worker(channel: Channel) -> None:
        while (index := next(counter)) < total:
            await rec.one(channel, index)

    # Connect everything before the first request so connection set-up is not measured.
    await asyncio.gather(*(c.ready() for c in channels))
    await asyncio.gather(*(worker(c) for c in channels))
    return {}


async def open_loop(
    job: Job, channels: list[Channel], rec: Recorder, new_channel: Any
) -> dict[str, Any]:
    await asyncio.gather(*(c.ready() for c in channels))
    idle = list(channels)
    total = job.warmup + job.count
    interval = 1e9 / job.rate
    lag_ns = [0] * total
    inflight = 0
    max_inflight = 0
    opened = 0
    pending: set[asyncio.Task[None]] = set()

    async def run(channel: Channel, index: int) -> None:
        nonlocal inflight
        try:
            await rec.one(channel, index)
        finally:
            inflight -= 1
            idle.append(channel)

    start = time.perf_counter_ns() + 20_000_000
    for index in range(total):
        target = start + int(index * interval)
        now = time.perf_counter_ns()
        if target > now:
            await asyncio.sleep((target - now) / 1e9)
        lag_ns[index] = time.perf_counter_ns() - target
        if idle:
            channel = idle.pop()
        else:
            channel = new_channel()
            channels.append(channel)
            opened += 1
        inflight += 1
        max_inflight = max(max_inflight, inflight)
        task = asyncio.create_task(run(channel, index))
        pending.add(task)
        task.add_done_callback(pending.discard)
    if pending:
        await asyncio.gather(*pending)
    lags = sorted(lag_ns[job.warmup :])
    return {
        "max_inflight": max_inflight,
        "connections_opened_during_run": opened,
        "schedule_lag_ms": {
            "p50": lags[len(lags) // 2] / 1e6 if lags else 0.0,
            "p99": lags[int(len(lags) * 0.99)] / 1e6 if lags else 0.0,
            "max": lags[-1] / 1e6 if lags else 0.0,
        },
    }


async def run_job(job: Job) -> dict[str, Any]:
    rec = Recorder(job)
    session: aiohttp.ClientSession | None = None
    ports = itertools.cycle(job.ports or [job.port])
    if job.client == "raw":
        requests = {port: RawRequests(job, port) for port in job.ports or [job.port]}

        def new_channel() -> Channel:
            port = next(ports)
            return RawChannel(job, requests[port], port)

    elif job.client == "aiohttp":
        session = aiohttp_session(limit=max(job.concurrency, 1) * 4)

        def new_channel() -> Channel:
            assert session is not None
            return AiohttpChannel(job, session, next(ports))

    else:
        raise SystemExit(f"unknown client {job.client!r}")
    channels = [new_channel() for _ in range(job.concurrency)]
    # The load generator is a measuring instrument: no GC pauses in the middle of a run.
    gc.collect()
    gc.freeze()
    gc.disable()
    cpu0 = time.process_time()
    try:
        if job.mode == "closed":
            extra = await closed_loop(job, channels, rec)
        elif job.mode == "open":
            extra = await open_loop(job, channels, rec, new_channel)
        else:
            raise SystemExit(f"unknown mode {job.mode!r}")
        extra["cpu_s"] = time.process_time() - cpu0  # this process, warm-up included
    finally:
        gc.enable()
        for c in channels:
            c.close()
        if session is not None:
            await session.close()
    return rec.result(extra | {"job": asdict(job) | {"body": f"<{len(job.body)} bytes>"}})


def main() -> None:
    if len(sys.argv) != 3:
        raise SystemExit("usage: python -m bench.loadgen JOB.json OUT.json")
    with open(sys.argv[1], "rb") as f:
        job = Job.from_dict(orjson.loads(f.read()))
    result = uvloop.run(run_job(job))
    with open(sys.argv[2], "wb") as f:
        f.write(orjson.dumps(result))
    print(
        f"loadgen: {result['count']} requests, {result['ok']} ok, {result['rps']:.0f}/s",
        file=sys.stderr,
    )


if __name__ == "__main__":
    main()
