"""Crash safety: `homing dev` killed with SIGKILL three times while messages flow loses none.

A real `homing dev` process, a real receiver, thousands of messages published in batches. The
publisher behaves like a careful client: every message carries a deduplication id, and a batch
whose answer was lost in a crash is sent again after the restart, so every message ends up with
exactly one acknowledged id. At the end every acknowledged message was delivered at least once,
nothing arrived that was never acknowledged, and the database passed `PRAGMA integrity_check`
after every kill.
"""

from __future__ import annotations

import http.server
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from contextlib import closing
from pathlib import Path
from typing import IO, Any

import httpx
import pytest

from tests.support.server import DEV_TOKEN, free_port

MESSAGES = 3000
BATCH = 50
PUBLISHERS = 4
KILLS = 3


class Sink:
    """A receiver that records (message id, body) of every delivery and always answers 200."""

    def __init__(self) -> None:
        self.deliveries: list[tuple[str, str]] = []
        self._lock = threading.Lock()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length).decode()
                with outer._lock:
                    outer.deliveries.append((self.headers.get("Upstash-Message-Id", ""), body))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        class Server(http.server.ThreadingHTTPServer):
            request_queue_size = 1024  # the engine opens hundreds of connections at once
            daemon_threads = True

            def handle_error(self, request: Any, client_address: Any) -> None:
                pass  # connections cut by the killed server are expected

        self._server = Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/m"
        threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True).start()

    def snapshot(self) -> list[tuple[str, str]]:
        with self._lock:
            return list(self.deliveries)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class HomingProcess:
    def __init__(self, data_dir: Path, log: IO[bytes]) -> None:
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.data_dir = data_dir
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None
        homing = Path(sys.executable).with_name("homing")
        self.command = [
            str(homing), "dev", "--port", str(self.port), "--data-dir", str(data_dir),
            "--log-level", "warning",
        ]  # fmt: skip

    def start(self) -> None:
        self.proc = subprocess.Popen(self.command, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.time() + 20
        while time.time() < deadline:
            assert self.proc.poll() is None, "homing dev exited during start"
            try:
                if httpx.get(self.base_url + "/healthz", timeout=0.5).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.02)
        raise AssertionError("homing dev did not start within 20 s")

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def integrity(db: Path) -> str:
    with closing(sqlite3.connect(db)) as conn:
        result: str = conn.execute("PRAGMA integrity_check").fetchone()[0]
        return result


class Publisher:
    """Sends every batch until it is acknowledged; records message number -> message id."""

    def __init__(self, base_url: str, destination: str) -> None:
        self.base_url = base_url
        self.destination = destination
        self.acked: dict[int, str] = {}
        self.acked_batches = 0
        self.resent = 0
        self.deduplicated = 0
        self.errors: list[str] = []
        self._lock = threading.Lock()
        self._next = 0

    def _take(self) -> int | None:
        with self._lock:
            if self._next >= MESSAGES:
                return None
            start = self._next
            self._next += BATCH
            return start

    def _items(self, start: int) -> list[dict[str, Any]]:
        return [
            {
                "destination": self.destination,
                "body": str(n),
                "headers": {
                    "Upstash-Deduplication-Id": f"kill-test-{n}",
                    "Upstash-Retries": "10",
                    "Upstash-Retry-Delay": "200",
                },
            }
            for n in range(start, min(start + BATCH, MESSAGES))
        ]

    def run(self) -> None:
        headers = {"Authorization": f"Bearer {DEV_TOKEN}"}
        with httpx.Client(base_url=self.base_url, headers=headers, timeout=10) as client:
            while (start := self._take()) is not None:
                items = self._items(start)
                attempts = 0
                while True:
                    attempts += 1
                    try:
                        answer = client.post("/v2/batch", json=items)
                    except httpx.TransportError:
                        time.sleep(0.05)  # the server is down: send the batch again later
                        continue
                    if answer.status_code >= 500:
                        time.sleep(0.05)
                        continue
                    if answer.status_code >= 300:
                        self.errors.append(f"{answer.status_code} {answer.text}")
                        return
                    break
                results = answer.json()
                with self._lock:
                    for item, result in zip(items, results, strict=True):
                        self.acked[int(item["body"])] = result["messageId"]
                        self.deduplicated += bool(result.get("deduplicated"))
                    self.acked_batches += 1
                    self.resent += attempts > 1


@pytest.mark.timeout(120)
def test_sigkill_during_publishing_and_delivery_loses_nothing(tmp_path: Path) -> None:
    started = time.time()
    rng = random.Random()
    sink = Sink()
    data_dir = tmp_path / "data"
    db = data_dir / "homing.db"
    log_path = tmp_path / "homing.log"
    batches = MESSAGES // BATCH
    kill_after = sorted(rng.sample(range(3, batches - 3), KILLS))
    checks: list[str] = []
    with open(log_path, "wb") as log:
        homing = HomingProcess(data_dir, log)
        homing.start()
        try:
            publisher = Publisher(homing.base_url, sink.url)
            threads = [threading.Thread(target=publisher.run) for _ in range(PUBLISHERS)]
            for t in threads:
                t.start()
            for threshold in kill_after:
                while publisher.acked_batches < threshold and any(t.is_alive() for t in threads):
                    time.sleep(0.002)
                time.sleep(rng.uniform(0, 0.05))
                homing.kill()
                checks.append(integrity(db))
                homing.start()
            for t in threads:
                t.join(60)
            assert publisher.errors == []
            assert len(publisher.acked) == MESSAGES

            acked_ids = set(publisher.acked.values())
            deadline = time.time() + 45
            while time.time() < deadline:
                if acked_ids <= {mid for mid, _ in sink.snapshot()}:
                    break
                time.sleep(0.05)
            time.sleep(0.2)  # let stragglers (duplicates) arrive before counting
        finally:
            homing.stop()
            sink.close()

    deliveries = sink.snapshot()
    delivered_ids = {mid for mid, _ in deliveries}
    lost = acked_ids - delivered_ids
    unknown = delivered_ids - acked_ids
    mismatched = [(mid, body) for mid, body in deliveries if publisher.acked.get(int(body)) != mid]
    print(
        f"\nkill test: acknowledged={len(acked_ids)} delivered={len(delivered_ids)} "
        f"deliveries={len(deliveries)} duplicates={len(deliveries) - len(delivered_ids)} "
        f"lost={len(lost)} unknown={len(unknown)} batches_resent={publisher.resent} "
        f"deduplicated_on_resend={publisher.deduplicated} kills_after_batches={kill_after} "
        f"integrity={checks} seconds={time.time() - started:.1f}"
    )
    assert checks == ["ok"] * KILLS
    assert len(acked_ids) == MESSAGES  # one id per message, even for batches sent twice
    assert lost == set(), f"{len(lost)} acknowledged messages were never delivered"
    assert unknown == set(), f"{len(unknown)} deliveries carried ids never acknowledged"
    assert mismatched == []
