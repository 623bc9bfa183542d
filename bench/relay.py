"""The reference: a naive durable relay, the kind one writes in an afternoon.

Homing has to beat this by a wide margin (issue: >= 1.6x its end-to-end throughput in the same
run), so it is kept exactly this naive on purpose; it is a yardstick, not a design:

* aiohttp server and client on uvloop; `POST /v2/publish/<destination>` answers
  `201 {"messageId": ...}` only after the message is committed;
* every publish is appended to a SQLite WAL file with `synchronous=FULL`, one group commit per
  event-loop tick (all publishes that arrived in that tick share it), run on the loop itself;
* an in-memory ready queue and a timer heap for `Upstash-Delay`;
* 64 delivery tasks, each POSTing one message at a time; one autocommit `DELETE` per delivered
  message; no retries, no signatures, no logs, no leases, no authentication.

    python -m bench.relay --port P --data-dir DIR
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import heapq
import itertools
import os
import re
import sqlite3
import time
from pathlib import Path

import aiohttp
import uvloop
from aiohttp import web

from bench.common import LOOPBACK

WORKERS = 64
_DELAY = re.compile(r"^(\d+)(ms|s|m|h|d)?$")
_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, None: 1000}

Item = tuple[str, str, bytes, str]  # id, destination, body, content type


class Relay:
    def __init__(self, path: Path) -> None:
        self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS messages (id TEXT PRIMARY KEY, url TEXT, body BLOB, "
            "content_type TEXT, due_ms INTEGER)"
        )
        self.ids = itertools.count()
        self.prefix = f"msg_{os.getpid()}_"
        self.pending: list[tuple[Item, int, asyncio.Future[None]]] = []
        self.ready: asyncio.Queue[Item] = asyncio.Queue()
        self.timers: list[tuple[int, int, Item]] = []
        self.timer_wake = asyncio.Event()
        self.session: aiohttp.ClientSession | None = None

    # -- publish: group commit once per loop tick, then answer -------------------------------

    async def publish(self, request: web.Request) -> web.Response:
        destination = request.path[len("/v2/publish/") :]
        delay = _DELAY.match(request.headers.get("Upstash-Delay", "0").strip())
        if not destination or delay is None:
            return web.json_response({"error": "bad request"}, status=400)
        due = int(time.time() * 1000) + int(delay.group(1)) * _UNIT_MS[delay.group(2)]
        item = (
            self.prefix + str(next(self.ids)),
            destination,
            await request.read(),
            request.headers.get("Content-Type", "application/octet-stream"),
        )
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if not self.pending:
            asyncio.get_running_loop().call_soon(self.commit)
        self.pending.append((item, due, done))
        await done
        return web.json_response({"messageId": item[0]}, status=201)

    def commit(self) -> None:
        batch, self.pending = self.pending, []
        self.db.execute("BEGIN")
        self.db.executemany(
            "INSERT INTO messages VALUES (?, ?, ?, ?, ?)",
            [(i[0], i[1], i[2], i[3], due) for i, due, _ in batch],
        )
        self.db.execute("COMMIT")
        now = int(time.time() * 1000)
        for item, due, done in batch:
            if due <= now:
                self.ready.put_nowait(item)
            else:
                heapq.heappush(self.timers, (due, next(self.ids), item))
                self.timer_wake.set()
            done.set_result(None)

    # -- delivery ---------------------------------------------------------------------------

    async def timer_loop(self) -> None:
        while True:
            now = int(time.time() * 1000)
            while self.timers and self.timers[0][0] <= now:
                self.ready.put_nowait(heapq.heappop(self.timers)[2])
            self.timer_wake.clear()
            timeout = (self.timers[0][0] - now) / 1000 if self.timers else None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.timer_wake.wait(), timeout)

    async def worker(self) -> None:
        assert self.session is not None
        while True:
            message_id, url, body, content_type = await self.ready.get()
            headers = {
                "Upstash-Message-Id": message_id,
                "Upstash-Retried": "0",
                "Content-Type": content_type,
            }
            try:
                async with self.session.post(url, data=body, headers=headers) as resp:
                    await resp.read()
            except (aiohttp.ClientError, OSError, TimeoutError):
                continue  # no retries: the reference is naive on purpose
            self.db.execute("DELETE FROM messages WHERE id = ?", (message_id,))

    async def start(self, app: web.Application) -> None:
        self.session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=WORKERS))
        app["tasks"] = [asyncio.create_task(self.timer_loop())] + [
            asyncio.create_task(self.worker()) for _ in range(WORKERS)
        ]

    async def stop(self, app: web.Application) -> None:
        for task in app["tasks"]:
            task.cancel()
        if self.session is not None:
            await self.session.close()
        self.db.close()


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--data-dir", type=Path, required=True)
    args = parser.parse_args()
    args.data_dir.mkdir(parents=True, exist_ok=True)
    relay = Relay(args.data_dir / "relay.db")
    app = web.Application()
    app.router.add_post("/v2/publish/{rest:.*}", relay.publish)
    app.router.add_get("/readyz", healthz)
    app.on_startup.append(relay.start)
    app.on_cleanup.append(relay.stop)
    uvloop.run(_serve(app, args.port))


async def _serve(app: web.Application, port: int) -> None:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, LOOPBACK, port).start()
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()


if __name__ == "__main__":
    main()
