"""Summarise a py-spy profile recorded with `--format raw --threads` (collapsed stacks).

    python -m bench.profile_summary PROFILE.txt [--top 25]

Each line is `thread (tid): Name;frame;frame;... count`, a frame being `function (file:line)`.
Line numbers are dropped so that one function is one entry. Time spent in C code (SQLite,
the socket, orjson) is charged to the Python frame that called it, which is what we want for
"which Python code should change".

Reported shares are of all samples taken of non-idle threads:
  * self       the innermost frame of the stack (where the CPU actually was),
  * inclusive  any frame of the stack (the function and everything it called),
  * subsystem  the stack classified by the first rule below that matches one of its frames.
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_LOOP_LEAF = "Runner.run (asyncio/runners.py)"
# Frames at the root of (nearly) every stack: their inclusive share says nothing.
_ROOTS = {
    "Thread._bootstrap (threading.py)",
    "Thread._bootstrap_inner (threading.py)",
    "Thread.run (threading.py)",
    "_worker (concurrent/futures/thread.py)",
    "<module> (homing)",
    "main (homing/cli.py)",
    "serve (homing/server.py)",
    "Server.run (uvicorn/server.py)",
    "asyncio_run (uvicorn/_compat.py)",
    _LOOP_LEAF,
}
_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")

# (subsystem, substrings of a frame); the first rule with a matching frame wins.
SUBSYSTEMS: list[tuple[str, tuple[str, ...]]] = [
    # Samples whose innermost Python frame is the loop runner itself are uvloop's C code:
    # socket reads/writes, timers, running callbacks (see `_LOOP_LEAF`).
    ("event loop: uvloop C code (socket I/O, timers, callbacks)", ("<loop leaf>",)),
    ("sqlite writer thread (transactions, commit/fsync)", ("homing-sqlite-writer",)),
    ("sqlite reader threads", ("homing-sqlite-read",)),
    # The writer's transactions run their hot operations on the event loop (connection.py).
    ("sqlite statements on the event loop (inserts, claims, outcomes)", ("Writer._run",)),
    ("postgres backend (asyncpg)", ("homing/storage/postgres/", "asyncpg/")),
    (
        "publish API handler (validate, build, insert)",
        ("homing/api/publish.py", "homing/actions/publish.py"),
    ),
    ("delivery: claim loop", ("DeliveryEngine._claim_loop",)),
    # The client's protocol callbacks run from the loop, outside any attempt's frames.
    ("delivery: HTTP client (homing/delivery/http1.py)", ("http1.py",)),
    ("delivery: attempt (sign, headers, decide)", ("DeliveryEngine._attempt", "Sender.")),
    ("delivery: record outcomes", ("DeliveryEngine._record_loop", "DeliveryEngine._flush")),
    ("HTTP server: uvicorn + starlette", ("uvicorn/", "starlette/")),
    ("asyncio event loop plumbing", ("asyncio/",)),
]


@dataclass(frozen=True, slots=True)
class Frame:
    func: str
    file: str

    @property
    def key(self) -> str:
        return f"{self.func} ({self.file})"


def parse_frame(raw: str) -> Frame:
    m = _FRAME.match(raw.strip())
    if m is None:
        return Frame(raw.strip(), "")
    return Frame(m.group("func"), m.group("file"))


def summarize(path: Path, *, top: int = 25) -> dict[str, Any]:
    total = 0
    threads: Counter[str] = Counter()
    self_time: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    subsystems: Counter[str] = Counter()
    # The event loop runs on the main thread: in a single-process server it is the bottleneck,
    # so its own breakdown (shares of main-thread samples) is the one to read first.
    main_subsystems: Counter[str] = Counter()
    main_self: Counter[str] = Counter()
    main_total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        head, *raw_frames = stack.split(";")
        thread = head.split(":", 1)[1].strip() if ":" in head else head
        frames = [parse_frame(f) for f in raw_frames]
        total += count
        threads[thread] += count
        if frames:
            self_time[frames[-1].key] += count
        for key in {f.key for f in frames} - _ROOTS:
            inclusive[key] += count
        searchable = [thread, *(f.key for f in frames)]
        if frames and frames[-1].key == _LOOP_LEAF:
            searchable = ["<loop leaf>"]
        name = next(
            (
                sub
                for sub, needles in SUBSYSTEMS
                if any(n in s for s in searchable for n in needles)
            ),
            "other",
        )
        subsystems[name] += count
        if thread == "MainThread":
            main_total += count
            main_subsystems[name] += count
            if frames:
                main_self[frames[-1].key] += count

    def share(
        counter: Counter[str], n: int | None = None, of: int | None = None
    ) -> list[dict[str, Any]]:
        whole = total if of is None else of
        return [
            {"name": k, "samples": v, "share": v / whole if whole else 0.0}
            for k, v in counter.most_common(n)
        ]

    return {
        "file": str(path),
        "samples": total,
        "threads": share(threads),
        "subsystems": share(subsystems),
        "self": share(self_time, top),
        "inclusive": share(inclusive, top),
        "main_thread_samples": main_total,
        "main_thread_subsystems": share(main_subsystems, of=main_total),
        "main_thread_self": share(main_self, top, of=main_total),
    }


def render(summary: dict[str, Any], *, top: int = 15) -> str:
    out = [f"profile {summary['file']}: {summary['samples']} samples of busy threads"]
    if summary.get("thread_cpu"):
        out.append("  CPU per thread (kernel accounting, /proc):")
        for row in summary["thread_cpu"]:
            out.append(
                f"    {row['share'] * 100:5.1f}%  {row['thread']} "
                f"({row['cpu_s']:.1f} s, {row['cores']:.2f} cores)"
            )
    for title, key in (
        ("by thread", "threads"),
        ("by subsystem", "subsystems"),
        ("main thread (event loop) only, by subsystem", "main_thread_subsystems"),
        ("main thread only, self time", "main_thread_self"),
        ("self time (innermost Python frame)", "self"),
        ("inclusive time", "inclusive"),
    ):
        out.append(f"  {title}:")
        for row in summary[key][:top]:
            out.append(f"    {row['share'] * 100:5.1f}%  {row['name']}")
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description="Summarise a py-spy raw profile.")
    parser.add_argument("profile", type=Path)
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    print(render(summarize(args.profile, top=args.top), top=args.top))


if __name__ == "__main__":
    main()
