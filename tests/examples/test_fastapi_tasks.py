"""End-to-end: examples/fastapi-tasks, unchanged, against a real `homing dev` subprocess."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.examples.contract import TaskAppContract
from tests.examples.harness import EXAMPLES, ExampleApp, running_example

APP_DIR = EXAMPLES / "fastapi-tasks"


@pytest.fixture(scope="module")
def example(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ExampleApp]:
    pytest.importorskip(
        "fastapi", reason="fastapi is in the `test` extra: pip install -e '.[test]'"
    )
    tmp: Path = tmp_path_factory.mktemp("fastapi-tasks")
    # The README's command: `python -m app` in the example folder.
    with running_example(
        "fastapi-tasks", [sys.executable, "-m", "app"], cwd=APP_DIR, tmp=tmp
    ) as app:
        yield app


class TestFastAPITasks(TaskAppContract):
    pass
