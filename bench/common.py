"""Small helpers shared by the benchmark's processes (orchestrator, load generator, sink)."""

from __future__ import annotations

import contextlib
import math
import os
import socket
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

# The public token of the QStash development server's first user, which `homing dev` seeds.
DEV_TOKEN = "eyJVc2VySUQiOiJkZWZhdWx0VXNlciIsIlBhc3N3b3JkIjoiZGVmYXVsdFBhc3N3b3JkIn0="
LOOPBACK = "127.0.0.1"
MIB = 1024 * 1024


def body_of(size: int) -> bytes:
    """A JSON body of exactly `size` bytes (size >= 16), like a small webhook payload."""
    head, tail = b'{"payload":"', b'"}'
    filler = size - len(head) - len(tail)
    if filler < 0:
        raise ValueError(f"body size {size} is too small")
    return head + b"x" * filler + tail


def free_port() -> int:
    """A loopback port nobody listens on right now (the small race is fine on a bench box)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOOPBACK, 0))
        port: int = s.getsockname()[1]
        return port


def percentile(sorted_values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile of an already sorted sequence (p in 0..100)."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(p / 100 * len(sorted_values)))
    return float(sorted_values[min(rank, len(sorted_values)) - 1])


def distribution(values: Sequence[float]) -> dict[str, float]:
    """min / p50 / p99 / max / mean of a sample (NaN everywhere for an empty one)."""
    ordered = sorted(values)
    if not ordered:
        return {k: math.nan for k in ("min", "p50", "p90", "p99", "max", "mean")} | {"n": 0}
    return {
        "n": len(ordered),
        "min": float(ordered[0]),
        "p50": percentile(ordered, 50),
        "p90": percentile(ordered, 90),
        "p99": percentile(ordered, 99),
        "max": float(ordered[-1]),
        "mean": statistics.fmean(ordered),
    }


@dataclass(frozen=True, slots=True)
class Spread:
    """A figure over repetitions: min / median / max."""

    min: float
    median: float
    max: float
    values: tuple[float, ...]

    @classmethod
    def of(cls, values: Sequence[float]) -> Spread:
        clean = [v for v in values if not math.isnan(v)]
        if not clean:
            return cls(math.nan, math.nan, math.nan, tuple(values))
        return cls(min(clean), statistics.median(clean), max(clean), tuple(values))

    def as_dict(self) -> dict[str, object]:
        return {"min": self.min, "median": self.median, "max": self.max, "values": self.values}


# -- /proc readers (Linux only; the bench targets Linux) ---------------------------------------

_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def rss_bytes(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak RSS) of a process, from /proc/<pid>/status, in bytes."""
    out: dict[str, int] = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM", "RssAnon", "RssFile"):
                out[key] = int(rest.split()[0]) * 1024  # the kernel reports kB
    return out


def cpu_seconds(pid: int, tid: int | None = None) -> float:
    """User + system CPU time of a process (all its threads) so far, or of one of its threads
    (the main thread's id is the process id: for Homing, that is the event loop)."""
    path = f"/proc/{pid}/stat" if tid is None else f"/proc/{pid}/task/{tid}/stat"
    with open(path) as f:
        raw = f.read()
    # The command name may contain spaces: fields start after the closing parenthesis.
    fields = raw[raw.rindex(")") + 2 :].split()
    utime, stime = int(fields[11]), int(fields[12])
    return (utime + stime) / _CLOCK_TICKS


def thread_cpu_seconds(pid: int) -> dict[int, float]:
    """CPU time so far of every thread of a process, by thread id."""
    out: dict[int, float] = {}
    for entry in os.scandir(f"/proc/{pid}/task"):
        with contextlib.suppress(OSError, ValueError):
            out[int(entry.name)] = cpu_seconds(pid, int(entry.name))
    return out


def dir_size(path: str) -> dict[str, Any]:
    """Apparent and allocated size of every file under `path`, plus a per-file breakdown."""
    apparent = allocated = 0
    files: dict[str, int] = {}
    for root, _dirs, names in os.walk(path):
        for name in names:
            full = os.path.join(root, name)
            try:
                st = os.stat(full)
            except FileNotFoundError:
                continue
            apparent += st.st_size
            allocated += st.st_blocks * 512
            files[os.path.relpath(full, path)] = st.st_size
    return {"apparent": apparent, "allocated": allocated, "files": files}


def _total_busy_seconds() -> float:
    """CPU time spent busy by the whole machine so far (all cores), from /proc/stat."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    # user nice system idle iowait irq softirq steal ...: idle and iowait are not busy.
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return (sum(fields[:8]) - idle) / _CLOCK_TICKS


class CpuWatch:
    """How much CPU the rest of the machine used while we measured.

    The benchmark's own processes are the orchestrator, its reaped children (load generators,
    counted through RUSAGE_CHILDREN) and the live children given by pid (Homing, the sink, the
    framework app). Everything else busy on the box is foreign load that makes figures noisy.
    """

    def __init__(self, pids: Sequence[int]) -> None:
        self._pids = list(pids)
        self._start = self._snapshot()

    def _snapshot(self) -> tuple[float, float, float]:
        import resource

        mine = 0.0
        for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
            usage = resource.getrusage(who)
            mine += usage.ru_utime + usage.ru_stime
        for pid in self._pids:
            with contextlib.suppress(OSError):  # exited since
                mine += cpu_seconds(pid)
        return time.monotonic(), _total_busy_seconds(), mine

    def stop(self) -> dict[str, float]:
        t1, busy1, mine1 = self._snapshot()
        t0, busy0, mine0 = self._start
        wall = max(t1 - t0, 1e-9)
        return {
            "wall_s": wall,
            "machine_cores": (busy1 - busy0) / wall,
            "bench_cores": (mine1 - mine0) / wall,
            "foreign_cores": max(0.0, (busy1 - busy0) - (mine1 - mine0)) / wall,
        }


async def wait_until_quiet(
    max_wait_s: float, *, threshold_cores: float = 0.25, window_s: float = 1.0
) -> float:
    """Wait (at most `max_wait_s`) for a `window_s` during which the whole machine is busier
    than `threshold_cores` no more; return the load of the last window. Between measurements
    the benchmark's own processes are idle, so what is measured here is everybody else."""
    import asyncio

    deadline = time.monotonic() + max_wait_s
    while True:
        t0, b0 = time.monotonic(), _total_busy_seconds()
        await asyncio.sleep(window_s)
        load = (_total_busy_seconds() - b0) / (time.monotonic() - t0)
        if load <= threshold_cores or time.monotonic() >= deadline:
            return load
