"""A fault-injecting TCP proxy for tests: put it between Homing nodes and PostgreSQL.

    proxy = FaultProxy(("127.0.0.1", 5432)).start()   # own thread and event loop; loopback only
    url = f"postgresql://postgres@127.0.0.1:{proxy.port}/test"

    proxy.reset()          # every open connection is reset (RST) on both sides; new ones work
    proxy.stall(3)         # for 3 s no byte moves either way, on open and new connections alike
                           # (new connections are accepted and wait); then everything flows on
    proxy.drop_new(3)      # for 3 s every new connection is reset as soon as it is accepted;
                           # open connections carry on
    proxy.outage(3)        # the database is cut off: every open connection is reset and, for
                           # 3 s, every new one too
    proxy.heal()           # end every fault now
    proxy.close()

Each fault call returns at once; a timed fault ends by itself. A reset is a real TCP reset
(SO_LINGER 0), as a crashed middlebox or a restarted database host produces: the client sees
"connection reset", not an orderly close.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

CHUNK = 64 * 1024


@dataclass
class ProxyStats:
    accepted: int = 0
    dropped: int = 0  # new connections reset at once (drop-new, outage)
    reset: int = 0  # open connections reset (reset, outage)
    faults: list[tuple[str, float, float]] = field(default_factory=list)  # (kind, at, seconds)


def _abort(writer: asyncio.StreamWriter) -> None:
    """Close with a TCP reset rather than a FIN."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


class _Pair:
    """One client connection and its upstream connection."""

    def __init__(self, client: asyncio.StreamWriter) -> None:
        self.client = client
        self.upstream: asyncio.StreamWriter | None = None
        self.tasks: list[asyncio.Task[None]] = []

    def reset(self) -> None:
        for task in self.tasks:
            task.cancel()
        _abort(self.client)
        if self.upstream is not None:
            _abort(self.upstream)


class FaultProxy:
    def __init__(self, upstream: tuple[str, int], host: str = "127.0.0.1") -> None:
        if host != "127.0.0.1" or upstream[0] not in ("127.0.0.1", "localhost"):
            raise ValueError("the fault proxy only works on loopback")
        self.upstream = upstream
        self.host = host
        self.port = 0
        self.stats = ProxyStats()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None
        self._pairs: set[_Pair] = set()
        self._flowing = asyncio.Event()  # cleared while stalled
        self._flowing_ends = 0.0
        self._dropping_until = 0.0
        self._timers: list[asyncio.TimerHandle] = []

    # -- life cycle ----------------------------------------------------------------------

    def start(self) -> FaultProxy:
        self._thread.start()
        self._call(self._flowing.set)
        self._server = self._run(self._listen())
        return self

    async def _listen(self) -> asyncio.Server:
        server = await asyncio.start_server(self._accept, self.host, 0, backlog=1024)
        self.port = server.sockets[0].getsockname()[1]
        return server

    def close(self) -> None:
        async def shut() -> None:
            if self._server is not None:
                self._server.close()
            for pair in list(self._pairs):
                pair.reset()
            self._pairs.clear()

        with contextlib.suppress(Exception):
            self._run(shut())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        if not self._thread.is_alive():
            self._loop.close()

    # -- faults --------------------------------------------------------------------------

    def reset(self) -> None:
        self._note("reset", 0.0)
        self._call(self._reset_all)

    def stall(self, seconds: float) -> None:
        self._note("stall", seconds)

        def begin() -> None:
            self._flowing.clear()
            self._flowing_ends = time.monotonic() + seconds
            self._later(seconds, self._resume)

        self._call(begin)

    def drop_new(self, seconds: float) -> None:
        self._note("drop-new", seconds)
        self._call(lambda: self._drop_for(seconds))

    def outage(self, seconds: float) -> None:
        self._note("outage", seconds)

        def begin() -> None:
            self._drop_for(seconds)
            self._reset_all()

        self._call(begin)

    def heal(self) -> None:
        def end() -> None:
            for timer in self._timers:
                timer.cancel()
            self._timers.clear()
            self._dropping_until = 0.0
            self._flowing.set()

        self._call(end)

    def inject(self, kind: str, seconds: float) -> None:
        """One fault by name: "reset", "stall", "drop-new" or "outage"."""
        if kind == "reset":
            self.reset()
        elif kind == "stall":
            self.stall(seconds)
        elif kind == "drop-new":
            self.drop_new(seconds)
        elif kind == "outage":
            self.outage(seconds)
        else:
            raise ValueError(f"unknown fault {kind!r}")

    # -- on the proxy's loop -------------------------------------------------------------

    def _note(self, kind: str, seconds: float) -> None:
        self.stats.faults.append((kind, time.time(), seconds))

    def _reset_all(self) -> None:
        pairs, self._pairs = self._pairs, set()
        self.stats.reset += len(pairs)
        for pair in pairs:
            pair.reset()

    def _drop_for(self, seconds: float) -> None:
        self._dropping_until = max(self._dropping_until, time.monotonic() + seconds)

    def _resume(self) -> None:
        if time.monotonic() >= self._flowing_ends - 0.01:
            self._flowing.set()

    def _later(self, seconds: float, fn: Callable[[], None]) -> None:
        self._timers = [t for t in self._timers if not t.cancelled()]
        self._timers.append(self._loop.call_later(seconds, fn))

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.stats.accepted += 1
        if time.monotonic() < self._dropping_until:
            self.stats.dropped += 1
            _abort(writer)
            return
        pair = _Pair(writer)
        self._pairs.add(pair)
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            self._pairs.discard(pair)
            _abort(writer)
            return
        pair.upstream = up_writer
        if pair not in self._pairs:  # reset while connecting upstream
            pair.reset()
            return
        pair.tasks = [
            asyncio.create_task(self._pipe(reader, up_writer, pair)),
            asyncio.create_task(self._pipe(up_reader, writer, pair)),
        ]

    async def _pipe(
        self, source: asyncio.StreamReader, sink: asyncio.StreamWriter, pair: _Pair
    ) -> None:
        try:
            while True:
                data = await source.read(CHUNK)
                await self._flowing.wait()  # a stall holds back a close (FIN) as well
                if not data:
                    break
                sink.write(data)
                await sink.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            # One side closed (or failed): close the other, as a plain TCP relay would.
            if pair in self._pairs:
                self._pairs.discard(pair)
                for task in pair.tasks:
                    if task is not asyncio.current_task():
                        task.cancel()
                with contextlib.suppress(Exception):
                    pair.client.close()
                if pair.upstream is not None:
                    with contextlib.suppress(Exception):
                        pair.upstream.close()

    # -- thread plumbing -----------------------------------------------------------------

    def _call(self, fn: Callable[[], None]) -> None:
        done = threading.Event()

        def run() -> None:
            try:
                fn()
            finally:
                done.set()

        self._loop.call_soon_threadsafe(run)
        if not done.wait(5):
            raise TimeoutError("the fault proxy's loop did not answer")

    def _run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(10)
