"""A fast, well-behaved or hostile HTTP receiver for the reliability tests, run as its own process.

    python tests/reliability/sink.py            # prints {"port": P, "silent_port": S} and serves

aiohttp in its own process, so it keeps up with thousands of deliveries a second and never
competes with the test for the GIL. Every request is recorded when its body has been read (that
is the moment the destination "has" the message), and the test reads the record over HTTP:

    GET /_deliveries?since=N  -> {"total": T, "items": [[id, retried, path, body, t_ms,
                                                          signature, raw path+query], ...]}

Paths (any suffix after them is allowed):

    /ok        200 at once
    /slow      200 after `?ms=` milliseconds (default 1000)
    /hang      answers after `?s=` seconds (default 30)
    /hang-once hangs `?s=` seconds on the first attempt of a message id, answers 200 later ones
    /fail-once 500 on the first attempt of a message id, 200 on later ones
    /drip      200, then one body byte per second for `?s=` seconds (default 120)
    /flood     `?status=` (default 200) with a 100 MiB body, sent as fast as the reader takes it

`silent_port` is a raw TCP listener that accepts connections and never reads or answers.
"""

from __future__ import annotations

import asyncio
import json
import time

from aiohttp import web

FLOOD_BYTES = 100 * 1024 * 1024
_CHUNK = b"x" * (1024 * 1024)


class Sink:
    def __init__(self) -> None:
        self.deliveries: list[list[object]] = []
        self.seen: set[str] = set()
        self.silent: list[asyncio.StreamWriter] = []

    def record(self, request: web.Request, body: bytes) -> str:
        message_id = request.headers.get("Upstash-Message-Id", "")
        self.deliveries.append(
            [
                message_id,
                int(request.headers.get("Upstash-Retried", "-1")),
                request.path,
                body.decode("utf-8", "replace"),
                int(time.time() * 1000),
                request.headers.get("Upstash-Signature", ""),
                request.raw_path,  # path and query exactly as requested
            ]
        )
        return message_id

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        first_time = request.headers.get("Upstash-Message-Id", "") not in self.seen
        message_id = self.record(request, body)
        self.seen.add(message_id)
        kind = request.path.strip("/").split("/", 1)[0]
        query = request.query
        if kind == "slow":
            await asyncio.sleep(int(query.get("ms", "1000")) / 1000)
        elif kind == "hang" or (kind == "hang-once" and first_time):
            await asyncio.sleep(float(query.get("s", "30")))
        elif kind == "fail-once" and first_time:
            return web.Response(status=500, text="failing once")
        elif kind == "drip":
            resp = web.StreamResponse(status=200, headers={"Content-Type": "text/plain"})
            resp.enable_chunked_encoding()
            await resp.prepare(request)
            for _ in range(int(query.get("s", "120"))):
                await resp.write(b".")
                await asyncio.sleep(1)
            return resp
        elif kind == "flood":
            resp = web.StreamResponse(
                status=int(query.get("status", "200")),
                headers={"Content-Type": "application/octet-stream"},
            )
            resp.content_length = FLOOD_BYTES
            await resp.prepare(request)
            for _ in range(FLOOD_BYTES // len(_CHUNK)):
                await resp.write(_CHUNK)
            return resp
        return web.Response(text="ok")

    async def deliveries_since(self, request: web.Request) -> web.Response:
        since = int(request.query.get("since", "0"))
        doc = {"total": len(self.deliveries), "items": self.deliveries[since:]}
        return web.Response(text=json.dumps(doc), content_type="application/json")

    async def hold(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.silent.append(writer)  # accepted; never read from, never answered


async def main() -> None:
    sink = Sink()
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_get("/_deliveries", sink.deliveries_since)
    app.router.add_route("*", "/{tail:.*}", sink.handle)
    runner = web.AppRunner(app, access_log=None, handle_signals=True)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, backlog=4096)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    silent = await asyncio.start_server(sink.hold, "127.0.0.1", 0, backlog=4096)
    silent_port = silent.sockets[0].getsockname()[1]
    print(json.dumps({"port": port, "silent_port": silent_port}), flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    try:
        import uvloop
    except ImportError:
        asyncio.run(main())
    else:
        uvloop.run(main())
