"""A long run: resources stay flat after warm-up and nothing is lost.

One `homing dev` subprocess (SQLite; PostgreSQL with HOMING_SOAK_BACKEND=postgres) with a
30-second retention (tests/reliability/soak_server.py), and at once, for the whole run:

* 200 messages a second published (batches of 20 every 100 ms) to the sink process; one message
  in 19 goes to a path that answers 500 to its first attempt, so 5 % of attempts fail and are
  retried;
* a schedule that fires every second (`* * * * * *`);
* console pages read once a second.

Every few seconds the test samples the process's resident memory, its open file descriptors,
its database connections (file handles on the SQLite store, TCP connections to PostgreSQL) and
the store's size on disk, and prints each sample. After warm-up (a third of the run, at most
5 minutes) the later half of the samples may not exceed the earlier half by more than noise. The
store's size is judged flat only once purging has reached its steady state (retention + two
purge rounds of 60 s); a shorter run bounds its growth per message instead. At the end every
published message has been delivered, and the schedule fired once a second.

CI runs 30 seconds; HOMING_SOAK=1 runs one hour. HOMING_SOAK_SECONDS sets any other length.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.reliability.support import SOAK, HomingProcess, SinkProcess
from tests.support.http import AUTH
from tests.support.server import (
    TEST_POSTGRES_URL,
    PostgresSchemas,
    postgres_or_skip,
    run_coroutine,
    with_search_path,
)
from tests.support.waiting import wait_until

# Read at import: the autouse fixture of tests/conftest.py hides HOMING_* during each test.
SECONDS = float(os.environ.get("HOMING_SOAK_SECONDS") or (3600 if SOAK else 30))
BACKEND = os.environ.get("HOMING_SOAK_BACKEND", "sqlite")
RATE = 200  # messages a second
BATCH = 20
FAIL_ONE_IN = 19  # 1 of 19 messages fails once: 1 attempt in 20 fails
RETENTION_S = 30
CONCURRENCY = 512  # `homing dev`'s attempts in flight: the bound of its connection pool
PURGE_INTERVAL_S = 60  # the engine's purge round (homing.delivery.engine)
SOAK_SERVER = Path(__file__).with_name("soak_server.py")
CSRF = re.compile(r'name="_csrf" value="([^"]+)"')
CONSOLE_PAGES = ("/console/", "/console/messages", "/console/dlq", "/console/schedules",
                 "/console/queues", "/console/api/overview")  # fmt: skip


class SoakHoming(HomingProcess):
    """`homing dev` with a short retention (soak_server.py), otherwise the real command."""

    @property
    def command(self) -> list[str]:
        return [
            sys.executable,
            str(SOAK_SERVER),
            str(RETENTION_S),
            *super().command[1:],
        ]


@dataclass
class Sample:
    t: float
    rss_mib: float
    fds: int
    db_connections: int
    to_sink: int  # connections to the destination (aiohttp's pool, part of `fds`)
    store_mib: float
    published: int


@dataclass
class Load:
    """The publisher and the console reader, each in its own thread until `stop()`."""

    base_url: str
    sink: SinkProcess
    published: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    console_reads: int = 0
    console_failures: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    def start(self) -> None:
        for target in (self._publish, self._read_console):
            thread = threading.Thread(target=target, daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(30)

    def _publish(self) -> None:
        every = BATCH / RATE
        n = 0
        started = time.monotonic()
        with httpx.Client(base_url=self.base_url, headers=AUTH, timeout=30) as client:
            for tick in range(10**9):
                if self._stop.wait(max(0.0, started + tick * every - time.monotonic())):
                    return
                items = []
                for _ in range(BATCH):
                    n += 1
                    path = "/fail-once" if n % FAIL_ONE_IN == 0 else "/ok"
                    items.append({"destination": self.sink.url(f"{path}/{n}"), "body": str(n)})
                answer = client.post("/v2/batch", json=items)
                if answer.status_code != 201:
                    self.refused.append(f"{answer.status_code} {answer.text[:200]}")
                    continue
                self.published.extend(r["messageId"] for r in answer.json())

    def _read_console(self) -> None:
        with httpx.Client(base_url=self.base_url, timeout=30) as client:
            form = client.get("/console/login")
            match = CSRF.search(form.text)
            if match:  # sign in as an operator would
                client.post(
                    "/console/login",
                    data={"token": AUTH["Authorization"].split()[1], "_csrf": match.group(1)},
                )
            for i in range(10**9):
                if self._stop.wait(1.0):
                    return
                page = CONSOLE_PAGES[i % len(CONSOLE_PAGES)]
                answer = client.get(page)
                self.console_reads += 1
                if answer.status_code != 200:
                    self.console_failures.append(f"{page}: {answer.status_code}")


def open_fds(pid: int) -> list[str]:
    fd_dir = Path(f"/proc/{pid}/fd")
    targets = []
    for fd in fd_dir.iterdir():
        with contextlib.suppress(OSError):  # closed between listing and reading
            targets.append(os.readlink(fd))
    return targets


def tcp_connections_to(pid: int, port: int) -> int:
    """Established TCP connections of process `pid` to remote `port` (from /proc)."""
    inodes = {t[8:-1] for t in open_fds(pid) if t.startswith("socket:[")}
    count = 0
    for table in ("tcp", "tcp6"):
        path = Path(f"/proc/{pid}/net/{table}")
        if not path.exists():
            continue
        for line in path.read_text().splitlines()[1:]:
            cols = line.split()
            remote_port = int(cols[2].rsplit(":", 1)[1], 16)
            if remote_port == port and cols[3] == "01" and cols[9] in inodes:  # 01: ESTABLISHED
                count += 1
    return count


@dataclass
class Store:
    """Where the soak's server keeps its data: size on disk and connections to it."""

    args: list[str]
    size_mib: Callable[[], float]
    connections: Callable[[int], int]
    close: Callable[[], None] = lambda: None
    maintain: Callable[[], None] = lambda: None  # what the database would do by itself


def sqlite_store(data_dir: Path) -> Store:
    def size() -> float:
        files = [data_dir / f"homing.db{suffix}" for suffix in ("", "-wal", "-shm")]
        return sum(f.stat().st_size for f in files if f.exists()) / 2**20

    def connections(pid: int) -> int:
        return sum(1 for t in open_fds(pid) if Path(t).name == "homing.db")

    return Store([], size, connections)


def postgres_store() -> Store:
    import asyncpg  # type: ignore[import-untyped]

    schemas = PostgresSchemas()
    schema = schemas.new()
    url = with_search_path(TEST_POSTGRES_URL, schema)

    async def total_bytes() -> int:
        conn = await asyncpg.connect(TEST_POSTGRES_URL, timeout=10)
        try:
            found: int = await conn.fetchval(
                "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c "
                "JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = $1 AND c.relkind IN ('r', 'm')",
                schema,
            )
            return found
        finally:
            await conn.close()

    async def vacuum() -> None:
        # PostgreSQL reclaims the rows Homing purges only by VACUUM. Production servers run
        # autovacuum (docs/operations.md); a test server may have it off, and then the test
        # does its work, once a sample.
        conn = await asyncpg.connect(TEST_POSTGRES_URL, timeout=10)
        try:
            if await conn.fetchval("SELECT current_setting('autovacuum')") == "on":
                return
            tables = "SELECT tablename FROM pg_tables WHERE schemaname = $1"
            for row in await conn.fetch(tables, schema):
                await conn.execute(f'VACUUM "{schema}"."{row["tablename"]}"')
        finally:
            await conn.close()

    def size() -> float:
        return float(run_coroutine(total_bytes)) / 2**20

    port = int(re.search(r":(\d+)/", TEST_POSTGRES_URL).group(1))  # type: ignore[union-attr]
    return Store(
        ["--database", url],
        size,
        lambda pid: tcp_connections_to(pid, port),
        schemas.drop,
        lambda: run_coroutine(vacuum),
    )


def grows(samples: list[Sample], value: Callable[[Sample], float]) -> tuple[float, float]:
    """(max of the earlier half, max of the later half) of `samples`."""
    half = len(samples) // 2
    return max(map(value, samples[:half])), max(map(value, samples[half:]))


def table(samples: list[Sample]) -> str:
    lines = ["     t_s  rss_mib  fds  db_conns  to_sink  store_mib  published"]
    for s in samples:
        lines.append(
            f"{s.t:8.0f} {s.rss_mib:8.1f} {s.fds:4d} {s.db_connections:9d} {s.to_sink:8d} "
            f"{s.store_mib:10.2f} {s.published:10d}"
        )
    return "\n".join(lines)


@pytest.mark.timeout(int(SECONDS) + 240)
def test_long_run_stays_flat_and_loses_nothing(tmp_path: Path) -> None:
    if BACKEND == "postgres":
        postgres_or_skip()
    samples: list[Sample] = []
    interval = min(max(2.0, SECONDS / 30), 120.0)
    with contextlib.ExitStack() as cleanup:
        store = postgres_store() if BACKEND == "postgres" else sqlite_store(tmp_path / "data")
        cleanup.callback(store.close)
        sink = SinkProcess()
        cleanup.callback(sink.close)
        homing = SoakHoming(
            tmp_path / "data",
            tmp_path / "homing.log",
            extra=["--backoff-scale", "0.01", "--log-level", "warning", *store.args],
        )
        cleanup.callback(homing.stop)
        homing.start()
        load = Load(homing.base_url, sink)
        cleanup.callback(load.stop)
        with httpx.Client(base_url=homing.base_url, headers=AUTH, timeout=30) as api:
            created = api.post(
                f"/v2/schedules/{sink.url('/tick')}", headers={"Upstash-Cron": "* * * * * *"}
            )
            assert created.status_code == 200, created.text
            schedule_id = created.json()["scheduleId"]

            # When the load runs for SECONDS, sampled every `interval`
            started = time.monotonic()
            load.start()
            print(f"\nsoak: {SECONDS:.0f} s on {BACKEND}, sample every {interval:.0f} s")
            print(table([]))
            while (elapsed := time.monotonic() - started) < SECONDS:
                store.maintain()
                sample = Sample(
                    t=elapsed,
                    rss_mib=homing.rss_mib(),
                    fds=len(open_fds(homing.pid)),
                    db_connections=store.connections(homing.pid),
                    to_sink=tcp_connections_to(homing.pid, sink.port),
                    store_mib=store.size_mib(),
                    published=len(load.published),
                )
                samples.append(sample)
                print(table([sample]).splitlines()[1], flush=True)
                time.sleep(max(0.0, min(interval, SECONDS - (time.monotonic() - started))))
            load.stop()
            ran_s = time.monotonic() - started
            assert api.delete(f"/v2/schedules/{schedule_id}").status_code == 200

        # Then everything published is delivered
        published = set(load.published)

        def delivered() -> set[str]:
            return {item[0] for item in sink.deliveries()}

        assert wait_until(lambda: published <= delivered(), timeout=120, interval=0.5), (
            f"{len(published - delivered())} of {len(published)} messages never delivered"
        )
        deliveries = sink.deliveries()

    ticks = {item[0] for item in deliveries if item[2] == "/tick"}
    attempts = [item for item in deliveries if item[0] in published]
    failed = sum(1 for item in attempts if item[2].startswith("/fail-once") and item[1] == 0)
    warmup = min(max(10.0, SECONDS / 3), 300.0)
    steady = [s for s in samples if s.t >= warmup]
    rss = grows(steady, lambda s: s.rss_mib)
    # Connections to the destination come and go with the attempts in flight (aiohttp's pool
    # keeps them 30 s): they are bounded, not flat; every other descriptor must be flat.
    fds = grows(steady, lambda s: s.fds - s.to_sink)
    to_sink = max(s.to_sink for s in samples)
    conns = grows(steady, lambda s: s.db_connections)
    size_warmup = RETENTION_S + 2 * PURGE_INTERVAL_S + 10
    size_steady = [s for s in samples if s.t >= size_warmup]
    print(
        f"soak figures: ran={ran_s:.0f}s published={len(published)} "
        f"rate={len(published) / ran_s:.0f}/s attempts={len(attempts)} "
        f"failed_attempts={failed} ({100 * failed / max(1, len(attempts)):.1f}%) "
        f"schedule_fires={len(ticks)} console_reads={load.console_reads} "
        f"warmup={warmup:.0f}s rss_mib(early={rss[0]:.1f} late={rss[1]:.1f}) "
        f"fds_besides_sink(early={fds[0]} late={fds[1]}) to_sink_max={to_sink} "
        f"db_conns(early={conns[0]} late={conns[1]})"
    )
    assert load.refused == [], load.refused[:5]
    assert load.console_failures == [], load.console_failures[:5]
    assert load.console_reads >= ran_s / 2
    assert len(published) >= RATE * ran_s * 0.9, "the publisher could not keep the rate"
    assert 0.04 <= failed / len(attempts) <= 0.06  # 5 % of attempts failed, and were retried
    assert ran_s - 3 <= len(ticks) <= ran_s + 3, f"{len(ticks)} schedule fires in {ran_s:.0f} s"
    assert len(steady) >= 4, table(samples)
    assert rss[1] <= rss[0] * 1.10 + 10, f"memory grows after warm-up:\n{table(samples)}"
    assert fds[1] <= fds[0] + 4, f"file descriptors grow after warm-up:\n{table(samples)}"
    assert to_sink <= CONCURRENCY, f"connections to the destination pile up:\n{table(samples)}"
    assert conns[1] <= conns[0], f"database connections grow after warm-up:\n{table(samples)}"
    if len(size_steady) >= 4 and size_steady[-1].t - size_steady[0].t >= PURGE_INTERVAL_S * 2:
        size = grows(size_steady, lambda s: s.store_mib)
        assert size[1] <= size[0] * 1.15 + 2, f"the store grows after warm-up:\n{table(samples)}"
    else:
        # Too short for purging to reach its steady state: bound the growth per message instead
        # (a message, its log entries and its index entries take about 1 KiB plus its body).
        grown_kib = (samples[-1].store_mib - samples[0].store_mib) * 1024
        per_message = grown_kib / max(1, samples[-1].published - samples[0].published)
        assert per_message <= 4, f"{per_message:.2f} KiB per message:\n{table(samples)}"
