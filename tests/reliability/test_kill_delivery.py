"""Crash safety of delivery: `homing dev` is killed with SIGKILL five times while it delivers
10,000 messages, and restarted each time on the same data directory.

What a user would notice, and what this asserts:

* nothing is lost: every published message reaches the receiver;
* nothing is invented: the receiver never sees an id that was not published;
* duplicates are only ever messages whose attempt was in flight when the process died. "In
  flight" is read from the SQLite file right after each kill (it is consistent after kill -9):
  the rows in state `active` are exactly the attempts that had started and whose outcome was
  not yet committed. Every message delivered twice must be in one of those sets;
* `PRAGMA integrity_check` answers `ok` after every kill.

The long version (HOMING_SOAK=1) runs 100,000 messages and 20 kills.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.reliability.support import (
    SOAK,
    SOAK_REASON,
    HomingProcess,
    SinkProcess,
    active_ids,
    integrity,
    publish_batches,
    state_counts,
)
from tests.support.waiting import wait_until


def run_kill_test(tmp_path: Path, *, messages: int, kills: int, seed: int) -> None:
    started = time.monotonic()
    rng = random.Random(seed)
    sink = SinkProcess()
    homing = HomingProcess(
        tmp_path / "data", tmp_path / "homing.log", extra=["--log-level", "warning"]
    )
    checks: list[str] = []
    in_flight_sets: list[set[str]] = []
    kill_points: list[int] = []
    restart_s: list[float] = []
    try:
        homing.start()
        # Everything becomes due together once publishing is (about) done, so the kills below
        # fall into delivery, not into publishing (that is test_kill_publish). Publishing alone
        # runs at several thousand messages a second; the assertion on kill_points below makes
        # sure no kill came after the last delivery.
        not_before = int(time.time()) + max(8, messages // 2000)
        items = [
            {
                "destination": sink.url(f"/ok/{n}"),
                "body": str(n),
                "headers": {
                    "Upstash-Retries": "10",
                    "Upstash-Retry-Delay": "100",
                    "Upstash-Not-Before": str(not_before),
                },
            }
            for n in range(messages)
        ]
        published = publish_batches(homing.base_url, items, per_request=100)
        publish_s = time.monotonic() - started
        number_of = {mid: n for n, mid in enumerate(published)}
        assert len(number_of) == messages

        def delivered() -> int:
            return len(set(sink.ids()))

        wait_until(lambda: delivered() > 0, timeout=30, interval=0.01)
        low = delivered() / messages + 0.01
        thresholds = sorted(rng.uniform(low, 0.95) for _ in range(kills))
        for threshold in thresholds:
            wait_until(lambda t=threshold: delivered() >= t * messages, timeout=120, interval=0.005)  # type: ignore[misc]
            time.sleep(rng.uniform(0, 0.02))
            homing.kill()
            kill_points.append(delivered())
            checks.append(integrity(homing.db))
            in_flight_sets.append(active_ids(homing.db))
            restart_s.append(homing.start())

        all_ids = set(published)
        assert wait_until(lambda: set(sink.ids()) >= all_ids, timeout=120, interval=0.1), (
            f"only {delivered()} of {messages} delivered"
        )
        time.sleep(0.5)  # let late duplicates (if any) arrive before counting
        homing.stop()
        final_states = state_counts(homing.db)
        final_integrity = integrity(homing.db)
    finally:
        homing.stop()
        deliveries = sink.deliveries()
        sink.close()

    seen = Counter(item[0] for item in deliveries)
    in_flight = set().union(*in_flight_sets)
    duplicated = {mid for mid, n in seen.items() if n > 1}
    lost = set(published) - set(seen)
    unknown = set(seen) - set(published)
    wrong_body = [item for item in deliveries if number_of.get(item[0]) != int(item[3])]
    print(
        f"\nkill during delivery: messages={messages} kills={kills} "
        f"kill_after_delivered={kill_points} in_flight_at_kill={[len(s) for s in in_flight_sets]} "
        f"deliveries={len(deliveries)} unique={len(seen)} duplicated={len(duplicated)} "
        f"duplicates_outside_in_flight={len(duplicated - in_flight)} lost={len(lost)} "
        f"unknown={len(unknown)} integrity={checks} final_integrity={final_integrity} "
        f"final_states={final_states} publish_s={publish_s:.1f} "
        f"restart_s={[round(s, 2) for s in restart_s]} total_s={time.monotonic() - started:.1f}"
    )
    assert checks == ["ok"] * kills
    assert all(point < messages for point in kill_points), "a kill came after delivery ended"
    assert final_integrity == "ok"
    assert lost == set(), f"{len(lost)} published messages were never delivered"
    assert unknown == set(), f"{len(unknown)} deliveries carried ids that were never published"
    assert wrong_body == []
    assert duplicated <= in_flight, (
        f"{len(duplicated - in_flight)} messages were delivered twice although no attempt of "
        "theirs was in flight at a kill"
    )
    assert final_states == {"delivered": messages}


@pytest.mark.timeout(300)
def test_sigkill_five_times_during_delivery_of_10000_messages(tmp_path: Path) -> None:
    run_kill_test(tmp_path, messages=10_000, kills=5, seed=random.randrange(1 << 30))


@pytest.mark.soak
@pytest.mark.skipif(not SOAK, reason=SOAK_REASON)
@pytest.mark.timeout(1800)
def test_soak_sigkill_twenty_times_during_delivery_of_100000_messages(tmp_path: Path) -> None:
    run_kill_test(tmp_path, messages=100_000, kills=20, seed=random.randrange(1 << 30))
