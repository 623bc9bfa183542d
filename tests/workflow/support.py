"""The workflow apps (TypeScript and Python, real SDKs from the registries) as subprocesses, and
what a test asks them: start a run, cancel it, read what each run saw.

Both apps record in memory and expose `/__test/events` (steps executed, call results, failure
functions, completions, errors) and `/__test/deliveries` (every request Homing made to a
workflow route, with the app's own verdict on its signature). Nothing here leaves 127.0.0.1.
"""

from __future__ import annotations

import os
import secrets
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from qstash import QStash

from tests.examples.harness import Process, base_env
from tests.multinode.support import Credentials
from tests.reliability.support import HomingProcess
from tests.support.receiver import Reply
from tests.support.server import (
    DEV_CURRENT_KEY,
    DEV_NEXT_KEY,
    DEV_TOKEN,
    PostgresSchemas,
    free_port,
)

HERE = Path(__file__).resolve().parent
EXAMPLE_DIR = HERE.parents[1] / "examples" / "workflow-hono"
TS_DIR = HERE / "ts"
PY_DIR = HERE / "py_app"
IN_CI = bool(os.environ.get("CI"))  # read at import: tests/conftest.py hides variables later

Entry = dict[str, Any]

# The third party that `context.call` reaches (a receiver in the test) and its answer, which
# must come back to the workflow unchanged.
THIRD_PARTY_PATH = "/third-party"
THIRD_PARTY_REPLY = Reply(
    201,
    b'{"echoed":true,"greeting":"hello"}',
    {"X-Reply": "from-receiver", "Content-Type": "application/json"},
)


def require_ts_app(app_dir: Path = TS_DIR) -> None:
    """Skip when the app's packages are not installed; fail instead under CI."""
    missing = None
    if shutil.which("npm") is None:
        missing = "npm is not installed"
    elif not (app_dir / "node_modules" / ".bin" / "tsx").exists():
        missing = f"{app_dir}/node_modules is missing (run scripts/install)"
    if missing:
        if IN_CI:
            pytest.fail(f"{missing}; CI must install it")
        pytest.skip(missing)


def qstash_env(homing_url: str, token: str = DEV_TOKEN, current: str = DEV_CURRENT_KEY,
               next_: str = DEV_NEXT_KEY) -> dict[str, str]:  # fmt: skip
    """The variables the SDK docs tell a user to set, pointing at a Homing."""
    return {
        "QSTASH_URL": homing_url,
        "QSTASH_TOKEN": token,
        "QSTASH_CURRENT_SIGNING_KEY": current,
        "QSTASH_NEXT_SIGNING_KEY": next_,
    }


def homing_tail(homing: HomingProcess, lines: int = 40) -> str:
    """The end of a Homing process's output, for a failing test's message."""
    text = homing.log_text().splitlines()[-lines:]
    return "--- last output of homing ---\n" + "\n".join(text)


def dev_mode_env(homing_url: str) -> dict[str, str]:
    """The SDK's development settings: it finds the dev server (Homing) on QSTASH_DEV_PORT."""
    return {"QSTASH_DEV": "true", "QSTASH_DEV_PORT": homing_url.rsplit(":", 1)[1]}


class WorkflowApp:
    """A running workflow app: start runs, cancel them, read what they saw."""

    def __init__(self, process: Process, base_url: str, diagnostics: Callable[[], str]) -> None:
        self.process = process
        self.base_url = base_url
        self._diagnostics = diagnostics
        self.http = httpx.Client(base_url=base_url, timeout=15.0)

    def diagnostics(self) -> str:
        return self.process.output(60) + "\n" + self._diagnostics()

    def url(self, workflow: str) -> str:
        return f"{self.base_url}/wf/{workflow}"

    def trigger(self, workflow: str, body: Any = None, *, retries: int | None = None,
                failure_url: str | None = None) -> str:  # fmt: skip
        """Start a run with the SDK's `client.trigger` (TypeScript app); returns its run id."""
        answer = self.http.post(
            "/admin/trigger",
            json={
                "workflow": workflow,
                "body": body,
                "retries": retries,
                "failureUrl": failure_url,
            },
        )
        assert answer.status_code == 200, f"trigger {workflow}: {answer.status_code} {answer.text}"
        run_id: str = answer.json()["workflowRunId"]
        return run_id

    def publish_run(self, qstash: QStash, workflow: str, body: dict[str, Any]) -> str:
        """Start a run as the Python SDK expects (it has no client): publish the payload to the
        workflow route through Homing. Returns the run id the SDK chose, found by a unique tag
        in the payload once the run's first step is delivered."""
        tag = secrets.token_hex(8)
        qstash.message.publish_json(url=self.url(workflow), body=body | {"tag": tag})
        [first] = self.wait_for(
            f"first step of the {workflow} run {tag}",
            lambda: [e for e in self.events(kind="invoked") if e.get("tag") == tag][:1],
        )
        run_id: str = first["runId"]
        return run_id

    def cancel(self, run_ids: list[str]) -> Any:
        answer = self.http.post("/admin/cancel", json={"ids": run_ids})
        assert answer.status_code == 200, f"cancel: {answer.status_code} {answer.text}"
        return answer.json()

    def events(self, run_id: str | None = None, kind: str | None = None) -> list[Entry]:
        found: list[Entry] = self.http.get("/__test/events").json()["events"]
        return [
            e
            for e in found
            if (run_id is None or e.get("runId") == run_id) and (kind is None or e["kind"] == kind)
        ]

    def deliveries(self, run_id: str | None = None) -> list[Entry]:
        found: list[Entry] = self.http.get("/__test/deliveries").json()["deliveries"]
        return [d for d in found if run_id is None or d.get("runId") == run_id]

    def steps(self, run_id: str) -> list[str]:
        """Step bodies the app executed for a run, in order (a repeat shows up twice)."""
        return [e["step"] for e in self.events(run_id, "step")]

    def wait_for(self, what: str, select: Callable[[], list[Entry]], count: int = 1,
                 timeout: float = 15.0) -> list[Entry]:  # fmt: skip
        """Poll until `select()` returns at least `count` entries; return them."""
        deadline = time.monotonic() + timeout
        while True:
            found = select()
            if len(found) >= count:
                return found
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"expected {count} x {what} within {timeout}s, got {found}\n"
                    f"{self.diagnostics()}"
                )
            time.sleep(0.05)

    def completed(self, run_id: str, timeout: float = 15.0) -> Entry:
        """The run's completion: its route function returned (the app records that) and the
        delivery on which it did was answered 200, which the SDK does only once Homing
        accepted the run's end (`DELETE /v2/workflows/runs/{id}`); no SDK error on the way."""

        def ended() -> list[Entry]:
            done = self.events(run_id, "completed")
            if not done:
                return []
            answered = [
                d
                for d in self.deliveries(run_id)
                if d["at"] >= done[0]["at"] and d["status"] == 200
            ]
            return done if answered else []

        found = self.wait_for(f"completion of {run_id}", ended, timeout=timeout)
        errors = self.events(run_id, "error")
        assert len(found) == 1 and not errors, (
            f"run {run_id} completed {len(found)} times, SDK errors {errors}\n{self.diagnostics()}"
        )
        return found[0]

    def close(self) -> None:
        self.http.close()
        self.process.stop()


@contextmanager
def running_app(name: str, argv: list[str], *, cwd: Path, tmp: Path, env: dict[str, str],
                diagnostics: Callable[[], str] = str) -> Iterator[WorkflowApp]:  # fmt: skip
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    full_env = base_env() | {"PORT": str(port), "UPSTASH_WORKFLOW_URL": base_url} | env
    process = Process(name, argv, cwd=cwd, env=full_env, log_path=tmp / f"{name}.log")
    app = WorkflowApp(process, base_url, diagnostics)
    try:
        process.wait_ready(f"{base_url}/health", timeout=60)
        yield app
    finally:
        app.close()


def ts_app(tmp: Path, env: dict[str, str], *, name: str = "ts-workflows",
           diagnostics: Callable[[], str] = str) -> Any:  # fmt: skip
    """The TypeScript app (tsx runs app.ts directly; no build step)."""
    require_ts_app()
    argv = [str(TS_DIR / "node_modules" / ".bin" / "tsx"), "app.ts"]
    return running_app(name, argv, cwd=TS_DIR, tmp=tmp, env=env, diagnostics=diagnostics)


def py_app(tmp: Path, env: dict[str, str], *, name: str = "py-workflows",
           diagnostics: Callable[[], str] = str) -> Any:  # fmt: skip
    """The Python app under uvicorn, with the test venv's interpreter."""
    argv = [sys.executable, "main.py"]
    return running_app(name, argv, cwd=PY_DIR, tmp=tmp, env=env, diagnostics=diagnostics)


@contextmanager
def two_postgres_nodes(
    tmp_path: Path, creds: Credentials, schema: str
) -> Iterator[list[HomingProcess]]:
    """Two `homing serve` nodes sharing a fresh PostgreSQL schema, stopped and dropped after."""
    schemas = PostgresSchemas()
    flags = ["--host", "127.0.0.1", "--database", schemas.url_for(schema),
             "--token", creds.token, "--current-signing-key", creds.current_key,
             "--next-signing-key", creds.next_key, "--allow-private-destinations",
             "--shutdown-timeout", "2"]  # fmt: skip
    nodes = [
        HomingProcess(tmp_path / f"node{i}", tmp_path / f"node{i}.log", mode="serve", extra=flags)
        for i in range(2)
    ]
    try:
        for node in nodes:  # one after the other: the first one migrates the schema
            node.start()
        yield nodes
    finally:
        for node in nodes:
            node.stop()
        schemas.drop()
