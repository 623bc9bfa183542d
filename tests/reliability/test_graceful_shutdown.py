"""Graceful shutdown: SIGTERM lets attempts in flight finish and releases only what is still open.

`homing dev --shutdown-timeout 4` as a subprocess, a receiver that answers after one second, and
one that hangs for 30 seconds on a message's first attempt.

* SIGTERM while 40 one-second attempts are in flight: the process waits for them (it exits
  after about one second, well inside the timeout), every message is delivered exactly once,
  and after a restart nothing is sent again.
* SIGTERM while 10 one-second attempts and 5 hanging attempts are in flight: the one-second
  attempts finish and are recorded; the hanging ones are cut at the end of the shutdown timeout,
  released, logged as interrupted, and delivered again after the restart. The process exits
  within the shutdown timeout plus a small margin.
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

from tests.reliability.support import HomingProcess, SinkProcess, publish_batches
from tests.support.http import log_entries
from tests.support.waiting import wait_until

SHUTDOWN_TIMEOUT_S = 4.0
EXIT_MARGIN_S = 3.0  # closing the store and the HTTP server after the grace period


def _items(sink: SinkProcess, path: str, count: int, tag: str) -> list[dict[str, object]]:
    return [
        {
            "destination": sink.url(path),
            "body": f"{tag}-{n}",
            "headers": {"Upstash-Retries": "3", "Upstash-Retry-Delay": "100"},
        }
        for n in range(count)
    ]


def test_sigterm_finishes_attempts_in_flight_and_releases_only_what_is_still_open(
    tmp_path: Path,
) -> None:
    sink = SinkProcess()
    homing = HomingProcess(
        tmp_path / "data",
        tmp_path / "homing.log",
        extra=["--shutdown-timeout", str(SHUTDOWN_TIMEOUT_S), "--log-level", "info"],
    )
    try:
        # 1. Only one-second attempts in flight.
        homing.start()
        slow_a = publish_batches(homing.base_url, _items(sink, "/slow/a?ms=1000", 40, "a"))
        assert wait_until(lambda: set(slow_a) <= set(sink.ids()), timeout=20, interval=0.01)
        first_exit_s = homing.terminate()
        homing.start()
        time.sleep(1.5)  # anything released would be delivered again within this
        seen_a = Counter(sink.ids())
        delivered_a = {
            e["messageId"]
            for e in log_entries(homing.base_url, state="DELIVERED")
            if e["messageId"] in slow_a
        }
        interrupted_a = [
            e for e in log_entries(homing.base_url, state="ERROR") if e["messageId"] in set(slow_a)
        ]

        # 2. One-second attempts and hanging attempts in flight.
        slow_b = publish_batches(homing.base_url, _items(sink, "/slow/b?ms=1000", 10, "b"))
        hang = publish_batches(homing.base_url, _items(sink, "/hang-once/c?s=30", 5, "c"))
        assert wait_until(lambda: set(slow_b + hang) <= set(sink.ids()), timeout=20, interval=0.01)
        second_exit_s = homing.terminate()
        homing.start()
        assert wait_until(
            lambda: all(Counter(sink.ids())[m] >= 2 for m in hang), timeout=20, interval=0.05
        ), "the released attempts were not delivered again after the restart"
        time.sleep(1.0)
        seen = Counter(sink.ids())
        retried_header = {d[0]: d[1] for d in sink.deliveries() if d[0] in hang}
        delivered_b = {e["messageId"] for e in log_entries(homing.base_url, state="DELIVERED")}
        interrupted = Counter(
            e["messageId"]
            for e in log_entries(homing.base_url, state="ERROR")
            if "interrupted" in e.get("error", "")
        )
        log_text = homing.log_text()
    finally:
        homing.stop()
        sink.close()

    print(
        f"\ngraceful shutdown: timeout={SHUTDOWN_TIMEOUT_S}s | phase 1: in_flight=40 "
        f"exit_s={first_exit_s:.2f} "
        f"deliveries_per_message={sorted(set(seen_a[m] for m in slow_a))} "
        f"delivered_logged={len(delivered_a)} interrupted={len(interrupted_a)} | phase 2: "
        f"in_flight=10 one-second + 5 hanging, exit_s={second_exit_s:.2f} "
        f"one_second_deliveries={sorted(set(seen[m] for m in slow_b))} "
        f"hanging_deliveries={sorted(set(seen[m] for m in hang))} "
        f"released_logged={sum(interrupted.values())} "
        f"Upstash-Retried_on_redelivery={sorted(set(retried_header.values()))}"
    )
    # Phase 1: waited for the attempts, no more; 0 lost, 0 duplicated.
    assert first_exit_s < SHUTDOWN_TIMEOUT_S, "shutdown waited longer than the attempts took"
    assert all(seen_a[m] == 1 for m in slow_a), "a finished attempt was sent again after restart"
    assert delivered_a == set(slow_a)
    assert interrupted_a == []
    # Phase 2: one-second attempts finished inside the timeout; only the hanging ones released.
    assert SHUTDOWN_TIMEOUT_S - 0.5 < second_exit_s < SHUTDOWN_TIMEOUT_S + EXIT_MARGIN_S
    assert all(seen[m] == 1 for m in slow_b)
    assert set(slow_b) <= delivered_b
    assert all(seen[m] == 2 for m in hang)
    assert set(hang) <= delivered_b
    assert set(interrupted) == set(hang) and set(interrupted.values()) == {1}
    assert "released 5 unfinished attempts" in log_text
