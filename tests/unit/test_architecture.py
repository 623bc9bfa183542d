"""The house rules hold: each part of `homing/` depends only on what sits below it.

docs/architecture.md draws the parts; these rules are its arrows, checked on every run.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import homing
from tests.support.import_rules import Rule, Violation, check, modules

ROOT = Path(homing.__file__).parent

# Pure policy: decisions as functions of their inputs. They may use each other, the models and
# the error tree, and nothing that touches the outside world or reads the clock on its own.
PURE = (
    "homing.callbacks",
    "homing.cron",
    "homing.delivery.outcome",
    "homing.durations",
    "homing.errors",
    "homing.headers",
    "homing.models",
    "homing.numbers",
    "homing.publish",
    "homing.retry",
    "homing.signing",
    "homing.workflow",
    "homing.workflow.control",
    "homing.workflow.dlq",
    "homing.workflow.invoke",
    "homing.workflow.logs",
    "homing.workflow.runs",
    "homing.workflow.steps",
    "homing.workflow.waits",
)
IO = (
    "aiohappyeyeballs", "aiohttp", "asyncio", "asyncpg", "http.client", "httptools", "httpx",
    "requests", "socket", "sqlite3", "ssl", "starlette", "subprocess", "time", "urllib.request",
    "uvicorn", "homing.storage", "homing.clock", "homing.delivery.http1",
    "homing.delivery.sender", "homing.delivery.engine",
    "homing.scheduler", "homing.api", "homing.console", "homing.actions", "homing.runtime",
)  # fmt: skip
ABOVE_STORAGE = (
    "homing.actions", "homing.api", "homing.cli", "homing.console", "homing.delivery",
    "homing.runtime", "homing.scheduler", "homing.server",
)  # fmt: skip

RULES = (
    Rule("storage records decisions and never calls up into the parts above it",
         sources=("homing.storage",), forbidden=ABOVE_STORAGE),
    Rule("the API and the console are siblings: they share use cases, not each other",
         sources=("homing.api",), forbidden=("homing.console",)),
    Rule("the API and the console are siblings: they share use cases, not each other",
         sources=("homing.console",), forbidden=("homing.api",)),
    Rule("delivery and the scheduler run on worker nodes, where no routes are served",
         sources=("homing.delivery", "homing.scheduler"),
         forbidden=("homing.api", "homing.console", "homing.server", "homing.runtime")),
    Rule("a pure policy module does no I/O and reads the clock only through its inputs",
         sources=PURE, forbidden=IO, forbid_clock_calls=True),
)  # fmt: skip


def test_homing_keeps_the_house_rules() -> None:
    violations = check(ROOT, "homing", RULES)
    assert not violations, "\n".join(map(str, violations))


def test_every_pure_module_named_in_the_rules_exists() -> None:
    # A renamed module would otherwise silently leave the rules.
    names = {name for name, _ in modules(ROOT, "homing")}
    assert set(PURE) <= names, sorted(set(PURE) - names)


# -- the checker itself ----------------------------------------------------------------------


def _package(tmp_path: Path, files: dict[str, str]) -> Path:
    root = tmp_path / "pkg"
    for name, source in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(source)
    return root


def _found(violations: list[Violation]) -> set[tuple[str, str]]:
    return {(v.module, v.target) for v in violations}


def test_the_checker_catches_storage_importing_the_api(tmp_path: Path) -> None:
    root = _package(
        tmp_path,
        {
            "__init__.py": "",
            "api/__init__.py": "",
            "api/context.py": "SERVICES = 1\n",
            "storage/__init__.py": "",
            "storage/backend.py": "def f():\n    from pkg.api.context import SERVICES\n",
            "storage/ok.py": "from pkg import models\n",
            "models.py": "",
        },
    )
    rule = Rule("storage below api", sources=("pkg.storage",), forbidden=("pkg.api",))
    assert _found(check(root, "pkg", [rule])) == {("pkg.storage.backend", "pkg.api.context")}


def test_the_checker_resolves_relative_imports(tmp_path: Path) -> None:
    root = _package(
        tmp_path,
        {
            "__init__.py": "",
            "console/__init__.py": "from ..api import routes\n",
            "api/__init__.py": "",
            "api/routes.py": "",
        },
    )
    rule = Rule("siblings", sources=("pkg.console",), forbidden=("pkg.api",))
    assert ("pkg.console", "pkg.api") in _found(check(root, "pkg", [rule]))


@pytest.mark.parametrize(
    "source",
    [
        "import socket\n",
        "from asyncio import subprocess\n",
        "import time\n",
        "from datetime import datetime\nNOW = datetime.now()\n",
        "import asyncpg\n",
    ],
)
def test_the_checker_catches_io_in_a_pure_module(tmp_path: Path, source: str) -> None:
    root = _package(tmp_path, {"__init__.py": "", "retry.py": source})
    rule = Rule("pure", sources=("pkg.retry",), forbidden=IO, forbid_clock_calls=True)
    assert check(root, "pkg", [rule]), source


def test_the_checker_lets_a_pure_module_use_pure_code(tmp_path: Path) -> None:
    root = _package(
        tmp_path,
        {
            "__init__.py": "",
            "retry.py": "import re\nfrom datetime import UTC\nfrom pkg import models\n",
            "models.py": "",
        },
    )
    rule = Rule("pure", sources=("pkg.retry",), forbidden=IO, forbid_clock_calls=True)
    assert check(root, "pkg", [rule]) == []
