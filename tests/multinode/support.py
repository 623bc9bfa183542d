"""Processes and probes for the multi-node tests: `homing serve` nodes sharing one PostgreSQL
database, the fast sink, direct SQL on the shared schema, and a throwaway PostgreSQL cluster.

Nothing here talks to anything but 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import httpx

from tests.support.server import free_port, pg_execute, run_coroutine

SINK_SCRIPT = Path(__file__).with_name("sink.py")
# Read once at import: the autouse fixture of tests/conftest.py hides HOMING_* during each test.
SOAK = os.environ.get("HOMING_SOAK") == "1"
SOAK_REASON = "soak tier: set HOMING_SOAK=1 to run the long multi-node chaos tests"
LEASE_S = 30.0  # EngineSettings.lease_ms: what a killed node's claims wait for


def log(text: str) -> None:
    """Figures and progress: shown with `pytest -s`, and in the report of a failing test."""
    print(f"[multinode {time.strftime('%H:%M:%S')}] {text}", flush=True)


# -- SQL on a schema -----------------------------------------------------------------------


async def _fetch(url: str, sql: str, args: Sequence[Any]) -> list[dict[str, Any]]:
    import asyncpg  # type: ignore[import-untyped]

    conn = await asyncpg.connect(url, timeout=10)
    try:
        return [dict(r) for r in await conn.fetch(sql, *args)]
    finally:
        await conn.close()


class Sql:
    """Synchronous queries on the database (and schema) the nodes share."""

    def __init__(self, url: str) -> None:
        self.url = url

    def fetch(self, sql: str, *args: Any) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = run_coroutine(lambda: _fetch(self.url, sql, args))
        return rows

    def execute(self, *statements: str) -> None:
        run_coroutine(lambda: pg_execute(self.url, *statements))

    def state_counts(self) -> dict[str, int]:
        rows = self.fetch("SELECT state, count(*) AS n FROM messages GROUP BY state")
        return {r["state"]: r["n"] for r in rows}


# -- the sink ------------------------------------------------------------------------------


@dataclass
class Delivery:
    message_id: str
    schedule_id: str
    retried: int
    path: str
    body: str
    start_ms: int
    end_ms: int


class SinkProcess:
    """tests/multinode/sink.py in its own process; `deliveries()` reads what it received."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(SINK_SCRIPT)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
        )
        assert self.proc.stdout is not None
        self.port: int = json.loads(self.proc.stdout.readline())["port"]
        self.base = f"http://127.0.0.1:{self.port}"
        self._client = httpx.Client(base_url=self.base, timeout=30)
        self._items: list[Delivery] = []
        self.max_concurrent: dict[str, int] = {}

    def url(self, path: str) -> str:
        return self.base + path

    def deliveries(self) -> list[Delivery]:
        answer = self._client.get("/_deliveries", params={"since": len(self._items)}).json()
        self._items.extend(Delivery(*item) for item in answer["items"])
        self.max_concurrent = answer["max_concurrent"]
        return list(self._items)

    def close(self) -> None:
        self._client.close()
        self.proc.kill()
        self.proc.wait(10)


# -- Homing nodes --------------------------------------------------------------------------


@dataclass(frozen=True)
class Credentials:
    token: str = field(default_factory=lambda: "mn_" + secrets.token_urlsafe(24))
    current_key: str = field(default_factory=lambda: "sig_" + secrets.token_urlsafe(24))
    next_key: str = field(default_factory=lambda: "sig_" + secrets.token_urlsafe(24))

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


class Node:
    """`homing serve` as a subprocess on one database URL, with its own port and data dir;
    restartable after a kill (same port, same data dir). Output goes to `log_path`."""

    def __init__(
        self,
        name: str,
        database_url: str,
        workdir: Path,
        creds: Credentials,
        extra_args: Sequence[str] = (),
    ) -> None:
        self.name = name
        self.extra_args = list(extra_args)  # more `homing serve` flags
        self.database_url = database_url
        self.data_dir = workdir / f"{name}-data"
        self.log_path = workdir / f"{name}.log"  # stderr: the JSON log lines
        self.out_path = workdir / f"{name}.out"  # stdout: the start banner
        self.creds = creds
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._out: IO[bytes] | None = None
        self.starts = 0

    @property
    def command(self) -> list[str]:
        c = self.creds
        return [
            sys.executable, "-m", "homing", "serve", "--host", "127.0.0.1",
            "--port", str(self.port), "--data-dir", str(self.data_dir),
            "--database", self.database_url, "--token", c.token,
            "--current-signing-key", c.current_key, "--next-signing-key", c.next_key,
            "--allow-private-destinations", "--log-format", "json", "--metrics-path", "off",
            "--shutdown-timeout", "2", *self.extra_args,
        ]  # fmt: skip

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, timeout: float = 30) -> float:
        """Start and wait until /readyz answers 200; returns the seconds that took."""
        started = time.monotonic()
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in kill()/stop()
        self._out = open(self.out_path, "ab")  # noqa: SIM115 - closed in kill()/stop()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("HOMING_", "QSTASH_"))}
        self.proc = subprocess.Popen(self.command, stdout=self._out, stderr=self._log, env=env)
        self.starts += 1
        deadline = started + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"{self.name} exited during start:\n{self.log_tail()}")
            if self.ready():
                return time.monotonic() - started
            time.sleep(0.05)
        raise AssertionError(f"{self.name} not ready within {timeout} s:\n{self.log_tail()}")

    def ready(self) -> bool:
        try:
            return httpx.get(self.base_url + "/readyz", timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    def _closed(self) -> None:
        for f in (self._log, self._out):
            if f is not None:
                f.close()
        self._log = self._out = None

    def kill(self) -> None:
        """SIGKILL and reap."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
        self._closed()

    def stop(self) -> None:
        """SIGTERM, SIGKILL after a while; safe to call on a dead node."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._closed()

    def log_lines(self) -> list[str]:
        try:
            return self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return []

    def events(self, event: str) -> list[dict[str, Any]]:
        """The JSON log records of one event name, over every start of this node."""
        found = []
        for line in self.log_lines():
            if line.startswith("{") and f'"{event}"' in line:
                record = json.loads(line)
                if record.get("event") == event:
                    found.append(record)
        return found

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return "(no log)"
        return "\n".join(text[-lines:])

    def client(self, timeout: float = 30) -> httpx.Client:
        return httpx.Client(base_url=self.base_url, headers=self.creds.auth, timeout=timeout)


class Nodes:
    """Every node a test started; all stopped (or killed) by the fixture's finalizer."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.creds = Credentials()
        self.all: list[Node] = []

    def start(self, database_url: str, count: int, extra_args: Sequence[str] = ()) -> list[Node]:
        made = [
            Node(f"node{len(self.all) + i}", database_url, self.workdir, self.creds, extra_args)
            for i in range(count)
        ]
        self.all.extend(made)
        # Start together: they race for the migration lock, as a real rollout would.
        threads = [threading.Thread(target=n.start, daemon=True) for n in made]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        for n in made:
            if not n.ready():
                raise AssertionError(f"{n.name} did not start:\n{n.log_tail()}")
        return made

    def close(self) -> None:
        threads = [threading.Thread(target=n.stop, daemon=True) for n in self.all]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        for n in self.all:
            n.kill()


# -- waiting -------------------------------------------------------------------------------


def wait_until(predicate: Callable[[], bool], timeout: float, interval: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())


def percentile(values: Sequence[float], p: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


# -- a throwaway PostgreSQL cluster --------------------------------------------------------


def _pg_bin(name: str) -> str:
    found = shutil.which(name)
    if found:
        return found
    for folder in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (folder / name).exists():
            return str(folder / name)
    raise FileNotFoundError(f"{name} (PostgreSQL server binaries) not found")


class ThrowawayCluster:
    """A PostgreSQL cluster of the test's own (initdb in a temp dir, a spare port, its socket in
    that dir), stopped hard and started again at will; never the shared server.

    initdb and the server refuse to run as root: as root, they run as the `postgres` user
    (runuser), which owns the temp dir."""

    def __init__(self) -> None:
        self.base = Path(tempfile.mkdtemp(prefix="homing-mn-pg-"))
        self.data = self.base / "data"
        self.log_path = self.base / "postgres.log"
        self.port = free_port()
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        self._prefix: list[str] = []
        if os.geteuid() == 0:
            user = pwd.getpwnam("postgres")
            os.chown(self.base, user.pw_uid, user.pw_gid)
            self._prefix = ["runuser", "-u", "postgres", "--"]
        os.chmod(self.base, 0o755)

    def _run(self, *args: str, timeout: float = 60, check: bool = True) -> str:
        done = subprocess.run(
            [*self._prefix, *args], capture_output=True, text=True, timeout=timeout, cwd=self.base
        )
        if check and done.returncode != 0:
            raise AssertionError(f"{args[0]} failed ({done.returncode}): {done.stderr}")
        return done.stdout

    def init(self) -> None:
        self._run(
            _pg_bin("initdb"), "-D", str(self.data), "--auth=trust", "-U", "postgres",
            "-E", "UTF8", "--no-sync",
        )  # fmt: skip

    def start(self) -> float:
        started = time.monotonic()
        options = f"-p {self.port} -k {self.base} -c listen_addresses=127.0.0.1 -c fsync=on"
        self._run(
            _pg_bin("pg_ctl"), "-D", str(self.data), "-l", str(self.log_path), "-o", options,
            "-w", "-t", "60", "start",
        )  # fmt: skip
        return time.monotonic() - started

    def stop_immediate(self) -> None:
        """`pg_ctl stop -m immediate`: every backend dies at once, no checkpoint (a crash)."""
        self._run(_pg_bin("pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop")

    def running(self) -> bool:
        done = subprocess.run(
            [*self._prefix, _pg_bin("pg_ctl"), "-D", str(self.data), "status"],
            capture_output=True,
            cwd=self.base,
        )
        return done.returncode == 0

    def destroy(self) -> None:
        if self.data.exists() and self.running():
            self._run(
                _pg_bin("pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop",
                check=False,
            )  # fmt: skip
        shutil.rmtree(self.base, ignore_errors=True)
