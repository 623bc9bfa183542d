"""Processes for the reliability tests: `homing` as a real subprocess, the fast sink, and probes.

Nothing here talks to anything but 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from contextlib import closing
from pathlib import Path
from typing import IO, Any

import httpx

from tests.support.http import AUTH
from tests.support.server import free_port

SINK_SCRIPT = Path(__file__).with_name("sink.py")
HOMING = Path(sys.executable).with_name("homing")
# HOMING_SOAK is read once at import: the autouse fixture of tests/conftest.py removes every
# HOMING_* variable from the environment before each test runs.
SOAK = os.environ.get("HOMING_SOAK") == "1"
SOAK_REASON = "soak tier: set HOMING_SOAK=1 to run the long versions of these tests"


class SinkProcess:
    """tests/reliability/sink.py in its own process; read what it received with `deliveries()`."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(SINK_SCRIPT)],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        assert self.proc.stdout is not None
        ports = json.loads(self.proc.stdout.readline())
        self.port: int = ports["port"]
        self.silent_port: int = ports["silent_port"]
        self.base = f"http://127.0.0.1:{self.port}"
        self._client = httpx.Client(base_url=self.base, timeout=30)
        self._items: list[list[Any]] = []

    def url(self, path: str) -> str:
        return self.base + path

    @property
    def silent_url(self) -> str:
        return f"http://127.0.0.1:{self.silent_port}/never"

    def deliveries(self) -> list[list[Any]]:
        """Every request so far: [message id, Upstash-Retried, path, body, receive time ms,
        Upstash-Signature, raw path and query]."""
        answer = self._client.get("/_deliveries", params={"since": len(self._items)}).json()
        self._items.extend(answer["items"])
        return list(self._items)

    def ids(self) -> list[str]:
        return [item[0] for item in self.deliveries()]

    def close(self) -> None:
        self._client.close()
        self.proc.kill()
        self.proc.wait(10)


class HomingProcess:
    """`homing dev|serve` as a subprocess on a fixed data dir; restartable after a kill."""

    def __init__(
        self,
        data_dir: Path,
        log_path: Path,
        *,
        mode: str = "dev",
        extra: Sequence[str] = (),
        executable: Path | None = None,
    ) -> None:
        self.executable = executable or HOMING
        # Another installation of homing (a test of the wheel) must run its own code, not the
        # checkout that PYTHONPATH may point at.
        self._drop = ("HOMING_", "QSTASH_") + (("PYTHONPATH",) if executable else ())
        self.data_dir = data_dir
        self.db = data_dir / "homing.db"
        self.log_path = log_path
        self.mode = mode
        self.extra = list(extra)
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self.starts = 0

    @property
    def command(self) -> list[str]:
        return [
            str(self.executable),
            self.mode,
            "--port",
            str(self.port),
            "--data-dir",
            str(self.data_dir),
            "--metrics-path",
            "off",
            *self.extra,
        ]

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self, timeout: float = 30) -> float:
        """Start and wait until /healthz answers; returns the seconds that took."""
        started = time.monotonic()
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()/kill()
        self._log.write(f"\n--- start {self.starts} ---\n".encode())
        self._log.flush()
        env = {k: v for k, v in os.environ.items() if not k.startswith(self._drop)}
        self.proc = subprocess.Popen(
            self.command, stdout=self._log, stderr=subprocess.STDOUT, env=env
        )
        self.starts += 1
        deadline = started + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"homing exited during start; see {self.log_path}")
            try:
                if httpx.get(self.base_url + "/healthz", timeout=0.5).status_code == 200:
                    return time.monotonic() - started
            except httpx.TransportError:
                pass
            time.sleep(0.02)
        raise AssertionError(f"homing did not start within {timeout} s")

    def _closed(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)
        self._closed()

    def terminate(self, timeout: float = 60) -> float:
        """SIGTERM and wait for the exit; returns the seconds the shutdown took."""
        assert self.proc is not None
        started = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout)
        self._closed()
        return time.monotonic() - started

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._closed()

    def rss_mib(self) -> float:
        """Resident memory of the running process, from /proc/<pid>/status."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return 0.0

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")


class RssMonitor:
    """Samples a process's RSS every 50 ms in a thread; `peak_mib` is the highest seen."""

    def __init__(self, homing: HomingProcess) -> None:
        self.homing = homing
        self.peak_mib = 0.0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.peak_mib = max(self.peak_mib, self.homing.rss_mib())
                self.samples += 1
            except (OSError, AssertionError):
                pass
            self._stop.wait(0.05)

    def __enter__(self) -> RssMonitor:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)


def integrity(db: Path) -> str:
    with closing(sqlite3.connect(db)) as conn:
        result: str = conn.execute("PRAGMA integrity_check").fetchone()[0]
        return result


def rows(db: Path, sql: str, args: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
    with closing(sqlite3.connect(db)) as conn:
        return list(conn.execute(sql, args).fetchall())


def active_ids(db: Path) -> set[str]:
    """Messages whose attempt was running (claimed, outcome not yet committed)."""
    return {r[0] for r in rows(db, "SELECT id FROM messages WHERE state = 'active'")}


def state_counts(db: Path) -> dict[str, int]:
    return dict(rows(db, "SELECT state, count(*) FROM messages GROUP BY state"))  # type: ignore[arg-type]


def publish_batches(
    base_url: str, items: list[dict[str, Any]], *, per_request: int = 100
) -> list[str]:
    """POST /v2/batch in chunks; returns the message ids in item order."""
    ids: list[str] = []
    with httpx.Client(base_url=base_url, headers=AUTH, timeout=30) as client:
        for start in range(0, len(items), per_request):
            answer = client.post("/v2/batch", json=items[start : start + per_request])
            assert answer.status_code == 201, answer.text
            ids.extend(r["messageId"] for r in answer.json())
    return ids
