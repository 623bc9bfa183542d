"""Child processes of a benchmark run: the sink, the framework ceiling, Homing, load generators.

Every child is started by this module and stopped by its pid (SIGTERM, then SIGKILL after a
grace period); nothing here ever signals a process it did not start.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from bench.common import LOOPBACK, free_port

PYTHON = sys.executable
BENCH_ROOT = Path(__file__).resolve().parent


class ProcessFailed(RuntimeError):
    """A child exited (or never became ready); carries the tail of its log."""


@dataclass
class Child:
    name: str
    argv: list[str]
    log_path: Path
    port: int | None = None
    proc: asyncio.subprocess.Process | None = None
    _log: Any = field(default=None, repr=False)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    async def start(self, env: dict[str, str] | None = None) -> None:
        self._log = self.log_path.open("ab")  # closed in stop()
        self.proc = await asyncio.create_subprocess_exec(
            *self.argv,
            stdout=self._log,
            stderr=asyncio.subprocess.STDOUT,
            stdin=asyncio.subprocess.DEVNULL,
            env=env,
        )

    def log_tail(self, lines: int = 15) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    async def wait_ready(self, url: str, timeout_s: float = 30.0) -> None:
        """Poll `url` until it answers 200; fail early if the process exits."""
        assert self.proc is not None
        deadline = time.monotonic() + timeout_s
        async with aiohttp.ClientSession() as session:
            while time.monotonic() < deadline:
                if self.proc.returncode is not None:
                    raise ProcessFailed(
                        f"{self.name} exited with status {self.proc.returncode}:\n"
                        + self.log_tail()
                    )
                with contextlib.suppress(aiohttp.ClientError, OSError, TimeoutError):
                    async with session.get(url, timeout=aiohttp.ClientTimeout(total=1)) as resp:
                        if resp.status == 200:
                            return
                await asyncio.sleep(0.05)
        raise ProcessFailed(f"{self.name} was not ready within {timeout_s}s:\n" + self.log_tail())

    async def stop(self, grace_s: float = 10.0) -> None:
        if self.proc is not None and self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), grace_s)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    self.proc.kill()
                await self.proc.wait()
        if self._log is not None:
            self._log.close()
            self._log = None


def homing_command(
    *, switch_interval_s: float | None = None, trace_path: Path | None = None
) -> tuple[list[str], dict[str, str]]:
    """The command (and extra environment) that starts Homing.

    Normally the venv's `homing` console script. The diagnostic knobs run it through a wrapper
    instead: `switch_interval_s` sets `sys.setswitchinterval` (GIL hand-over between the event
    loop and the SQLite threads), `trace_path` installs `bench.trace`'s timers.
    """
    env: dict[str, str] = {}
    if switch_interval_s is not None:
        env["BENCH_SWITCH_INTERVAL"] = repr(switch_interval_s)
    if trace_path is not None:
        return [PYTHON, "-m", "bench.trace", str(trace_path)], env
    if switch_interval_s is not None:
        code = (
            "import os, sys; sys.setswitchinterval(float(os.environ['BENCH_SWITCH_INTERVAL'])); "
            "from homing.cli import main; main(sys.argv[1:])"
        )
        return [PYTHON, "-c", code], env
    script = Path(PYTHON).parent / "homing"
    if script.exists():
        return [str(script)], env
    found = shutil.which("homing")
    return ([found] if found else [PYTHON, "-m", "homing"]), env


async def start_sink(log_dir: Path) -> Child:
    port = free_port()
    child = Child(
        "sink", [PYTHON, "-m", "bench.sink", "--port", str(port)], log_dir / "sink.log", port
    )
    await child.start(_env())
    await child.wait_ready(f"http://{LOOPBACK}:{port}/_bench/stats")
    return child


async def start_framework(log_dir: Path) -> Child:
    port = free_port()
    child = Child(
        "framework",
        [PYTHON, "-m", "bench.framework", "--port", str(port)],
        log_dir / "framework.log",
        port,
    )
    await child.start(_env())
    await child.wait_ready(f"http://{LOOPBACK}:{port}/healthz")
    return child


async def start_relay(log_dir: Path, data_root: Path, *, label: str) -> Homing:
    """The naive durable relay (bench/relay.py), wrapped like Homing so that the same scenarios
    measure both."""
    port = free_port()
    data_dir = Path(tempfile.mkdtemp(prefix=f"relay-{label}-", dir=data_root))
    argv = [PYTHON, "-m", "bench.relay", "--port", str(port), "--data-dir", str(data_dir)]
    child = Child(f"relay[{label}]", argv, log_dir / f"relay-{label}.log", port)
    await child.start(_env())
    try:
        await child.wait_ready(f"http://{LOOPBACK}:{port}/readyz")
    except ProcessFailed:
        await child.stop()
        shutil.rmtree(data_dir, ignore_errors=True)
        raise
    return Homing(child, data_dir, None, reference=True)


@dataclass
class Homing:
    child: Child
    data_dir: Path
    database_url: str | None
    trace_path: Path | None = None
    reference: bool = False  # the naive relay, not Homing: it knows only publish and delays

    @property
    def port(self) -> int:
        assert self.child.port is not None
        return self.child.port

    @property
    def pid(self) -> int:
        return self.child.pid


async def start_homing(
    log_dir: Path,
    data_root: Path,
    *,
    label: str,
    database_url: str | None = None,
    extra_args: Sequence[str] = (),
    switch_interval_s: float | None = None,
    trace: bool = False,
) -> Homing:
    """`homing dev` on a fresh data dir (and the given database, if any)."""
    port = free_port()
    data_dir = Path(tempfile.mkdtemp(prefix=f"homing-{label}-", dir=data_root))
    trace_path = log_dir / f"trace-{label}.json" if trace else None
    command, env = homing_command(switch_interval_s=switch_interval_s, trace_path=trace_path)
    argv = [
        *command,
        "dev",
        "--port",
        str(port),
        "--data-dir",
        str(data_dir),
    ]
    if database_url:
        argv += ["--database", database_url]
    argv += list(extra_args)
    child = Child(f"homing[{label}]", argv, log_dir / f"homing-{label}.log", port)
    await child.start(_env() | env)
    try:
        await child.wait_ready(f"http://{LOOPBACK}:{port}/readyz", timeout_s=60)
    except ProcessFailed:
        await child.stop()
        shutil.rmtree(data_dir, ignore_errors=True)
        raise
    return Homing(child, data_dir, database_url, trace_path)


async def stop_homing(homing: Homing, *, keep_data: bool = False) -> None:
    await homing.child.stop()
    if not keep_data:
        shutil.rmtree(homing.data_dir, ignore_errors=True)


async def run_loadgen(job: dict[str, Any], work_dir: Path, name: str) -> dict[str, Any]:
    """Run one load-generator job in its own process and return its result."""
    job_path = work_dir / f"{name}.job.json"
    out_path = work_dir / f"{name}.out.json"
    job_path.write_bytes(orjson.dumps(job))
    proc = await asyncio.create_subprocess_exec(
        PYTHON,
        "-m",
        "bench.loadgen",
        str(job_path),
        str(out_path),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
        env=_env(),
    )
    try:
        _, err = await proc.communicate()
    except BaseException:  # interrupted: do not leave the load running
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
        raise
    if proc.returncode != 0:
        raise ProcessFailed(
            f"load generator {name} failed:\n{err.decode(errors='replace')[-2000:]}"
        )
    result: dict[str, Any] = orjson.loads(out_path.read_bytes())
    out_path.unlink(missing_ok=True)
    job_path.unlink(missing_ok=True)
    return result


def _env() -> dict[str, str]:
    """The children import `bench` from the project root, whatever the caller's cwd."""
    env = dict(os.environ)
    root = str(BENCH_ROOT.parent)
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    # Proxies must never see loopback benchmark traffic.
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    return env
