"""Diagnostic: where a message's time goes inside Homing, without changing Homing's code.

`python -m bench --trace` starts Homing through `bench.trace.main`, which wraps a few of
Homing's internals before the server starts and writes timings to a JSON file at exit:

  * every SQLite writer call, by caller (insert, claim, record outcomes, ...):
      wait    enqueue -> its transaction starts running it (queueing behind other batches)
      run     its own function inside the transaction
      commit  end of its function -> end of the whole batch (other ops + COMMIT)
      back    end of the batch -> the awaiting coroutine resumes (thread -> loop hand-off)
  * writer batches: size and duration, and each hop to the writer thread (BEGIN, COMMIT,
    operations too large to run on the event loop),
  * SQLite reader calls (thread pool): total time, by caller,
  * delivery HTTP attempts (`Sender.send`): total time,
  * storage calls by backend (SQLite or PostgreSQL): insert, claim, record, next due, auth,
  * claim-loop wake-ups: from a wake (publish committed) to the claim starting.

The wrappers cost a little CPU, so traced runs are diagnostic, not figures.
"""

from __future__ import annotations

import atexit
import os
import signal
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import orjson

from bench.common import distribution

_samples: dict[str, list[float]] = defaultdict(list)


def _ms(ns: int) -> float:
    return ns / 1e6


def _caller_name(fn: Callable[..., Any]) -> str:
    name = getattr(fn, "__qualname__", repr(fn))
    return name.replace(".<locals>.<lambda>", "").replace(".<locals>.run", "")


def install() -> None:
    from homing.delivery.engine import DeliveryEngine
    from homing.delivery.sender import Sender
    from homing.storage.sqlite import connection

    writer_cls = connection.Writer
    readers_cls = connection.Readers
    orig_tx = writer_cls._transaction
    batches: dict[int, tuple[int, int]] = {}
    current = [0]

    async def transaction(self: Any, batch: list[Any]) -> Any:
        current[0] += 1
        bid = current[0]
        start = time.perf_counter_ns()
        result = await orig_tx(self, batch)
        end = time.perf_counter_ns()
        batches[bid] = (start, end)
        _samples["writer.batch_size"].append(len(batch))
        _samples["writer.batch_ms"].append(_ms(end - start))
        return result

    writer_cls._transaction = transaction  # type: ignore[method-assign]
    orig_blocking = writer_cls._blocking

    def blocking(self: Any, fn: Callable[[], Any]) -> Any:
        # BEGIN, COMMIT and the operations too big to run inline: the hop to the writer thread
        # and back, timed around the statement.
        t0 = time.perf_counter_ns()
        future = orig_blocking(self, fn)
        future.add_done_callback(
            lambda _: _samples["writer.thread_hop_ms"].append(_ms(time.perf_counter_ns() - t0))
        )
        return future

    writer_cls._blocking = blocking  # type: ignore[method-assign]
    orig_call = writer_cls.call

    async def writer_call(self: Any, fn: Callable[[Any], Any], **options: Any) -> Any:
        marks: dict[str, int] = {}

        def timed(conn: Any) -> Any:
            marks["start"] = time.perf_counter_ns()
            marks["batch"] = current[0]
            try:
                return fn(conn)
            finally:
                marks["end"] = time.perf_counter_ns()

        t0 = time.perf_counter_ns()
        try:
            return await orig_call(self, timed, **options)
        finally:
            t3 = time.perf_counter_ns()
            if "end" in marks:
                name = "writer:" + _caller_name(fn)
                batch_end = batches.get(marks["batch"], (0, marks["end"]))[1]
                _samples[name + ".total"].append(_ms(t3 - t0))
                _samples[name + ".wait"].append(_ms(marks["start"] - t0))
                _samples[name + ".run"].append(_ms(marks["end"] - marks["start"]))
                _samples[name + ".commit"].append(_ms(batch_end - marks["end"]))
                _samples[name + ".back"].append(_ms(t3 - batch_end))

    writer_cls.call = writer_call  # type: ignore[method-assign]
    orig_read = readers_cls.call

    async def reader_call(self: Any, fn: Callable[[Any], Any]) -> Any:
        t0 = time.perf_counter_ns()
        try:
            return await orig_read(self, fn)
        finally:
            _samples["reader:" + _caller_name(fn) + ".total"].append(
                _ms(time.perf_counter_ns() - t0)
            )

    readers_cls.call = reader_call  # type: ignore[method-assign]
    orig_send = Sender.send

    async def send(self: Any, message: Any, key: str) -> Any:
        t0 = time.perf_counter_ns()
        try:
            return await orig_send(self, message, key)
        finally:
            _samples["sender.send.total"].append(_ms(time.perf_counter_ns() - t0))

    Sender.send = send  # type: ignore[method-assign,assignment]
    orig_wake = DeliveryEngine._on_wake
    woken: list[int] = []

    def on_wake(self: Any, due_ms: int) -> None:
        if not self._wake.is_set():
            woken.append(time.perf_counter_ns())
        orig_wake(self, due_ms)

    DeliveryEngine._on_wake = on_wake  # type: ignore[method-assign]
    # Storage calls, whatever the backend (the SQLite writer breakdown above is finer).
    from homing.storage.sqlite.backend import SqliteStorage

    storages: list[type] = [SqliteStorage]
    try:
        from homing.storage.postgres.backend import PostgresStorage

        storages.append(PostgresStorage)
    except ImportError:
        pass
    for cls in storages:
        backend = "sqlite" if cls is SqliteStorage else "postgres"
        for method in ("insert_messages", "record_outcomes", "next_due_ms", "authenticate"):
            _time_method(cls, method, f"storage[{backend}].{method}")
        _wrap_claim(cls, f"storage[{backend}].claim_due", woken)


def _time_method(cls: type, method: str, label: str) -> None:
    orig = getattr(cls, method, None)
    if orig is None:
        return

    async def timed(self: Any, *args: Any, **kw: Any) -> Any:
        t0 = time.perf_counter_ns()
        try:
            return await orig(self, *args, **kw)
        finally:
            _samples[label].append(_ms(time.perf_counter_ns() - t0))

    setattr(cls, method, timed)


def _wrap_claim(cls: type, label: str, woken: list[int]) -> None:
    orig = cls.claim_due  # type: ignore[attr-defined]

    async def claim_due(self: Any, **kw: Any) -> Any:
        if woken:
            _samples["engine.wake_to_claim"].append(_ms(time.perf_counter_ns() - woken[0]))
            woken.clear()
        t0 = time.perf_counter_ns()
        rows = await orig(self, **kw)
        _samples[label].append(_ms(time.perf_counter_ns() - t0))
        _samples["engine.claimed_per_round"].append(len(rows))
        return rows

    cls.claim_due = claim_due  # type: ignore[attr-defined]


def dump(path: str) -> None:
    out = {name: distribution(values) for name, values in sorted(_samples.items())}
    with open(path, "wb") as f:
        f.write(orjson.dumps(out, option=orjson.OPT_INDENT_2))


def render(path: str) -> str:
    with open(path, "rb") as f:
        data: dict[str, dict[str, float]] = orjson.loads(f.read())
    lines = [f"trace {path} (ms unless a count):", f"  {'':44} {'n':>7} {'p50':>8} {'p99':>8}"]
    for name, d in data.items():
        lines.append(f"  {name:44} {d['n']:7.0f} {d['p50']:8.2f} {d['p99']:8.2f}")
    return "\n".join(lines)


def main() -> None:
    """`python -m bench.trace OUT.json homing-args...`: run Homing with the tracer."""
    out, argv = sys.argv[1], sys.argv[2:]
    switch = os.environ.get("BENCH_SWITCH_INTERVAL")
    if switch:
        sys.setswitchinterval(float(switch))
    install()
    atexit.register(dump, out)
    # uvicorn re-raises SIGTERM after its graceful shutdown, with the handler that was there
    # before it started: this one, so that the timings are written before the process ends.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    from homing.cli import main as homing_main

    homing_main(argv)


if __name__ == "__main__":
    main()
