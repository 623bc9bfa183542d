"""End-to-end: examples/hono-tasks, unchanged, against a real `homing dev` subprocess."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.examples.contract import TaskAppContract, for_user, new_user
from tests.examples.harness import EXAMPLES, ExampleApp, running_example

APP_DIR = EXAMPLES / "hono-tasks"


def _require_node_modules() -> None:
    missing = None
    if shutil.which("npm") is None:
        missing = "npm is not installed"
    elif not (APP_DIR / "node_modules" / ".bin" / "tsx").exists():
        missing = "examples/hono-tasks/node_modules is missing (run scripts/install)"
    if missing:
        if os.environ.get("CI"):
            pytest.fail(f"{missing}; CI must install it")
        pytest.skip(missing)


@pytest.fixture(scope="module")
def example(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ExampleApp]:
    _require_node_modules()
    tmp: Path = tmp_path_factory.mktemp("hono-tasks")
    # The README's command: `npm start` in the example folder.
    with running_example("hono-tasks", ["npm", "start"], cwd=APP_DIR, tmp=tmp) as app:
        yield app


class TestHonoTasks(TaskAppContract):
    pass


def test_sdk_dev_mode_finds_homing(tmp_path: Path) -> None:
    """`QSTASH_DEV=true` alone: the SDK checks GET /v2/keys, sees the dev keys, uses Homing."""
    _require_node_modules()
    with running_example(
        "hono-tasks-dev-mode", ["npm", "start"], cwd=APP_DIR, tmp=tmp_path, sdk_dev_mode=True
    ) as example:
        user = new_user()
        res = example.trigger("immediate", {"userId": user, "operation": "analyze"})
        [entry] = example.wait_for("process-user-data", for_user("process-user-data", user))
        assert entry["messageId"] == res["messageId"] and entry["status"] == 200
        output = example.diagnostics()
        assert "Server already running" in output and "Could not start" not in output
