"""Hostile destinations cannot hold Homing's attempts past their timeout or blow up its memory.

One `homing dev` subprocess, its resident memory sampled from /proc every 50 ms, and at once:

* 1,000 messages with `Upstash-Timeout: 2s` to one server that accepts connections and never
  answers (it never even reads);
* 3 messages (timeout 3 s) to a receiver that answers 200 and then drips one body byte a second;
* 3 messages (timeout 10 s) to a receiver that answers 200 with a 100 MiB body, and 3 to one
  that answers 500 with a 100 MiB body.

Every attempt ends within its timeout + 1 s, measured from its ACTIVE log entry to the entry that
ends it (ERROR, or DELIVERED for the 200 flood, whose first 256 KiB are all Homing reads), and
the process stays under 300 MiB. The 500 flood's DLQ entry keeps at most 256 KiB of the body.
The soak tier (HOMING_SOAK=1) runs 10,000 hanging destinations.
"""

from __future__ import annotations

import time
from collections import defaultdict
from pathlib import Path

import httpx
import pytest

from tests.reliability.support import (
    SOAK,
    SOAK_REASON,
    HomingProcess,
    RssMonitor,
    SinkProcess,
    publish_batches,
)
from tests.support.http import AUTH, log_entries
from tests.support.waiting import wait_until

HANGING = 1000
RSS_LIMIT_MIB = 300
MAX_RESPONSE_BYTES = 256 * 1024


def _items(url: str, count: int, timeout: str) -> list[dict[str, object]]:
    return [
        {
            "destination": url,
            "body": f"hostile-{n}",
            "headers": {"Upstash-Timeout": timeout, "Upstash-Retries": "0"},
        }
        for n in range(count)
    ]


@pytest.mark.timeout(300)
def test_hanging_dripping_and_flooding_destinations_are_cut_at_their_timeout(
    tmp_path: Path,
) -> None:
    run_hostile(tmp_path, hanging=HANGING)


@pytest.mark.soak
@pytest.mark.skipif(not SOAK, reason=SOAK_REASON)
@pytest.mark.timeout(900)
def test_soak_ten_thousand_hanging_destinations(tmp_path: Path) -> None:
    run_hostile(tmp_path, hanging=10 * HANGING)


def run_hostile(tmp_path: Path, *, hanging: int) -> None:
    started = time.monotonic()
    sink = SinkProcess()
    homing = HomingProcess(
        tmp_path / "data", tmp_path / "homing.log", extra=["--log-level", "warning"]
    )
    try:
        homing.start()
        idle_rss = homing.rss_mib()
        with RssMonitor(homing) as rss:
            groups = {
                "hang": (
                    publish_batches(homing.base_url, _items(sink.silent_url, hanging, "2s")),
                    2,
                ),
                "drip": (publish_batches(homing.base_url, _items(sink.url("/drip"), 3, "3s")), 3),
                "flood200": (
                    publish_batches(homing.base_url, _items(sink.url("/flood"), 3, "10s")),
                    10,
                ),
                "flood500": (
                    publish_batches(
                        homing.base_url, _items(sink.url("/flood?status=500"), 3, "10s")
                    ),
                    10,
                ),
            }
            every = {mid for ids, _ in groups.values() for mid in ids}

            def finished() -> set[str]:
                done = {e["messageId"] for e in log_entries(homing.base_url, state="DELIVERED")}
                return done | {e["messageId"] for e in log_entries(homing.base_url, state="FAILED")}

            assert wait_until(lambda: finished() >= every, timeout=60 + hanging / 50, interval=0.5)
        entries: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(list))
        errors: dict[str, str] = {}
        for e in log_entries(homing.base_url):
            entries[e["messageId"]][e["state"]].append(e["time"])
            if e["state"] == "ERROR":
                errors[e["messageId"]] = e.get("error", "")
        with httpx.Client(base_url=homing.base_url, headers=AUTH) as client:
            dlq = client.get("/v2/dlq", params={"url": sink.url("/flood?status=500")}).json()
    finally:
        homing.stop()
        sink.close()

    figures: dict[str, str] = {}
    too_long: list[tuple[str, str, int]] = []
    for name, (ids, timeout_s) in groups.items():
        spans = []
        for mid in ids:
            [active] = entries[mid]["ACTIVE"]
            end = min(entries[mid]["ERROR"] + entries[mid]["DELIVERED"])
            spans.append(end - active)
            if end - active > (timeout_s + 1) * 1000:
                too_long.append((name, mid, end - active))
        spans.sort()
        figures[name] = (
            f"n={len(ids)} timeout={timeout_s}s attempt_ms(median={spans[len(spans) // 2]} "
            f"max={spans[-1]})"
        )
    hang_errors = {errors.get(mid, "")[:40] for mid in groups["hang"][0]}
    body_kept = [len(m.get("responseBody", "")) for m in dlq["messages"]]
    print(
        f"\nhostile destinations: {figures} rss_mib(idle={idle_rss:.0f} peak={rss.peak_mib:.0f} "
        f"samples={rss.samples}) hang_errors={sorted(hang_errors)} "
        f"flood500_dlq_body_bytes={body_kept} seconds={time.monotonic() - started:.1f}"
    )
    assert too_long == [], f"{len(too_long)} attempts outlived their timeout + 1 s: {too_long[:5]}"
    assert rss.peak_mib < RSS_LIMIT_MIB
    assert all(e.startswith("timed out after") for e in hang_errors)
    assert all(entries[mid]["DELIVERED"] for mid in groups["flood200"][0])
    assert len(body_kept) == 3 and all(0 < n <= MAX_RESPONSE_BYTES for n in body_kept)
