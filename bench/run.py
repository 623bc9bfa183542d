"""`python -m bench`: the whole benchmark in one command, on loopback only.

    python -m bench            # full run: 3 repetitions, 20k-message runs, 1M queued (minutes)
    python -m bench --quick    # CI smoke run: one repetition, small sizes (< 60 s)
    python -m bench --profile  # also profile Homing with py-spy under end-to-end load
    python -m bench --postgres # also run Homing on PostgreSQL (skipped if unavailable)

Ceilings are measured first in every repetition, then Homing's scenarios, each against a fresh
`homing dev` process. Results go to bench/results/latest.json (and a time-stamped run folder
with the logs); the table printed at the end gives min/median/max over repetitions, the ratio
of each throughput to its ceiling measured in the same run, and pass/fail against the targets.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import asyncpg  # type: ignore[import-untyped]
import orjson
import uvloop

from bench import report, scenarios
from bench.common import CpuWatch, dir_size, thread_cpu_seconds, wait_until_quiet
from bench.procs import (
    PYTHON,
    Child,
    Homing,
    ProcessFailed,
    start_framework,
    start_homing,
    start_relay,
    start_sink,
    stop_homing,
)
from bench.profile_summary import render, summarize
from bench.scenarios import Config, Ctx
from bench.trace import render as render_trace

RESULTS = Path(__file__).resolve().parent / "results"
DEFAULT_POSTGRES = "postgresql://postgres@127.0.0.1:5432/test"
SCENARIOS = (
    "relay",
    "publish",
    "e2e",
    "e2e_nodes",
    "latency",
    "latency_high",
    "delayed",
    "failures",
    "memory",
)
# Scenarios that need a store several nodes can share: skipped on SQLite.
SHARED_STORE_ONLY = frozenset({"e2e_nodes"})
NODES = 2
Scenario = Callable[[Ctx, Homing, int], Awaitable[dict[str, Any]]]
RUNNERS: dict[str, Scenario] = {
    "publish": scenarios.publish,
    "e2e": scenarios.end_to_end,
    "latency": scenarios.latency,
    "latency_high": scenarios.latency_high,
    "delayed": scenarios.delayed,
    "failures": scenarios.failures,
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="smoke run for CI: 1 repetition, small N")
    p.add_argument(
        "--repetitions", type=int, help="repetitions of every figure (default 3; quick 1)"
    )
    p.add_argument(
        "--concurrency", type=int, default=64, help="closed-loop connections (default 64)"
    )
    p.add_argument(
        "--messages", type=int, help="messages per throughput run (default 20000; quick 2000)"
    )
    p.add_argument(
        "--ceiling-requests", type=int, help="requests per ceiling run (default = --messages)"
    )
    p.add_argument(
        "--rate", type=float, default=500.0, help="open-loop rate for latency runs (msg/s)"
    )
    p.add_argument(
        "--latency-seconds", type=float, help="length of each latency run (default 10; quick 2)"
    )
    p.add_argument(
        "--high-rate", type=float, default=1000.0, help="open-loop rate of latency_high (msg/s)"
    )
    p.add_argument("--delay", type=float, default=2.0, help="Upstash-Delay of the delayed run (s)")
    p.add_argument(
        "--queued",
        type=int,
        help="messages queued for the memory figure (default 1,000,000; quick 20,000)",
    )
    p.add_argument(
        "--batch-size", type=int, default=500, help="messages per /v2/batch request in the fill"
    )
    p.add_argument(
        "--fill-concurrency", type=int, default=4, help="concurrent /v2/batch requests in the fill"
    )
    p.add_argument(
        "--fail-rate", type=float, default=0.1, help="share of first attempts the sink fails"
    )
    p.add_argument(
        "--backoff-scale", type=float, help="homing dev --backoff-scale (default 1; quick 0.05)"
    )
    p.add_argument(
        "--hold",
        choices=("delay", "queue"),
        default="delay",
        help="how the publish run holds deliveries back: Upstash-Delay 3600s or a paused queue",
    )
    p.add_argument("--only", help=f"comma-separated subset of {','.join(SCENARIOS)}")
    p.add_argument(
        "--postgres",
        nargs="?",
        const=DEFAULT_POSTGRES,
        metavar="URL",
        help=f"also run on PostgreSQL (default URL {DEFAULT_POSTGRES}); "
        "skipped with a note when Homing or the server cannot",
    )
    p.add_argument(
        "--no-sqlite", action="store_true", help="skip the SQLite backend (with --postgres)"
    )
    p.add_argument(
        "--profile",
        action="store_true",
        help="profile Homing with py-spy under end-to-end and publish load "
        "(extra runs, not in the figures)",
    )
    p.add_argument("--profile-rate", type=int, default=250, help="py-spy samples per second")
    p.add_argument(
        "--switch-interval",
        type=float,
        metavar="SECONDS",
        help="diagnostic: run Homing under sys.setswitchinterval(SECONDS) "
        "(default: Python's 0.005)",
    )
    p.add_argument(
        "--trace",
        action="store_true",
        help="diagnostic: time Homing's internals (bench/trace.py) and print where time goes",
    )
    p.add_argument(
        "--wait-quiet",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="before each measurement, wait up to SECONDS for the machine to be idle "
        "(for shared boxes)",
    )
    p.add_argument(
        "--data-root", type=Path, help="where Homing data dirs are created (default: system temp)"
    )
    p.add_argument("--output", type=Path, default=RESULTS / "latest.json", help="results JSON")
    return p.parse_args(argv)


def build_config(a: argparse.Namespace) -> Config:
    quick = a.quick
    messages = a.messages or (2000 if quick else 20_000)
    return Config(
        quick=quick,
        repetitions=a.repetitions or (1 if quick else 3),
        concurrency=a.concurrency,
        ceiling_requests=a.ceiling_requests or messages,
        publish_messages=messages,
        e2e_messages=messages,
        latency_rate=a.rate,
        latency_seconds=a.latency_seconds or (2.0 if quick else 10.0),
        delay_s=a.delay,
        queued=a.queued or (20_000 if quick else 1_000_000),
        batch_size=a.batch_size,
        fill_concurrency=a.fill_concurrency,
        fail_rate=a.fail_rate,
        backoff_scale=a.backoff_scale if a.backoff_scale is not None else (0.05 if quick else 1.0),
        hold=a.hold,
        high_rate=a.high_rate,
        stall_timeout_s=10.0 if quick else 30.0,
    )


# -- machine ------------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    model = ""
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem = ""
    with contextlib.suppress(OSError), open("/proc/meminfo") as f:
        mem = f.readline().split(":", 1)[1].strip()
    versions = {}
    for pkg in ("homing", "aiohttp", "starlette", "uvicorn", "uvloop", "httptools", "orjson"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[pkg] = metadata.version(pkg)
    import hashlib
    import sqlite3

    # Homing changes quickly: tie the figures to the exact source they measured.
    digest = hashlib.sha256()
    newest = 0.0
    files: list[Path] = []
    with contextlib.suppress(ImportError):
        import homing

        package = Path(homing.__file__).parent
        files = sorted(p for p in package.rglob("*") if p.is_file())
    for path in files:
        if path.is_file() and path.suffix in (".py", ".sql"):
            digest.update(str(path.relative_to(package)).encode())
            digest.update(path.read_bytes())
            newest = max(newest, path.stat().st_mtime)
    return {
        "nproc": os.cpu_count(),
        "cpu_model": model,
        "memory": mem,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "packages": versions,
        "homing_source_sha256": digest.hexdigest()[:16],
        "homing_source_newest_mtime": datetime.fromtimestamp(newest, UTC).isoformat(),
    }


# -- backends -----------------------------------------------------------------------------------


class Backend:
    """Where a Homing instance keeps its data: SQLite in its data dir, or a PostgreSQL database."""

    def __init__(self, name: str, url: str | None = None) -> None:
        self.name = name
        self.url = url
        self.note = ""
        self._scratch = 0

    async def database_for_instance(self) -> str | None:
        """SQLite: none (the data dir). PostgreSQL: a scratch database per instance, so that
        repetitions do not see each other's messages; the given database if that fails."""
        if self.url is None:
            return None
        try:
            conn = await asyncpg.connect(self.url, timeout=5)
            try:
                self._scratch += 1
                name = f"homing_bench_{os.getpid()}_{self._scratch}"
                await conn.execute(f'CREATE DATABASE "{name}"')
            finally:
                await conn.close()
            return urlunsplit(urlsplit(self.url)._replace(path="/" + name))
        except Exception as exc:
            self.note = f"no scratch databases ({exc}); all runs share {self.url}"
            return self.url

    async def release(self, url: str | None) -> None:
        """Drop the scratch database of an instance that has stopped."""
        if url is None or url == self.url or self.url is None:
            return
        name = urlsplit(url).path.lstrip("/")
        with contextlib.suppress(Exception):
            conn = await asyncpg.connect(self.url, timeout=5)
            try:
                await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            finally:
                await conn.close()

    async def store_size(self, homing: Homing) -> dict[str, Any]:
        if homing.database_url is None:
            return dir_size(str(homing.data_dir))
        conn = await asyncpg.connect(homing.database_url, timeout=5)
        try:
            size = await conn.fetchval("SELECT pg_database_size(current_database())")
        finally:
            await conn.close()
        return {"apparent": size, "allocated": size, "files": {}}


async def probe_postgres(url: str, run: Run) -> tuple[Backend | None, str]:
    """The PostgreSQL backend if Homing runs on it here, else why not (the run goes on)."""
    try:
        conn = await asyncpg.connect(url, timeout=5)
        await conn.close()
    except Exception as exc:
        return None, f"PostgreSQL at {url} is not reachable: {exc}"
    backend = Backend("postgresql", url)
    try:
        homing = await run.homing(backend, "postgresql-probe")
    except ProcessFailed as exc:
        tail = [line for line in str(exc).splitlines() if line.strip()][-1:]
        return None, "Homing does not run on PostgreSQL: " + (tail[0] if tail else str(exc))
    await stop_homing(homing)
    await backend.release(homing.database_url)
    return backend, ""


# -- the run ------------------------------------------------------------------------------------


class Run:
    def __init__(self, args: argparse.Namespace, cfg: Config) -> None:
        self.args = args
        self.cfg = cfg
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        self.work_dir = RESULTS / f"run-{stamp}"
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.data_root = Path(tempfile.mkdtemp(prefix="homing-bench-", dir=args.data_root))
        self.notes: list[str] = []
        self.t0 = time.monotonic()

    def log(self, text: str) -> None:
        print(f"[{time.monotonic() - self.t0:6.1f}s] {text}", flush=True)

    async def quiet(self) -> None:
        if self.args.wait_quiet > 0:
            load = await wait_until_quiet(self.args.wait_quiet)
            if load > 0.25:
                waited = self.args.wait_quiet
                self.log(f"  machine still busy ({load:.2f} cores) after {waited:.0f}s; measuring")

    async def homing(self, backend: Backend, label: str) -> Homing:
        return (await self.nodes(backend, label, 1))[0]

    async def nodes(self, backend: Backend, label: str, count: int) -> list[Homing]:
        """`count` nodes (role all) on one fresh database, each with its own port and data dir.
        Started one after the other, so that they do not migrate the fresh schema at once."""
        database = await backend.database_for_instance()
        extra = ["--backoff-scale", str(self.cfg.backoff_scale)]
        nodes: list[Homing] = []
        try:
            for i in range(count):
                nodes.append(
                    await start_homing(
                        self.work_dir,
                        self.data_root,
                        label=label if count == 1 else f"{label}-node{i + 1}",
                        database_url=database,
                        extra_args=extra,
                        switch_interval_s=self.args.switch_interval,
                        trace=self.args.trace,
                    )
                )
        except ProcessFailed:
            for node in nodes:
                await stop_homing(node)
            await backend.release(database)
            raise
        return nodes


async def run_scenario(run: Run, ctx: Ctx, backend: Backend, name: str, rep: int) -> dict[str, Any]:
    count = NODES if name == "e2e_nodes" else 1
    nodes = await run.nodes(backend, f"{backend.name}-{name}-{rep}", count)
    homing = nodes[0]
    try:
        await run.quiet()
        watch = CpuWatch([*(n.pid for n in nodes), ctx.sink.pid, ctx.framework.pid])
        if name == "memory":
            result = await scenarios.memory(ctx, homing, rep, store_size=backend.store_size)
        elif name == "e2e_nodes":
            result = await scenarios.end_to_end_nodes(ctx, nodes, rep)
        else:
            result = await RUNNERS[name](ctx, homing, rep)
        result["cpu"] = watch.stop()
        return result
    finally:
        for node in nodes:
            await stop_homing(node)
        await backend.release(homing.database_url)
        for node in nodes:
            if node.trace_path is not None and node.trace_path.exists():
                run.log(render_trace(str(node.trace_path)))


async def run_reference(run: Run, ctx: Ctx, name: str, rep: int) -> dict[str, Any]:
    """One scenario against the naive relay (bench/relay.py), started fresh for it."""
    relay = await start_relay(run.work_dir, run.data_root, label=f"{name}-{rep}")
    try:
        await run.quiet()
        watch = CpuWatch([relay.pid, ctx.sink.pid, ctx.framework.pid])
        result = await RUNNERS[name](ctx, relay, rep)
        result["cpu"] = watch.stop()
        return result
    finally:
        await stop_homing(relay)


def _brief(name: str, r: dict[str, Any]) -> str:
    """One progress line per measurement."""
    if name.startswith("latency"):
        lat = r["latency_ms"]
        return (
            f"p50 {lat['p50']:.2f} ms, p99 {lat['p99']:.2f} ms, max {lat['max']:.1f} ms, "
            f"lost {r['lost']}"
        )
    if name == "delayed":
        s, n = r["lateness_vs_send_ms"], r["lateness_vs_not_before_ms"]
        return (
            f"lateness vs send+delay min {s['min']:.2f} p50 {s['p50']:.2f} p99 {s['p99']:.2f} "
            f"max {s['max']:.1f} ms; vs notBefore min {n['min']:.2f} p99 {n['p99']:.2f} ms; "
            f"lost {r['lost']}"
        )
    if name == "memory":
        return (
            f"{r['queued']:,} queued: RSS {r['rss_mib']:.0f} MiB (peak {r['rss_peak_mib']:.0f}), "
            f"store {r['store_mib']:.0f} MiB, fill {r['fill_msgs_per_s']:,.0f} msg/s"
        )
    if name == "failures":
        return f"first attempts {r['first_attempt_rps']:,.0f}/s, lost {r['lost']}"
    if name in ("e2e", "e2e_nodes"):
        line = f"{r['rps']:,.0f} delivered/s, lost {r['lost']}, {r['homing_cores']:.2f} cores"
        if name == "e2e_nodes":
            line += " (CPU s per node: " + ", ".join(f"{s:.1f}" for s in r["homing_cpu_s_per_node"])
            line += f"), {r['duplicates']} duplicates"
        return line
    if "rps" in r:
        return f"{r['rps']:,.0f}/s"
    if "request_ms" in r:
        return f"p50 {r['request_ms']['p50']:.2f} ms, p99 {r['request_ms']['p99']:.2f} ms"
    return ""


async def profile(run: Run, ctx: Ctx, backend: Backend) -> dict[str, Any]:
    """Extra runs with py-spy attached to Homing; not part of the figures (sampling costs CPU)."""
    py_spy = Path(PYTHON).parent / "py-spy"
    exe = str(py_spy) if py_spy.exists() else shutil.which("py-spy")
    if exe is None:
        return {"skipped": "py-spy is not installed (pip install py-spy)"}
    out: dict[str, Any] = {}
    for name in ("e2e", "publish"):
        homing = await run.homing(backend, f"{backend.name}-profile-{name}")
        path = run.work_dir / f"profile-{backend.name}-{name}.txt"
        spy = Child(
            "py-spy",
            [
                exe,
                "record",
                "--pid",
                str(homing.pid),
                "--rate",
                str(run.args.profile_rate),
                "--format",
                "raw",
                "--threads",
                # Only the thread holding the GIL: samples are then Python CPU, not GIL waits.
                "--gil",
                "--nonblocking",
                "--output",
                str(path),
            ],
            run.work_dir / f"py-spy-{name}.log",
        )
        try:
            await run.quiet()
            await spy.start()
            await asyncio.sleep(1.0)  # let py-spy attach before the load starts
            before, t0 = thread_cpu_seconds(homing.pid), time.monotonic()
            result = await RUNNERS[name](ctx, homing, 99)
            after, wall = thread_cpu_seconds(homing.pid), time.monotonic() - t0
            assert spy.proc is not None
            spy.proc.send_signal(signal.SIGINT)  # py-spy writes its output on Ctrl-C
            await asyncio.wait_for(spy.proc.wait(), 30)
        finally:
            await spy.stop()
            await stop_homing(homing)
            await backend.release(homing.database_url)
        if not path.exists():
            out[name] = {"skipped": "py-spy wrote nothing:\n" + spy.log_tail()}
            continue
        summary = summarize(path, top=30)
        # py-spy counts a thread waiting for the GIL as busy; the kernel's per-thread CPU time
        # says how much CPU each thread really used.
        summary["thread_cpu"] = thread_cpu_shares(path, before, after, wall)
        summary["run"] = {k: v for k, v in result.items() if not isinstance(v, dict | list)}
        out[name] = summary
        run.log(f"profile of {name} written to {path}\n" + render(summary, top=15))
    return out


def thread_cpu_shares(
    profile_path: Path, before: dict[int, float], after: dict[int, float], wall: float
) -> list[dict[str, Any]]:
    """Per-thread CPU from /proc over the profiled run, named from the profile's thread ids."""
    names: dict[int, str] = {}
    for line in profile_path.read_text(errors="replace").splitlines():
        head = line.split(";", 1)[0]
        if head.startswith("thread (") and "): " in head:
            tid_text, _, name = head[len("thread (") :].partition("): ")
            with contextlib.suppress(ValueError):
                names[int(tid_text, 0)] = name.strip()
    used = {tid: after[tid] - before.get(tid, 0.0) for tid in after}
    total = sum(used.values()) or 1.0
    rows = [
        {
            "thread": names.get(tid, f"tid {tid}"),
            "cpu_s": cpu,
            "cores": cpu / wall,
            "share": cpu / total,
        }
        for tid, cpu in sorted(used.items(), key=lambda kv: -kv[1])
        if cpu > 0.01
    ]
    return rows


async def main_async(args: argparse.Namespace) -> int:
    cfg = build_config(args)
    run = Run(args, cfg)
    info = machine()  # at the start: it fingerprints the Homing source being measured
    selected = [s.strip() for s in args.only.split(",")] if args.only else list(SCENARIOS)
    unknown = set(selected) - set(SCENARIOS) - {"ceilings"}
    if unknown:
        raise SystemExit(f"unknown scenarios: {', '.join(sorted(unknown))}")
    run.log(f"config: {asdict(cfg)}; logs in {run.work_dir}")

    backends: list[Backend] = [] if args.no_sqlite else [Backend("sqlite")]
    skipped: dict[str, str] = {}
    sink: Child | None = None
    framework: Child | None = None
    async with aiohttp.ClientSession() as session:
        try:
            sink = await start_sink(run.work_dir)
            framework = await start_framework(run.work_dir)
            ctx = Ctx(cfg, run.work_dir, session, sink, framework, run.notes)
            if args.postgres:
                pg, reason = await probe_postgres(args.postgres, run)
                if pg is not None:
                    backends.append(pg)
                else:
                    skipped["postgresql"] = reason
                    run.log(f"postgresql skipped: {reason}")
            if (
                args.only
                and SHARED_STORE_ONLY & set(selected)
                and all(b.url is None for b in backends)
            ):
                run.notes.append(
                    f"{', '.join(sorted(SHARED_STORE_ONLY))}: PostgreSQL only (--postgres)"
                )

            ceilings: dict[str, list[dict[str, Any]]] = {"sink": [], "framework": [], "floor": []}
            reference: dict[str, list[dict[str, Any]]] = {}
            results: dict[str, dict[str, list[dict[str, Any]]]] = {b.name: {} for b in backends}
            for rep in range(cfg.repetitions):
                run.log(f"repetition {rep + 1}/{cfg.repetitions}")
                for name, fn in (
                    ("sink", scenarios.ceiling_sink),
                    ("framework", scenarios.ceiling_framework),
                    ("floor", scenarios.floor_round_trip),
                ):
                    await run.quiet()
                    watch = CpuWatch([sink.pid, framework.pid])
                    r = await fn(ctx, rep)
                    r["cpu"] = watch.stop()
                    ceilings[name].append(r)
                    run.log(f"  ceiling {name}: {_brief(name, r)}")
                if "relay" in selected:
                    for name in ("publish", "e2e", "latency"):
                        r = await run_reference(run, ctx, name, rep)
                        reference.setdefault(name, []).append(r)
                        run.log(f"  naive relay {name}: {_brief(name, r)}")
                for backend in backends:
                    for name in selected:
                        if name in ("ceilings", "relay"):
                            continue
                        if name in SHARED_STORE_ONLY and backend.url is None:
                            continue
                        r = await run_scenario(run, ctx, backend, name, rep)
                        results[backend.name].setdefault(name, []).append(r)
                        run.log(f"  {backend.name} {name}: {_brief(name, r)}")
                        if backend.note:
                            run.notes.append(f"{backend.name}: {backend.note}")

            profiles: dict[str, Any] = {}
            if args.profile:
                for backend in backends:
                    profiles[backend.name] = await profile(run, ctx, backend)
        finally:
            for child in (framework, sink):
                if child is not None:
                    await child.stop()
            shutil.rmtree(run.data_root, ignore_errors=True)

    rows = report.ceiling_rows(ceilings) + report.reference_rows(reference, ceilings)
    for backend in backends:
        rows += report.homing_rows(
            backend.name,
            results[backend.name],
            ceilings,
            reference=reference,
            queued_target=1_000_000,
        )
    rows += report.backend_rows(results)
    rows += report.nodes_rows(results.get("postgresql", {}), nodes=NODES)
    run.notes += report.noise_notes(ceilings, results)
    text = report.table(rows)
    print()
    print(text)
    for name, reason in skipped.items():
        print(f"{name}: skipped: {reason}")
    for note in dict.fromkeys(run.notes):
        print(f"note: {note}")

    doc = {
        "started": datetime.now(UTC).isoformat(),
        "duration_s": time.monotonic() - run.t0,
        "command": " ".join([os.path.basename(PYTHON), "-m", "bench", *sys.argv[1:]]),
        "machine": info,
        "config": asdict(cfg),
        "figures": [r.as_dict() for r in rows],
        "table": text,
        "markdown": report.markdown(rows),
        "ceilings": ceilings,
        "reference": reference,
        "results": results,
        "skipped": skipped,
        "notes": list(dict.fromkeys(run.notes)),
        "profiles": profiles,
    }
    payload = orjson.dumps(doc, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_bytes(payload)
    (run.work_dir / "results.json").write_bytes(payload)
    run.log(f"results written to {args.output}")
    failed = [r for r in rows if r.passed is False]
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    sys.exit(uvloop.run(main_async(args)))
