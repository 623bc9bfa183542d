"""Micro-benchmark: the CPU of Homing's publish path without HTTP, and of one SQLite commit.

`python -m bench.publish_path [--publishes N] [--concurrency C] [--rounds R] [--commits K]`

Starts a real node (`Runtime`, role `all`, a fresh SQLite store, the dev accounts) in this
process and runs N publishes through the same function the server's publish route calls
(`homing.api.publish._publish`, with an ASGI scope and body like the load generator's: bearer
token, JSON content type, `Upstash-Delay: 3600s` so that nothing is delivered), C in flight at
once. It prints the CPU per publish of each thread of the process (from `/proc/self/task`:
the event loop, the SQLite writer thread, the checkpointer) and how many publishes shared a
commit. Without uvicorn and the socket, this is Homing's own work; the closed-loop bench adds
the framework's part, and its figures move much more from run to run.

With `--commits K` it also times K commits of one row each, one at a time, through the writer
(`Writer.call`): the fixed cost of a transaction, on the loop and on the writer thread.

Wrap it in `flock /tmp/bench.lock` on a shared box; compare trees by alternating runs.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

import uvloop

from bench.common import thread_cpu_seconds
from homing.api import publish as publish_route
from homing.config import DEV_USERS, Settings, dev_accounts
from homing.runtime import Runtime
from homing.storage.sqlite.backend import SqliteStorage
from homing.storage.sqlite.connection import Writer

BODY = b'{"hello":"world","n":1}'
DESTINATION = "http://127.0.0.1:9/sink"


def _thread_cpu() -> dict[int, tuple[str, float]]:
    """Thread id -> (name, CPU seconds so far) of every thread of this process."""
    names = {t.native_id: t.name for t in threading.enumerate()}
    return {
        tid: (names.get(tid, "other"), spent)
        for tid, spent in thread_cpu_seconds(os.getpid()).items()
    }


def _per_thread(
    before: dict[int, tuple[str, float]], after: dict[int, tuple[str, float]], n: int
) -> list[str]:
    lines = []
    for tid, (name, spent) in after.items():
        spent -= before.get(tid, (name, 0.0))[1]
        if spent > 0:
            lines.append(f"    {name:<28} {spent / n * 1e6:7.1f} us")
    return lines


def _scope(services: Any, token: str) -> dict[str, Any]:
    path = f"/v2/publish/{DESTINATION}"
    return {
        "type": "http",
        "method": "POST",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "headers": [
            (b"host", b"127.0.0.1:8080"),
            (b"authorization", f"Bearer {token}".encode()),
            (b"content-type", b"application/json"),
            (b"upstash-delay", b"3600s"),
            (b"content-length", str(len(BODY)).encode()),
        ],
        "client": ("127.0.0.1", 40000),
        "state": {"services": services},
    }


async def _receive() -> dict[str, Any]:
    return {"type": "http.request", "body": BODY, "more_body": False}


async def _in_flight(n: int, concurrency: int, one: Callable[[], Awaitable[None]]) -> None:
    left = iter(range(n))

    async def worker() -> None:
        for _ in left:
            await one()

    await asyncio.gather(*(worker() for _ in range(concurrency)))


async def publishes(n: int, concurrency: int, rounds: int) -> None:
    data_dir = tempfile.mkdtemp(prefix="homing-publish-path-")
    settings = Settings(
        data_dir=data_dir, database_url=f"sqlite:///{data_dir}/homing.db", accounts=dev_accounts()
    )
    runtime = Runtime(settings)
    services = await runtime.start()
    token = DEV_USERS[0][0]
    storage = services.storage
    assert isinstance(storage, SqliteStorage)

    async def one() -> None:
        status, answer = await publish_route._publish(_scope(services, token), _receive)
        assert status == 201, answer

    try:
        await _in_flight(2_000, concurrency, one)  # warm up: statements, caches, the heap
        totals = []
        for r in range(rounds):
            commits = storage._writer._commits
            before, cpu = _thread_cpu(), time.process_time()
            await _in_flight(n, concurrency, one)
            spent = time.process_time() - cpu
            shared = n / max(1, storage._writer._commits - commits)
            totals.append(spent / n * 1e6)
            print(f"  round {r + 1}: {totals[-1]:.1f} us CPU per publish, {shared:.1f} a commit")
            for line in _per_thread(before, _thread_cpu(), n):
                print(line)
        print(
            f"publish path, {n} publishes, {concurrency} in flight: "
            f"min {min(totals):.1f}, median {statistics.median(totals):.1f} us CPU per publish"
        )
    finally:
        await runtime.stop()


async def commits(k: int) -> None:
    with tempfile.TemporaryDirectory(prefix="homing-commits-") as folder:
        writer = Writer(f"{folder}/t.db", synchronous="FULL", reserve_bytes=0)
        await writer.start()
        try:
            await writer.call(lambda c: c.execute("CREATE TABLE t (x INTEGER)"))
            before, started = _thread_cpu(), time.perf_counter()
            for _ in range(k):
                await writer.call(lambda c: c.execute("INSERT INTO t VALUES (1)"), inline=True)
            wall = time.perf_counter() - started
            print(f"one-row commits, one at a time: {wall / k * 1e6:.0f} us each; CPU per commit:")
            for line in _per_thread(before, _thread_cpu(), k):
                print(line)
        finally:
            await writer.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--publishes", type=int, default=30_000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--commits", type=int, default=0)
    args = parser.parse_args()
    uvloop.run(publishes(args.publishes, args.concurrency, args.rounds))
    if args.commits:
        uvloop.run(commits(args.commits))


if __name__ == "__main__":
    main()
