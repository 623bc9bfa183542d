"""The measurements. Each function runs ONE repetition of one scenario and returns plain data.

Ceilings (what the machine and the framework can do, with nothing of Homing in the way):
  * `ceiling_sink`       aiohttp client -> sink, closed loop: the most deliveries per second
                          this box can make with Homing's HTTP client.
  * `ceiling_framework`  raw client -> Starlette/uvicorn endpoint that stores nothing: the most
                          publishes per second the web stack can answer.
  * `floor_round_trip`   raw client -> the same endpoint, open loop at the latency rate: the
                          cost of one HTTP round trip, for reading the latency figures.

Homing (a fresh `homing dev` with its own data dir for every repetition, so runs are
independent and the store does not grow from one to the next):
  * `publish`    closed-loop publishes whose delivery is held back (far delay or paused queue).
  * `end_to_end` N publishes as fast as they are accepted; delivered/s = N / (last arrival at
                 the sink - first publish sent); every id must arrive.
  * `latency`    open loop at `rate`/s; latency = sink arrival - publish send, per message.
  * `latency_high` the same at `high_rate`/s.
  * `delayed`    the same with `Upstash-Delay`; lateness = arrival - (send + delay), and
                 arrival - notBefore (read back from GET /v2/messages/{id}).
  * `failures`   as end_to_end, with the sink failing a share of first attempts; first-attempt
                 throughput = first attempts / (last first attempt - first publish).
  * `memory`     fill N messages due in an hour through /v2/batch; RSS and store size.
  * `end_to_end_nodes`  `end_to_end` against two nodes sharing one PostgreSQL database, the
                 load generator's connections split between them; CPU is both processes'.

The reference (bench/relay.py, a naive durable relay) runs `publish`, `end_to_end` and `latency`
too, so Homing's figures can be read as ratios to what an afternoon's relay does on the same
machine (its publish holds messages back with `Upstash-Delay` whatever `--hold` says).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from bench.common import (
    DEV_TOKEN,
    LOOPBACK,
    MIB,
    body_of,
    cpu_seconds,
    dir_size,
    distribution,
    rss_bytes,
)
from bench.procs import Child, Homing, run_loadgen


@dataclass(frozen=True)
class Config:
    quick: bool
    repetitions: int
    concurrency: int
    ceiling_requests: int
    publish_messages: int
    e2e_messages: int
    latency_rate: float
    latency_seconds: float
    delay_s: float
    queued: int
    batch_size: int
    fill_concurrency: int
    fail_rate: float
    backoff_scale: float
    hold: str  # "delay" or "queue"
    high_rate: float = 1000.0
    body_size: int = 200
    stall_timeout_s: float = 30.0

    @property
    def latency_messages(self) -> int:
        return max(1, round(self.latency_rate * self.latency_seconds))

    @property
    def latency_warmup(self) -> int:
        # Half a second of traffic first: connections to the sink open, caches warm.
        return max(1, round(self.latency_rate * 0.5))

    def warmup_for(self, count: int) -> int:
        return min(1000, max(1, count // 10))


@dataclass
class Ctx:
    cfg: Config
    work_dir: Path
    session: aiohttp.ClientSession
    sink: Child
    framework: Child
    notes: list[str] = field(default_factory=list)

    @property
    def sink_url(self) -> str:
        return f"http://{LOOPBACK}:{self.sink.port}/sink"

    @property
    def body(self) -> str:
        return body_of(self.cfg.body_size).decode()


# -- the sink -----------------------------------------------------------------------------------


async def reset_sink(ctx: Ctx, *, fail_rate: float = 0.0, latency_ms: float = 0.0) -> None:
    url = f"http://{LOOPBACK}:{ctx.sink.port}/_bench/reset"
    payload = {"fail_rate": fail_rate, "latency_ms": latency_ms}
    async with ctx.session.post(url, data=orjson.dumps(payload)) as resp:
        resp.raise_for_status()


async def sink_stats(ctx: Ctx) -> dict[str, int]:
    async with ctx.session.get(f"http://{LOOPBACK}:{ctx.sink.port}/_bench/stats") as resp:
        stats: dict[str, int] = await resp.json()
        return stats


@dataclass
class Arrivals:
    first_ok_ns: dict[str, int]  # first 2xx arrival per id
    first_attempt_ns: dict[str, int]  # arrival of attempt 0 per id
    total: int
    ok_total: int


async def sink_arrivals(ctx: Ctx) -> Arrivals:
    async with ctx.session.get(f"http://{LOOPBACK}:{ctx.sink.port}/_bench/records") as resp:
        rec = orjson.loads(await resp.read())
    first_ok: dict[str, int] = {}
    first_attempt: dict[str, int] = {}
    ok_total = 0
    for mid, ns, retried, status in zip(
        rec["ids"], rec["arrival_ns"], rec["retried"], rec["status"], strict=True
    ):
        if retried == 0 and mid not in first_attempt:
            first_attempt[mid] = ns
        if status < 300:
            ok_total += 1
            if mid not in first_ok:
                first_ok[mid] = ns
    return Arrivals(first_ok, first_attempt, len(rec["ids"]), ok_total)


async def wait_for_sink(ctx: Ctx, expected_ok: int, *, stall_s: float | None = None) -> bool:
    """Wait until `expected_ok` distinct ids were answered 2xx; give up after `stall_s` without
    progress. The orchestrator polls cheaply (10/s) so it takes nothing from the measurement."""
    stall = stall_s if stall_s is not None else ctx.cfg.stall_timeout_s
    last, last_change = -1, time.monotonic()
    while True:
        ok = (await sink_stats(ctx))["ok_ids"]
        if ok >= expected_ok:
            return True
        now = time.monotonic()
        if ok != last:
            last, last_change = ok, now
        elif now - last_change > stall:
            return False
        await asyncio.sleep(0.1)


# -- jobs ---------------------------------------------------------------------------------------


def publish_job(ctx: Ctx, port: int, path: str, **over: Any) -> dict[str, Any]:
    job: dict[str, Any] = {
        "host": LOOPBACK,
        "port": port,
        "path": path,
        "headers": [("Authorization", f"Bearer {DEV_TOKEN}"), ("Content-Type", "application/json")],
        "body": ctx.body,
        "client": "raw",
        "mode": "closed",
        "concurrency": ctx.cfg.concurrency,
        "parse_ids": True,
        "keep_samples": True,
    }
    extra_headers = over.pop("extra_headers", [])
    job["headers"] = job["headers"] + list(extra_headers)
    job.update(over)
    return job


def _latency_summary(samples_ns: list[int]) -> dict[str, float]:
    return distribution([s / 1e6 for s in samples_ns])


def _request_latency(result: dict[str, Any]) -> dict[str, float]:
    return _latency_summary(
        [d - s for s, d in zip(result["send_ns"], result["done_ns"], strict=True)]
    )


def _strip(result: dict[str, Any]) -> dict[str, Any]:
    """A load-generator result without its per-request arrays (those are not kept in JSON)."""
    return {
        k: v for k, v in result.items() if k not in ("send_ns", "done_ns", "status", "ids", "job")
    }


# -- ceilings -----------------------------------------------------------------------------------


async def ceiling_sink(ctx: Ctx, rep: int) -> dict[str, Any]:
    await reset_sink(ctx)
    n = ctx.cfg.ceiling_requests
    warmup = ctx.cfg.warmup_for(n)
    job: dict[str, Any] = {
        "host": LOOPBACK,
        "port": ctx.sink.port,
        "path": "/sink",
        # What the sink sees from Homing: an id, a retry count, a JSON body.
        "headers": [("Upstash-Retried", "0"), ("Content-Type", "application/json")],
        "unique_header": "Upstash-Message-Id",
        "unique_prefix": f"ceil{rep}-",
        "body": ctx.body,
        "client": "aiohttp",
        "mode": "closed",
        "concurrency": ctx.cfg.concurrency,
        "count": n,
        "warmup": warmup,
        "keep_samples": False,
    }
    result = await run_loadgen(job, ctx.work_dir, f"ceiling-sink-{rep}")
    # CPU of the aiohttp client per request: what one delivery costs Homing's sender at least.
    client_ms = result["cpu_s"] * 1000 / (n + warmup)
    return {
        "rps": result["rps"],
        "ok": result["ok"],
        "count": result["count"],
        "client_cpu_ms_per_request": client_ms,
        "raw": _strip(result),
    }


async def ceiling_framework(ctx: Ctx, rep: int) -> dict[str, Any]:
    n = ctx.cfg.ceiling_requests
    job = publish_job(
        ctx,
        ctx.framework.port or 0,
        f"/v2/publish/{ctx.sink_url}",
        extra_headers=[("Upstash-Delay", "3600s")],
        count=n,
        warmup=ctx.cfg.warmup_for(n),
    )
    cpu0 = cpu_seconds(ctx.framework.pid)
    result = await run_loadgen(job, ctx.work_dir, f"ceiling-framework-{rep}")
    server_ms = (cpu_seconds(ctx.framework.pid) - cpu0) * 1000 / (n + job["warmup"])
    return {
        "rps": result["rps"],
        "server_cpu_ms_per_request": server_ms,
        "ok": result["ok"],
        "count": result["count"],
        "request_ms": _request_latency(result),
        "raw": _strip(result),
    }


async def floor_round_trip(ctx: Ctx, rep: int) -> dict[str, Any]:
    cfg = ctx.cfg
    job = publish_job(
        ctx,
        ctx.framework.port or 0,
        f"/v2/publish/{ctx.sink_url}",
        mode="open",
        rate=cfg.latency_rate,
        count=cfg.latency_messages,
        warmup=cfg.latency_warmup,
        concurrency=8,
        parse_ids=False,
    )
    result = await run_loadgen(job, ctx.work_dir, f"floor-rtt-{rep}")
    return {"request_ms": _request_latency(result), "raw": _strip(result)}


# -- Homing -------------------------------------------------------------------------------------


async def _hold_path(ctx: Ctx, homing: Homing) -> tuple[str, list[tuple[str, str]]]:
    """Where to publish so that nothing is delivered during the measurement."""
    if ctx.cfg.hold == "queue" and not homing.reference:
        url = f"http://{LOOPBACK}:{homing.port}/v2/queues"
        payload = {"queueName": "hold", "parallelism": 1, "paused": True}
        async with ctx.session.post(
            url, data=orjson.dumps(payload), headers={"Authorization": f"Bearer {DEV_TOKEN}"}
        ) as resp:
            resp.raise_for_status()
        return f"/v2/enqueue/hold/{ctx.sink_url}", []
    return f"/v2/publish/{ctx.sink_url}", [("Upstash-Delay", "3600s")]


async def publish(ctx: Ctx, homing: Homing, rep: int) -> dict[str, Any]:
    await reset_sink(ctx)
    n = ctx.cfg.publish_messages
    path, headers = await _hold_path(ctx, homing)
    job = publish_job(
        ctx, homing.port, path, extra_headers=headers, count=n, warmup=ctx.cfg.warmup_for(n)
    )
    cpu0, loop0, t0 = cpu_seconds(homing.pid), cpu_seconds(homing.pid, homing.pid), time.monotonic()
    result = await run_loadgen(job, ctx.work_dir, f"publish-{rep}")
    wall = time.monotonic() - t0
    cpu = cpu_seconds(homing.pid) - cpu0
    cores = cpu / wall
    loop_cores = (cpu_seconds(homing.pid, homing.pid) - loop0) / wall
    delivered = (await sink_stats(ctx))["arrivals"]
    return {
        "rps": result["rps"],
        "ok": result["ok"],
        "count": result["count"],
        "statuses": result["statuses"],
        "request_ms": _request_latency(result),
        "homing_cores": cores,
        "homing_loop_thread_cores": loop_cores,
        "homing_cpu_ms_per_message": cpu * 1000 / (n + job["warmup"]),
        "delivered_during_run": delivered,  # must be 0: deliveries were held back
        "raw": _strip(result),
    }


def _cpu(nodes: Sequence[Homing]) -> tuple[list[float], float]:
    """CPU seconds so far of each node's process, and of all their event-loop threads."""
    return [cpu_seconds(n.pid) for n in nodes], sum(cpu_seconds(n.pid, n.pid) for n in nodes)


async def _publish_and_collect(
    ctx: Ctx,
    nodes: Sequence[Homing],
    name: str,
    *,
    fail_rate: float,
    wait_s: float | None = None,
) -> tuple[dict[str, Any], Arrivals, list[str], float, float]:
    """Publish N messages as fast as they are accepted (connections split over the nodes);
    wait until every id got a 2xx.
    Returns (load-generator result, arrivals, published ids, Homing cores, Homing CPU s)."""
    await reset_sink(ctx, fail_rate=fail_rate)
    job = publish_job(
        ctx,
        nodes[0].port,
        f"/v2/publish/{ctx.sink_url}",
        count=ctx.cfg.e2e_messages,
        ports=[n.port for n in nodes],
    )
    (cpu0, loop0), t0 = _cpu(nodes), time.monotonic()
    result = await run_loadgen(job, ctx.work_dir, name)
    ids = [i for i in result["ids"] if i]
    complete = await wait_for_sink(ctx, len(ids), stall_s=wait_s)
    wall = time.monotonic() - t0
    cpu1, loop1 = _cpu(nodes)
    per_node = [after - before for before, after in zip(cpu0, cpu1, strict=True)]
    cpu = sum(per_node)
    cores = cpu / wall
    result["homing_loop_thread_cores"] = (loop1 - loop0) / wall
    result["homing_cpu_s_per_node"] = per_node
    arrivals = await sink_arrivals(ctx)
    if not complete:
        ctx.notes.append(f"{name}: gave up waiting for deliveries")
    return result, arrivals, ids, cores, cpu


async def end_to_end(ctx: Ctx, homing: Homing, rep: int) -> dict[str, Any]:
    return await _end_to_end(ctx, [homing], f"e2e-{rep}")


async def end_to_end_nodes(ctx: Ctx, nodes: Sequence[Homing], rep: int) -> dict[str, Any]:
    return await _end_to_end(ctx, nodes, f"e2e-nodes-{rep}") | {"nodes": len(nodes)}


async def _end_to_end(ctx: Ctx, nodes: Sequence[Homing], name: str) -> dict[str, Any]:
    result, arrivals, ids, cores, cpu = await _publish_and_collect(ctx, nodes, name, fail_rate=0.0)
    first_send = result["first_send_ns"]
    delivered = [arrivals.first_ok_ns[i] for i in ids if i in arrivals.first_ok_ns]
    lost = len(ids) - len(delivered)
    last = max(delivered) if delivered else first_send
    elapsed = (last - first_send) / 1e9
    first_attempts = [arrivals.first_attempt_ns[i] for i in ids if i in arrivals.first_attempt_ns]
    fa_elapsed = ((max(first_attempts) if first_attempts else first_send) - first_send) / 1e9
    return {
        "rps": len(delivered) / elapsed if elapsed > 0 else 0.0,
        "first_attempt_rps": len(first_attempts) / fa_elapsed if fa_elapsed > 0 else 0.0,
        "published": len(ids),
        "publish_failed": result["failed"],
        "delivered": len(delivered),
        "lost": lost,
        "duplicates": arrivals.ok_total - len(arrivals.first_ok_ns),
        "elapsed_s": elapsed,
        "publish_rps_during_run": result["rps"],
        "homing_cores": cores,
        "homing_loop_thread_cores": result["homing_loop_thread_cores"],
        "homing_cpu_s_per_node": result["homing_cpu_s_per_node"],
        # Publish + claim + deliver + record, all of Homing's CPU per message.
        "homing_cpu_ms_per_message": cpu * 1000 / max(1, len(ids)),
    }


async def failures(ctx: Ctx, homing: Homing, rep: int) -> dict[str, Any]:
    # Retries come after the default backoff (12 s x --backoff-scale); allow for it.
    wait = ctx.cfg.stall_timeout_s + 12 * ctx.cfg.backoff_scale
    result, arrivals, ids, cores, _cpu_s = await _publish_and_collect(
        ctx, [homing], f"failures-{rep}", fail_rate=ctx.cfg.fail_rate, wait_s=wait
    )
    first_send = result["first_send_ns"]
    first_attempts = [arrivals.first_attempt_ns[i] for i in ids if i in arrivals.first_attempt_ns]
    fa_elapsed = ((max(first_attempts) if first_attempts else first_send) - first_send) / 1e9
    delivered = sum(1 for i in ids if i in arrivals.first_ok_ns)
    return {
        "first_attempt_rps": len(first_attempts) / fa_elapsed if fa_elapsed > 0 else 0.0,
        "published": len(ids),
        "first_attempts": len(first_attempts),
        "failed_first_attempts": arrivals.total - arrivals.ok_total,
        "eventually_delivered": delivered,
        "lost": len(ids) - delivered,
        "homing_cores": cores,
    }


async def _open_loop(
    ctx: Ctx,
    homing: Homing,
    name: str,
    extra_headers: list[tuple[str, str]],
    *,
    rate: float | None = None,
) -> tuple[dict[str, Any], Arrivals, list[str], list[int]]:
    cfg = ctx.cfg
    rate = rate or cfg.latency_rate
    await reset_sink(ctx)
    job = publish_job(
        ctx,
        homing.port,
        f"/v2/publish/{ctx.sink_url}",
        extra_headers=extra_headers,
        mode="open",
        rate=rate,
        count=max(1, round(rate * cfg.latency_seconds)),
        warmup=max(1, round(rate * 0.5)),
        concurrency=16,
    )
    result = await run_loadgen(job, ctx.work_dir, name)
    expected = result["ok"] + job["warmup"]  # warm-up messages arrive too
    if not await wait_for_sink(ctx, expected):
        ctx.notes.append(f"{name}: gave up waiting for deliveries")
    arrivals = await sink_arrivals(ctx)
    ids: list[str] = []
    sends: list[int] = []
    for mid, sent in zip(result["ids"], result["send_ns"], strict=True):
        if mid:
            ids.append(mid)
            sends.append(sent)
    return result, arrivals, ids, sends


async def latency(
    ctx: Ctx, homing: Homing, rep: int, *, rate: float | None = None
) -> dict[str, Any]:
    rate = rate or ctx.cfg.latency_rate
    result, arrivals, ids, sends = await _open_loop(
        ctx, homing, f"latency-{rate:.0f}-{rep}", [], rate=rate
    )
    samples = [
        arrivals.first_ok_ns[i] - s
        for i, s in zip(ids, sends, strict=True)
        if i in arrivals.first_ok_ns
    ]
    # If Homing delivers slower than the offered rate, a queue builds up and "latency" is
    # mostly waiting in that queue: report the rate actually delivered so it shows.
    arrived = [arrivals.first_ok_ns[i] for i in ids if i in arrivals.first_ok_ns]
    span = (max(arrived) - min(sends)) / 1e9 if arrived and sends else 0.0
    return {
        "latency_ms": _latency_summary(samples),
        "offered_rps": rate,
        "delivered_rps": len(arrived) / span if span > 0 else 0.0,
        "publish_request_ms": _request_latency(result),
        "published": len(ids),
        "lost": len(ids) - len(samples),
        "schedule_lag_ms": result.get("schedule_lag_ms"),
        "max_inflight_publishes": result.get("max_inflight"),
    }


async def latency_high(ctx: Ctx, homing: Homing, rep: int) -> dict[str, Any]:
    """The latency run at the higher rate (`--high-rate`, default 1,000 msg/s)."""
    return await latency(ctx, homing, rep, rate=ctx.cfg.high_rate)


async def _not_before(ctx: Ctx, homing: Homing, ids: list[str]) -> dict[str, int]:
    """notBefore (Unix ms) of each message, read back through the API after delivery."""
    out: dict[str, int] = {}
    sem = asyncio.Semaphore(16)
    headers = {"Authorization": f"Bearer {DEV_TOKEN}"}

    async def one(mid: str) -> None:
        async with (
            sem,
            ctx.session.get(
                f"http://{LOOPBACK}:{homing.port}/v2/messages/{mid}", headers=headers
            ) as resp,
        ):
            if resp.status == 200:
                body = await resp.json()
                if isinstance(body.get("notBefore"), int):
                    out[mid] = body["notBefore"]

    await asyncio.gather(*(one(i) for i in ids))
    return out


async def delayed(ctx: Ctx, homing: Homing, rep: int) -> dict[str, Any]:
    delay_ns = int(ctx.cfg.delay_s * 1e9)
    header = ("Upstash-Delay", f"{int(ctx.cfg.delay_s * 1000)}ms")
    _result, arrivals, ids, sends = await _open_loop(ctx, homing, f"delayed-{rep}", [header])
    late_send = [
        arrivals.first_ok_ns[i] - (s + delay_ns)
        for i, s in zip(ids, sends, strict=True)
        if i in arrivals.first_ok_ns
    ]
    not_before = await _not_before(ctx, homing, ids)
    late_nb = [
        arrivals.first_ok_ns[i] - nb * 1_000_000
        for i, nb in not_before.items()
        if i in arrivals.first_ok_ns
    ]
    return {
        "lateness_vs_send_ms": _latency_summary(late_send),
        "lateness_vs_not_before_ms": _latency_summary(late_nb),
        "early_vs_send": sum(1 for x in late_send if x < 0),
        "early_vs_not_before": sum(1 for x in late_nb if x < 0),
        "published": len(ids),
        "lost": len(ids) - len(late_send),
        "not_before_read": len(not_before),
    }


def _batch_body(ctx: Ctx, size: int) -> str:
    item = {
        "destination": ctx.sink_url,
        "body": ctx.body,
        "headers": {"Upstash-Delay": "3600s", "Content-Type": "application/json"},
    }
    return orjson.dumps([item] * size).decode()


async def memory(ctx: Ctx, homing: Homing, rep: int, store_size: Any = None) -> dict[str, Any]:
    """Fill `queued` messages due in an hour; RSS of the Homing process and size of its store."""
    cfg = ctx.cfg
    await reset_sink(ctx)
    idle = rss_bytes(homing.pid)
    requests = math.ceil(cfg.queued / cfg.batch_size)
    job = {
        "host": LOOPBACK,
        "port": homing.port,
        "path": "/v2/batch",
        "headers": [("Authorization", f"Bearer {DEV_TOKEN}"), ("Content-Type", "application/json")],
        "body": _batch_body(ctx, cfg.batch_size),
        "client": "raw",
        "mode": "closed",
        "concurrency": cfg.fill_concurrency,
        "count": requests,
        "keep_samples": False,
    }
    peak = 0
    sampling = True

    async def sample() -> None:
        nonlocal peak
        while sampling:
            peak = max(peak, rss_bytes(homing.pid)["VmRSS"])
            await asyncio.sleep(0.25)

    sampler = asyncio.create_task(sample())
    try:
        result = await run_loadgen(job, ctx.work_dir, f"memory-{rep}")
    finally:
        sampling = False
        await sampler
    queued = result["ok"] * cfg.batch_size
    await asyncio.sleep(2.0)  # let the writer settle (WAL checkpoint, freed buffers)
    after = rss_bytes(homing.pid)
    if store_size is not None:
        store = await store_size(homing)
    else:
        store = dir_size(str(homing.data_dir))
    return {
        "queued": queued,
        "fill_msgs_per_s": queued / result["elapsed_s"] if result["elapsed_s"] else 0.0,
        "fill_failed_requests": result["failed"],
        "rss_idle_mib": idle["VmRSS"] / MIB,
        "rss_mib": after["VmRSS"] / MIB,
        "rss_peak_mib": max(peak, after.get("VmHWM", 0)) / MIB,
        "store_mib": store["apparent"] / MIB,
        "store_allocated_mib": store["allocated"] / MIB,
        "store_files": store.get("files", {}),
        "delivered_during_fill": (await sink_stats(ctx))["arrivals"],
    }
