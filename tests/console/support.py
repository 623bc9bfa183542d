"""Helpers shared by the console's browser tests and its screenshot script."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from homing.models import SigningKeys
from tests.support import waiting
from tests.support.receiver import Received, Receiver, Reply
from tests.support.server import DEV_TOKEN, RunningServer
from tests.support.workflows import publish_step, start_run

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium_or_skip() -> str:
    """The system Chromium (Debian's `chromium`), with Playwright importable; in CI a missing
    browser is a failure, elsewhere a skip that says what to install."""
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    problem = None
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        problem = "playwright is not installed (pip install -e '.[test]')"
    if problem is None and path is None:
        problem = "chromium is not installed (apt-get install chromium)"
    if problem is not None:
        if os.environ.get("CI"):
            pytest.fail(f"browser tests need {problem}")
        pytest.skip(f"browser tests need {problem}")
    assert path is not None
    return path


def api(server: RunningServer, token: str = DEV_TOKEN) -> httpx.Client:
    return httpx.Client(
        base_url=server.base_url, headers={"Authorization": f"Bearer {token}"}, timeout=10
    )


def publish(client: httpx.Client, url: str, body: str | bytes = "hi", **headers: str) -> str:
    response = client.post(f"/v2/publish/{url}", content=body, headers=headers)
    response.raise_for_status()
    found = response.json()
    first = found[0] if isinstance(found, list) else found  # a URL group answers a list
    message_id: str = first["messageId"]
    return message_id


def eventually(check: Callable[[], Any], timeout: float = 10.0) -> Any:
    """`tests.support.waiting.eventually` with the console tests' longer default (a browser)."""
    return waiting.eventually(check, timeout)


def dlq_ids(client: httpx.Client) -> dict[str, str]:
    """message id -> DLQ id of every DLQ entry."""
    entries = client.get("/v2/dlq").json()["messages"]
    return {m["messageId"]: m["dlqId"] for m in entries}


class Switch:
    """A destination that answers 500 with a JSON error until it is switched on."""

    def __init__(self) -> None:
        self.up = False

    def __call__(self, _: object) -> Reply:
        if self.up:
            return Reply(200, b'{"ok":true}', {"Content-Type": "application/json"})
        body = b'{"error":"database is down","code":"E_DB"}'
        return Reply(500, body, {"Content-Type": "application/json", "X-Request-Id": "r-81"})


def down_destination(receiver: Receiver, path: str = "/down") -> Switch:
    switch = Switch()
    receiver.on(path, switch)
    return switch


WORKFLOW_REPLY = Reply(200, b'{"ok":true}', {"Upstash-Workflow-Sdk-Version": "1"})
STEP = {"stepId": 1, "stepName": "one", "stepType": "Run", "out": '"a"', "concurrent": 1}


class FailingSteps:
    """A workflow app that answers its init and fails every step after it."""

    def __init__(self) -> None:
        self.calls: list[Received] = []

    def __call__(self, req: Received) -> Reply:
        self.calls.append(req)
        first = len(json.loads(req.body)) == 1  # the step list holds only the initial payload
        return WORKFLOW_REPLY if first else Reply(500, b'{"message":"boom"}')

    def of_run(self, run_id: str) -> Received | None:
        return next((c for c in self.calls if c.headers["Upstash-Workflow-RunId"] == run_id), None)


def fail_run(client: httpx.Client, receiver: Receiver, run_id: str, **more: str) -> str:
    """Start `run_id`, publish its first step, whose delivery fails for good; its DLQ id."""
    url = receiver.url("/wf")
    start_run(client, run_id, url, '{"order":7}', **{"upstash-retries": "0"}, **more)
    eventually(
        lambda: any(c.headers["Upstash-Workflow-RunId"] == run_id for c in receiver.to("/wf"))
    )
    publish_step(client, run_id, url, STEP)

    def entry() -> str | None:
        found = client.get("/v2/dlq", params={"source": "workflow", "workflowRunId": run_id})
        listed: list[dict[str, Any]] = found.json()["messages"]
        return listed[0]["dlqId"] if listed else None

    dlq_id: str = eventually(entry)
    return dlq_id


READ_ONLY_TOKEN = "hmg_read_only_token"


def create_read_only_token(serve: RunningServer) -> str:
    """A read-only token of the dev account, named `viewer`; returns it."""

    async def create() -> None:
        await serve.services.storage.create_token(
            "defaultUser",
            READ_ONLY_TOKEN,
            name="viewer",
            read_only=True,
            now_ms=serve.services.clock.now_ms(),
            new_keys=SigningKeys("sig_a", "sig_b"),
        )

    serve.run(create)
    return READ_ONLY_TOKEN
