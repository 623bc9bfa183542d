"""A full disk and a read-only data directory, on a small filesystem of the test's own.

`homing dev` runs as a subprocess with its data directory on a 32 MiB tmpfs that the test mounts
(so it needs root: skipped otherwise, but under `CI=true` it fails instead, so that CI never
silently loses it). A filler file then takes every free byte.

What an operator would notice while the disk is full, and what this asserts:

* publishes are answered `507` with a JSON error that says the disk is full (never a 500);
* `/readyz` answers 503 and names the cause;
* messages stored before the disk filled up are still delivered (the writer gives back a reserve
  file it kept for this, and refuses only what would store new data);
* once the filler is removed, `/readyz` turns 200 and publishes succeed again, without a restart;
* every publish that was acknowledged is delivered, and `PRAGMA integrity_check` says ok.

And at start on a read-only data directory: a one-line error naming the directory, a non-zero
exit code, and not one file created or changed.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.reliability.support import HomingProcess, SinkProcess, integrity
from tests.support.cli import run_homing
from tests.support.http import AUTH
from tests.support.server import free_port
from tests.support.waiting import wait_until

pytestmark = pytest.mark.sqlite_only("fills the filesystem under the SQLite store")

FILESYSTEM = "32m"
STORED_BEFORE = 200  # messages waiting in a paused queue when the disk fills up


@pytest.fixture
def small_filesystem(tmp_path: Path) -> Iterator[Path]:
    """A fresh 32 MiB tmpfs, unmounted afterwards."""
    if os.geteuid() != 0:
        reason = "mounting a size-limited tmpfs needs root"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason}; CI must run this test as root")
        pytest.skip(reason)
    mount_point = tmp_path / "fs"
    mount_point.mkdir()
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={FILESYSTEM},mode=0755", "tmpfs", str(mount_point)],
        check=True,
    )
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "--lazy", str(mount_point)], check=False)


def _fill(path: Path) -> int:
    """Write `path` until the filesystem has no byte left; the bytes written."""
    written = 0
    chunk = bytes(1 << 16)
    with open(path, "wb", buffering=0) as filler:
        while True:
            try:
                written += filler.write(chunk)
            except OSError:
                break
    with open(path, "ab", buffering=0) as filler:  # the last partial block
        for size in (4096, 512, 1):
            while True:
                try:
                    written += filler.write(bytes(size))
                except OSError:
                    break
    return written


def test_a_full_disk_refuses_publishes_keeps_delivering_and_recovers_by_itself(
    small_filesystem: Path, tmp_path: Path
) -> None:
    sink = SinkProcess()
    homing = HomingProcess(small_filesystem / "data", tmp_path / "homing.log")
    try:
        homing.start()
        client = httpx.Client(base_url=homing.base_url, headers=AUTH, timeout=10)
        # Stored but not yet delivered when the disk fills up: a paused queue holds them.
        assert client.post("/v2/queues", json={"queueName": "held"}).status_code == 200
        assert client.post("/v2/queues/held/pause").status_code == 200
        held = [
            client.post(f"/v2/enqueue/held/{sink.url('/held')}", content=f"held-{n}").json()[
                "messageId"
            ]
            for n in range(STORED_BEFORE)
        ]
        filled = _fill(small_filesystem / "filler")

        # Publish until the store says the disk is full. SQLite may still find a few free
        # pages first: those publishes are acknowledged and must be delivered like any other.
        acknowledged: list[str] = []
        refusals: list[httpx.Response] = []
        for n in range(400):
            answer = client.post(f"/v2/publish/{sink.url('/during')}", content=f"during-{n}")
            if answer.status_code == 201:
                acknowledged.append(answer.json()["messageId"])
            else:
                refusals.append(answer)
                if len(refusals) >= 20:
                    break
        assert len(refusals) >= 20, "the disk never filled up"
        assert {r.status_code for r in refusals} == {507}, [r.text for r in refusals[:3]]
        assert all("the disk is full" in r.json()["error"] for r in refusals)

        ready = client.get("/readyz")
        assert ready.status_code == 503
        assert "the disk is full" in ready.json()["problems"]["storage.writes"]

        # What is stored is still delivered while the disk stays full.
        assert client.post("/v2/queues/held/resume").status_code == 200
        stored = set(held) | set(acknowledged)
        assert wait_until(lambda: stored <= set(sink.ids()), timeout=20), (
            f"{len(stored - set(sink.ids()))} of {len(stored)} stored messages were not "
            "delivered while the disk was full"
        )
        assert client.get("/readyz").status_code == 503
        assert client.post(f"/v2/publish/{sink.url('/x')}", content="x").status_code == 507

        # Space comes back: everything resumes without a restart.
        (small_filesystem / "filler").unlink()
        freed = time.monotonic()
        assert wait_until(lambda: client.get("/readyz").status_code == 200, timeout=10)
        resumed_s = time.monotonic() - freed
        after = client.post(f"/v2/publish/{sink.url('/after')}", content="after")
        assert after.status_code == 201, after.text
        assert wait_until(lambda: after.json()["messageId"] in sink.ids(), timeout=10)
        print(
            f"\nfull disk: filler {filled >> 20} MiB; {len(acknowledged)} publishes acknowledged "
            f"after the filler, {len(refusals)} refused with 507; {len(stored)} stored messages "
            f"delivered while full, 0 lost; ready again {resumed_s:.2f} s after space was freed"
        )
        client.close()
    finally:
        homing.stop()
        sink.close()
    assert integrity(homing.db) == "ok"
    assert "Traceback" not in homing.log_text().split("disk space is back")[-1]


def _snapshot(folder: Path) -> dict[str, tuple[int, float, str]]:
    return {
        str(p.relative_to(folder)): (
            p.stat().st_size,
            p.stat().st_mtime,
            hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "",
        )
        for p in sorted(folder.rglob("*"))
    }


def test_a_read_only_data_directory_stops_the_start_with_a_clear_error(
    small_filesystem: Path, tmp_path: Path
) -> None:
    # A store made by an earlier run, then the filesystem turns read-only.
    homing = HomingProcess(small_filesystem / "data", tmp_path / "homing.log")
    homing.start()
    homing.terminate()
    subprocess.run(["mount", "-o", "remount,ro", str(small_filesystem)], check=True)
    before = _snapshot(small_filesystem)

    for data_dir in (small_filesystem / "data", small_filesystem / "new"):
        done = run_homing("dev", "--port", str(free_port()), "--data-dir", str(data_dir))
        assert done.returncode != 0
        output = done.stdout + done.stderr
        assert f"cannot write to the data directory {data_dir}: Read-only file system" in output
        assert "Traceback" not in output
    assert _snapshot(small_filesystem) == before
