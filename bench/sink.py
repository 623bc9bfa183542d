"""The delivery sink: a fast local endpoint that answers deliveries and records their arrival.

Runs in its own process (`python -m bench.sink --port P`) so that it neither shares Homing's
event loop nor the load generator's. It uses aiohttp's low-level server on uvloop (no router,
no access log) because the sink must be much cheaper than the thing it measures.

For every request it records the `Upstash-Message-Id`, the arrival time (`time.time_ns()`, taken
first thing in the handler, so it is comparable with the load generator's send times on the same
machine), the `Upstash-Retried` count and the status it answered. It can fail a share of FIRST
attempts (`Upstash-Retried: 0`) with 500, exactly every 1/rate-th one so a run is repeatable, and
can add a fixed latency before answering.

Control endpoints, on the same port, used by the orchestrator between runs:
    POST /_bench/reset    {"fail_rate": 0.1, "latency_ms": 0}  -> clear records, set behaviour
    GET  /_bench/stats    -> {"arrivals": n, "ok_ids": distinct ids answered 2xx}
    GET  /_bench/records  -> columnar JSON of every arrival
"""

from __future__ import annotations

import argparse
import asyncio
import math
import time

import orjson
import uvloop
from aiohttp import web

from bench.common import LOOPBACK


class Sink:
    def __init__(self) -> None:
        self.fail_rate = 0.0
        self.latency_s = 0.0
        self.reset()

    def reset(self) -> None:
        # Parallel lists instead of a list of objects: appends stay cheap at 10k+ requests/s.
        self.ids: list[str] = []
        self.arrival_ns: list[int] = []
        self.retried: list[int] = []
        self.status: list[int] = []
        self.ok_ids: set[str] = set()
        self.first_attempts = 0
        self.failed = 0

    async def handle(self, request: web.BaseRequest) -> web.StreamResponse:
        arrival = time.time_ns()
        if request.path.startswith("/_bench/"):
            return await self.control(request)
        await request.read()  # consume the body, as a real endpoint would
        headers = request.headers
        message_id = headers.get("Upstash-Message-Id", "")
        retried = int(headers.get("Upstash-Retried", "0") or 0)
        status = 200
        if retried == 0 and self.fail_rate > 0:
            self.first_attempts += 1
            # Fail exactly floor(n * rate) of the first n first attempts: evenly spread, and
            # the same messages fail in every repetition.
            if math.floor(self.first_attempts * self.fail_rate) > self.failed:
                self.failed += 1
                status = 500
        if self.latency_s:
            await asyncio.sleep(self.latency_s)
        self.ids.append(message_id)
        self.arrival_ns.append(arrival)
        self.retried.append(retried)
        self.status.append(status)
        if status < 300:
            self.ok_ids.add(message_id)
        return web.Response(status=status, body=b"ok" if status < 300 else b"fail")

    async def control(self, request: web.BaseRequest) -> web.StreamResponse:
        path = request.path
        if path == "/_bench/reset" and request.method == "POST":
            raw = await request.read()
            config = orjson.loads(raw) if raw else {}
            self.fail_rate = float(config.get("fail_rate", 0.0))
            self.latency_s = float(config.get("latency_ms", 0.0)) / 1000
            self.reset()
            return _json({"ok": True})
        if path == "/_bench/stats":
            return _json({"arrivals": len(self.ids), "ok_ids": len(self.ok_ids)})
        if path == "/_bench/records":
            return _json(
                {
                    "ids": self.ids,
                    "arrival_ns": self.arrival_ns,
                    "retried": self.retried,
                    "status": self.status,
                }
            )
        return web.Response(status=404)


def _json(value: object) -> web.Response:
    return web.Response(body=orjson.dumps(value), content_type="application/json")


async def serve(port: int) -> None:
    sink = Sink()
    server = web.Server(sink.handle)
    loop = asyncio.get_running_loop()
    # A deep backlog: Homing may open hundreds of delivery connections at once.
    await loop.create_server(server, LOOPBACK, port, backlog=2048)
    print(f"sink listening on {LOOPBACK}:{port}", flush=True)
    await asyncio.Event().wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    uvloop.run(serve(args.port))


if __name__ == "__main__":
    main()
