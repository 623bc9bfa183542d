"""Run Homing and an example app as real subprocesses, configured only through env vars."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from tests.support.server import DEV_CURRENT_KEY, DEV_NEXT_KEY, DEV_TOKEN, free_port

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
HOMING_BIN = ROOT / ".venv" / "bin" / "homing"

Entry = dict[str, Any]


class Process:
    """A subprocess in its own process group, its output in a file."""

    def __init__(self, name: str, argv: Sequence[str], *, cwd: Path, env: dict[str, str],
                 log_path: Path) -> None:  # fmt: skip
        self.name = name
        self.log_path = log_path
        self._log = log_path.open("wb")
        self.proc = subprocess.Popen(
            list(argv), cwd=cwd, env=env, stdout=self._log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip

    def output(self, lines: int = 40) -> str:
        text = self.log_path.read_text(errors="replace").splitlines()
        return f"--- last output of {self.name} ---\n" + "\n".join(text[-lines:])

    def wait_ready(self, url: str, timeout: float = 30.0, **kw: Any) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited with {self.proc.returncode}\n{self.output()}"
                )
            try:
                if httpx.get(url, timeout=1.0, **kw).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"{self.name} not ready at {url} after {timeout}s\n{self.output()}")

    def stop(self) -> None:
        """Stop the whole process group this process leads (npm -> tsx -> node)."""
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
            except ProcessLookupError:
                pass
        self._log.close()


def base_env() -> dict[str, str]:
    """Just enough of the environment to find the tools; no HOMING_* or QSTASH_* leaks in."""
    return {k: v for k in ("PATH", "HOME", "LANG", "TMPDIR") if (v := os.environ.get(k))}


@contextmanager
def running_homing(data_dir: Path) -> Iterator[tuple[str, Process]]:
    port = free_port()
    argv = [str(HOMING_BIN), "dev", "--port", str(port), "--data-dir", str(data_dir),
            "--backoff-scale", "0.01", "--log-level", "info"]  # fmt: skip
    proc = Process("homing", argv, cwd=data_dir, env=base_env(), log_path=data_dir / "homing.log")
    base = f"http://127.0.0.1:{port}"
    try:
        proc.wait_ready(f"{base}/v2/keys", headers={"Authorization": f"Bearer {DEV_TOKEN}"})
        yield base, proc
    finally:
        proc.stop()


class ExampleApp:
    """A running example app plus the Homing it talks to."""

    def __init__(self, base_url: str, homing_url: str, procs: Sequence[Process]) -> None:
        self.base_url = base_url
        self.homing_url = homing_url
        self.procs = procs
        self.http = httpx.Client(base_url=base_url, timeout=10.0)

    def diagnostics(self) -> str:
        return "\n".join(p.output() for p in self.procs)

    def trigger(self, path: str, body: dict[str, Any] | None = None) -> Any:
        res = self.http.post(f"/api/trigger/{path}", json=body or {})
        assert res.status_code in (200, 201, 202), f"{path}: {res.status_code} {res.text}"
        return res.json()

    def log(self) -> list[Entry]:
        entries: list[Entry] = self.http.get("/__test/log").json()["entries"]
        return entries

    def wait_for(
        self, what: str, select: Callable[[Entry], bool], count: int = 1, timeout: float = 10.0
    ) -> list[Entry]:
        """Poll the app's test log until `count` entries match `select`; return the matches."""
        deadline = time.monotonic() + timeout
        while True:
            found = [e for e in self.log() if select(e)]
            if len(found) >= count:
                return found
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"expected {count} x {what}, got {len(found)}: {found}\n{self.diagnostics()}"
                )
            time.sleep(0.05)

    def close(self) -> None:
        self.http.close()


@contextmanager
def running_example(
    name: str, argv: Sequence[str], *, cwd: Path, tmp: Path, sdk_dev_mode: bool = False
) -> Iterator[ExampleApp]:
    """Start Homing, then the example app with only the documented env vars pointing at it.

    With `sdk_dev_mode` the app gets `QSTASH_DEV=true` (and `QSTASH_DEV_PORT`) instead of the
    four QStash variables: the TypeScript SDK must find Homing by itself.
    """
    homing_dir = tmp / "homing"
    homing_dir.mkdir()
    with running_homing(homing_dir) as (homing_url, homing):
        port = free_port()
        app_url = f"http://127.0.0.1:{port}"
        env = base_env() | {"PORT": str(port), "APP_URL": app_url, "TASKS_TEST_LOG": "1"}
        if sdk_dev_mode:
            env |= {"QSTASH_DEV": "true", "QSTASH_DEV_PORT": homing_url.rsplit(":", 1)[1]}
        else:
            env |= {
                "QSTASH_URL": homing_url,
                "QSTASH_TOKEN": DEV_TOKEN,
                "QSTASH_CURRENT_SIGNING_KEY": DEV_CURRENT_KEY,
                "QSTASH_NEXT_SIGNING_KEY": DEV_NEXT_KEY,
            }
        app = Process(name, argv, cwd=cwd, env=env, log_path=tmp / f"{name}.log")
        example = ExampleApp(app_url, homing_url, [homing, app])
        try:
            app.wait_ready(f"{app_url}/health", timeout=60)
            yield example
        finally:
            example.close()
            app.stop()
