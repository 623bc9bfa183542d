"""`homing backup` while the server runs and publishes flow, then `homing restore` and a server on
the restored store.

`homing dev` runs as a subprocess; its store first gets ~4 MB of delivered messages, so that the
backup has something to copy. A client thread keeps enqueueing into a paused queue (stored, not
yet delivered) before, during and after `homing backup --to FILE`, run as an operator would.

What this asserts:

* the backup holds every message acknowledged before the backup began, and none whose publish
  was sent after it ended: it is one consistent instant of the store;
* publishes go on during the backup (the server is neither stopped nor slowed to a halt);
* `homing restore` refuses a non-empty data directory and a file that is not a Homing store,
  and copies the backup into an empty one;
* a server started on the restored store delivers the held messages once the queue resumes.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from contextlib import closing
from pathlib import Path

import httpx
import pytest

from tests.reliability.support import HomingProcess, SinkProcess, publish_batches, rows
from tests.support.cli import run_homing
from tests.support.http import AUTH
from tests.support.waiting import wait_until

pytestmark = pytest.mark.sqlite_only("backs up and restores the SQLite store's file")

BULK = 1000  # delivered messages of 4 KiB, so that the backup has megabytes to copy


class Enqueuer:
    """Enqueues into the paused queue `held` until stopped; when each answer came back."""

    def __init__(self, base_url: str, destination: str) -> None:
        self.base_url = base_url
        self.destination = destination
        self.acknowledged: list[tuple[float, float, str]] = []  # (sent, answered, message id)
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with httpx.Client(base_url=self.base_url, headers=AUTH, timeout=10) as client:
            n = 0
            while not self._stop.is_set():
                sent = time.monotonic()
                answer = client.post(f"/v2/enqueue/held/{self.destination}", content=f"held-{n}")
                if answer.status_code == 201:
                    self.acknowledged.append((sent, time.monotonic(), answer.json()["messageId"]))
                else:
                    self.failures.append(f"{answer.status_code} {answer.text}")
                n += 1

    def __enter__(self) -> Enqueuer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(15)


def test_a_backup_taken_under_traffic_restores_every_acknowledged_message(tmp_path: Path) -> None:
    sink = SinkProcess()
    original = HomingProcess(tmp_path / "data", tmp_path / "original.log")
    restored = HomingProcess(tmp_path / "restored", tmp_path / "restored.log")
    backup_file = tmp_path / "homing-backup.db"
    try:
        original.start()
        bulk = [{"destination": sink.url("/bulk"), "body": "b" * 4096} for _ in range(BULK)]
        bulk_ids = publish_batches(original.base_url, bulk)
        assert wait_until(lambda: set(bulk_ids) <= set(sink.ids()), timeout=30)
        with httpx.Client(base_url=original.base_url, headers=AUTH, timeout=10) as client:
            answer = client.post("/v2/queues", json={"queueName": "held", "parallelism": 20})
            assert answer.status_code == 200
            assert client.post("/v2/queues/held/pause").status_code == 200

        with Enqueuer(original.base_url, sink.url("/held")) as enqueuer:
            assert wait_until(lambda: len(enqueuer.acknowledged) >= 50, timeout=10)
            began = time.monotonic()
            done = run_homing(
                "backup", "--data-dir", str(original.data_dir), "--to", str(backup_file)
            )
            ended = time.monotonic()
            assert wait_until(
                lambda: any(sent > ended for sent, _, _ in enqueuer.acknowledged), timeout=10
            )
        assert done.returncode == 0, done.stderr
        assert f"to {backup_file}" in done.stdout
        assert enqueuer.failures == []

        before = {m for _, answered, m in enqueuer.acknowledged if answered < began}
        during = [
            m for sent, answered, m in enqueuer.acknowledged if began < sent and answered < ended
        ]
        after = {m for sent, _, m in enqueuer.acknowledged if sent > ended}
        in_backup = {m for (m,) in rows(backup_file, "SELECT id FROM messages")}
        assert before <= in_backup, f"{len(before - in_backup)} acknowledged messages missing"
        assert not after & in_backup, "the backup holds messages published after it ended"
        assert during, "no publish was answered while the backup ran"
        with closing(sqlite3.connect(backup_file)) as conn:
            assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"

        # Restore: refused onto a store, refused from a file that is not a Homing store.
        refused = run_homing(
            "restore", "--from", str(backup_file), "--data-dir", str(original.data_dir)
        )
        assert refused.returncode == 1
        assert f"the data directory {original.data_dir} is not empty" in refused.stderr
        (tmp_path / "notes.txt").write_text("not a database, just words " * 100)
        with closing(sqlite3.connect(tmp_path / "other.db")) as other:
            other.execute("CREATE TABLE t (x)")
        for bogus, says in (
            ("notes.txt", "is not an SQLite database"),
            ("other.db", "is not a Homing store"),
        ):
            refused = run_homing(
                "restore", "--from", str(tmp_path / bogus), "--data-dir", str(tmp_path / "x")
            )
            assert refused.returncode == 1 and says in refused.stderr, refused.stderr
            assert not (tmp_path / "x").exists()
        original.stop()

        done = run_homing(
            "restore", "--from", str(backup_file), "--data-dir", str(restored.data_dir)
        )
        assert done.returncode == 0, done.stderr
        assert f"{len(in_backup)} messages" in done.stdout

        # A server on the restored store delivers what the backup held.
        restored.start()
        with httpx.Client(base_url=restored.base_url, headers=AUTH, timeout=10) as client:
            assert client.post("/v2/queues/held/resume").status_code == 200
        held_in_backup = in_backup - set(bulk_ids)
        assert wait_until(lambda: held_in_backup <= set(sink.ids()), timeout=30), (
            f"{len(held_in_backup - set(sink.ids()))} restored messages were not delivered"
        )
        print(
            f"\nbackup under traffic: {len(before)} acknowledged before the backup began, all "
            f"in it; {len(during)} answered during the {ended - began:.2f} s backup command; "
            f"{len(held_in_backup)} held messages delivered from the restored store"
        )
    finally:
        original.stop()
        restored.stop()
        sink.close()
