"""A fast HTTP receiver for the multi-node tests, run as its own process.

    python tests/multinode/sink.py        # prints {"port": P} and serves on 127.0.0.1:P

aiohttp in its own process, so it keeps up with thousands of deliveries a second and never
competes with the test for the GIL. Every request is recorded once its body has been read:

    GET /_deliveries?since=N -> {"total": T, "items": [[message id, schedule id, retried,
                                                        path, body, start ms, end ms], ...],
                                 "max_concurrent": {path: highest number in flight at once}}

Any other path answers 200, after `?ms=` milliseconds when given. "end ms" is when the answer
was about to be sent (so two requests overlapped if one started before the other ended).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import defaultdict

from aiohttp import web


class Sink:
    def __init__(self) -> None:
        self.deliveries: list[list[object]] = []
        self.in_flight: dict[str, int] = defaultdict(int)
        self.max_concurrent: dict[str, int] = defaultdict(int)

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        started = int(time.time() * 1000)
        path = request.path
        self.in_flight[path] += 1
        self.max_concurrent[path] = max(self.max_concurrent[path], self.in_flight[path])
        try:
            delay_ms = int(request.query.get("ms", "0"))
            if delay_ms:
                await asyncio.sleep(delay_ms / 1000)
        finally:
            self.in_flight[path] -= 1
        self.deliveries.append(
            [
                request.headers.get("Upstash-Message-Id", ""),
                request.headers.get("Upstash-Schedule-Id", ""),
                int(request.headers.get("Upstash-Retried", "-1")),
                path,
                body.decode("utf-8", "replace"),
                started,
                int(time.time() * 1000),
            ]
        )
        return web.Response(text="ok")

    async def deliveries_since(self, request: web.Request) -> web.Response:
        since = int(request.query.get("since", "0"))
        doc = {
            "total": len(self.deliveries),
            "items": self.deliveries[since:],
            "max_concurrent": self.max_concurrent,
        }
        return web.Response(text=json.dumps(doc), content_type="application/json")


async def main() -> None:
    sink = Sink()
    app = web.Application()
    app.router.add_get("/_deliveries", sink.deliveries_since)
    app.router.add_route("*", "/{tail:.*}", sink.handle)
    runner = web.AppRunner(app, access_log=None, handle_signals=True)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, backlog=4096)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    print(json.dumps({"port": port}), flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    try:
        import uvloop
    except ImportError:
        asyncio.run(main())
    else:
        uvloop.run(main())
