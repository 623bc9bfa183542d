"""The official TypeScript SDK (@upstash/qstash) against a real Homing: tests/ts/check.mjs.

The script drives schedules, URL groups, queues, publishing, cancel, DLQ, logs and flow control
through the SDK and verifies a delivery with the SDK's `Receiver`; this test then checks what
the shared receiver got. It needs `node` and `tests/ts/node_modules` (`scripts/install` runs
`npm install` there). Locally it is skipped without them; in CI (env `CI` set) it fails instead.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from qstash import QStash

from tests.support.receiver import Receiver
from tests.support.server import DEV_CURRENT_KEY, DEV_NEXT_KEY, DEV_TOKEN, RunningServer

TS_DIR = Path(__file__).resolve().parent.parent / "ts"


def node_or_skip() -> str:
    node = shutil.which("node")
    problem = None
    if node is None:
        problem = "`node` is not on PATH"
    elif not (TS_DIR / "node_modules" / "@upstash" / "qstash").is_dir():
        problem = (
            "tests/ts/node_modules is missing: run `npm install` in tests/ts (scripts/install)"
        )
    if problem is not None:
        if os.environ.get("CI"):
            pytest.fail(f"TypeScript SDK check cannot run in CI: {problem}")
        pytest.skip(problem)
    assert node is not None
    return node


def test_typescript_sdk_drives_homing(
    server: RunningServer, receiver: Receiver, client: QStash
) -> None:
    node = node_or_skip()
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("QSTASH_", "HOMING_", "UPSTASH_"))
    }
    env.update(
        HOMING_URL=server.base_url,
        RECEIVER_URL=receiver.url("").rstrip("/"),
        HOMING_TOKEN=DEV_TOKEN,
        HOMING_CURRENT_SIGNING_KEY=DEV_CURRENT_KEY,
        HOMING_NEXT_SIGNING_KEY=DEV_NEXT_KEY,
        NODE_ENV="test",
    )
    run = subprocess.run(
        [node, "check.mjs"], cwd=TS_DIR, env=env, capture_output=True, text=True, timeout=90
    )
    report = f"stdout:\n{run.stdout}\nstderr:\n{run.stderr}"
    assert run.returncode == 0, report
    summary = json.loads(run.stdout.strip().splitlines()[-1])

    # The every-second schedule the SDK created fires with the schedule id header.
    [tick] = receiver.wait_for(1, "/ts-tick", timeout=5)[:1]
    client.schedule.delete(summary["tickScheduleId"])
    assert tick.headers["Upstash-Schedule-Id"] == summary["tickScheduleId"]
    assert tick.body == b"tick"

    # The group publish fanned out to both endpoints.
    [a] = receiver.wait_for(1, "/ts-a")
    [b] = receiver.wait_for(1, "/ts-b")
    assert [a.message_id, b.message_id] == summary["groupMessageIds"]
    assert a.headers["Upstash-Topic-Name"] == b.headers["Upstash-Topic-Name"] == "ts-group"
    assert a.body == b'{"group":true}'

    [queued] = receiver.wait_for(1, "/ts-queue")
    assert queued.message_id == summary["queueMessageId"]
    assert queued.headers["Content-Type"] == "application/json"
    assert queued.body == b'{"queued":1}'

    [delayed] = receiver.wait_for(1, "/ts-delayed", timeout=5)
    assert delayed.message_id == summary["delayedMessageId"]
    assert delayed.at * 1000 >= summary["delayedPublishedAt"] + 1000 - 5

    time.sleep(0.2)
    assert receiver.to("/ts-cancelled") == []
    assert receiver.to("/ts-template") == []  # hourly/10-minute template: not due
