"""Micro-benchmark: the main-thread CPU of one delivery attempt, outside the database.

`python -m bench.attempt [--attempts N] [--concurrency C] [--rounds R]`

Starts the real sink (`bench/sink.py`) in its own process and, in this process, runs N attempts
the way the engine makes them (`Sender.send`, `outcome.decide`, `Metrics.record_attempt`), with C
in flight at once, against it. Next to that it runs the same number of bare aiohttp requests
(same body, a plain header dict, body read whole) on a session configured like the Sender's: the
floor an attempt cannot go below with this client. Rounds alternate between the two so that
both see the same machine; the figures are CPU time of this process (`time.process_time`) per
request, min and median over the rounds. Wrap it in `flock /tmp/bench.lock` on a shared box.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
import uvloop

from bench.common import LOOPBACK, body_of, free_port
from bench.procs import PYTHON, Child
from homing import ids
from homing.delivery import outcome
from homing.delivery.sender import Sender
from homing.metrics import Metrics
from homing.models import DeliverySpec, Message, MessageState

SIGNING_KEY = "sig_" + "k" * 28


def _message(url: str, body: bytes) -> Message:
    now = int(time.time() * 1000)
    return Message(
        id=ids.message_id(),
        account_id="acct",
        url=url,
        body=body,
        spec=DeliverySpec(headers={"Content-Type": ["application/json"]}),
        state=MessageState.ACTIVE,
        created_ms=now,
        not_before_ms=now,
        due_ms=now,
        attempts=0,
        caller_ip="127.0.0.1",
    )


async def _run(n: int, concurrency: int, one: Callable[[int], Awaitable[None]]) -> float:
    """CPU seconds of this process for `n` calls of `one`, `concurrency` at a time."""
    counter = iter(range(n))

    async def worker() -> None:
        for i in counter:
            await one(i)

    started = time.process_time()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.process_time() - started


async def main(attempts: int, concurrency: int, rounds: int) -> None:
    port = free_port()
    log = Path(tempfile.mkdtemp(prefix="homing-attempt-")) / "sink.log"
    sink = Child("sink", [PYTHON, "-m", "bench.sink", "--port", str(port)], log)
    await sink.start()
    try:
        await sink.wait_ready(f"http://{LOOPBACK}:{port}/_bench/stats")
        url = f"http://{LOOPBACK}:{port}/deliver"
        body = body_of(256)
        messages = [_message(url, body) for _ in range(1000)]

        sender = Sender(allow_private=True)
        await sender.start()
        metrics = Metrics()
        dlq_ids = ids.DlqIdSource()

        async def attempt(i: int) -> None:
            message = messages[i % len(messages)]
            started = time.monotonic()
            response = await sender.send(message, SIGNING_KEY)
            decision = outcome.decide(
                message,
                i,
                response,
                now_ms=int(time.time() * 1000),
                new_id=ids.message_id,
                new_dlq_id=dlq_ids.next,
            )
            assert response.status == 200, response
            metrics.record_attempt(message, decision, time.monotonic() - started)

        session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=1024, limit_per_host=0),
            trust_env=False,
            auto_decompress=False,
            cookie_jar=aiohttp.DummyCookieJar(),
            skip_auto_headers=("User-Agent", "Content-Type", "Accept-Encoding"),
            timeout=aiohttp.ClientTimeout(),
        )
        bare_headers = {"Content-Type": "application/json", "Upstash-Message-Id": "msg_x"}

        async def bare(i: int) -> None:
            async with session.post(url, data=body, headers=bare_headers) as resp:
                await resp.read()

        try:
            await _run(min(attempts, 2000), concurrency, attempt)  # warm up: connections, caches
            await _run(min(attempts, 2000), concurrency, bare)
            full: list[float] = []
            floor: list[float] = []
            for _ in range(rounds):
                full.append(await _run(attempts, concurrency, attempt) / attempts)
                floor.append(await _run(attempts, concurrency, bare) / attempts)
        finally:
            await session.close()
            await sender.close()
    finally:
        await sink.stop()

    def us(values: list[float]) -> str:
        return f"min {min(values) * 1e6:7.1f} us  median {statistics.median(values) * 1e6:7.1f} us"

    print(f"{attempts} attempts x {rounds} rounds, {concurrency} in flight; CPU per request:")
    print(f"  attempt (send, decide, metrics): {us(full)}")
    print(f"  bare aiohttp request:            {us(floor)}")
    gap = [a - b for a, b in zip(full, floor, strict=True)]
    print(f"  attempt minus bare, same round:  {us(gap)}")


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--attempts", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    uvloop.run(main(args.attempts, args.concurrency, args.rounds))


if __name__ == "__main__":
    cli()
