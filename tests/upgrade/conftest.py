"""Stores written by a previous release (tests/upgrade/fixtures), opened by this one.

`old_store` is parametrized over the SQLite file and the PostgreSQL dump: each test gets its own
copy (a file in tmp_path, or the dump loaded into a fresh schema that is dropped after). PostgreSQL
is skipped when unreachable, and fails instead when the `CI` environment variable is set.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support.receiver import Receiver
from tests.support.server import (
    TEST_POSTGRES_URL,
    PostgresSchemas,
    pg_execute,
    postgres_or_skip,
    run_coroutine,
    with_search_path,
)

FIXTURES = Path(__file__).parent / "fixtures"
RELEASE = "v0.1.0"
FIXTURE_SCHEMA = "homing_upgrade_fixture"  # the schema name inside the dump (make_fixtures.py)


@dataclass
class OldStore:
    backend: str
    url: str  # database URL for this release
    data_dir: Path
    manifest: dict[str, Any]  # what the old release was given (fixtures/<release>.json)


def load_dump(schemas: PostgresSchemas) -> str:
    """The PostgreSQL fixture loaded into a fresh schema; that schema's database URL."""
    schema = schemas.new()
    lines = (FIXTURES / f"{RELEASE}.postgres.sql").read_text().splitlines()
    sql = "\n".join(line for line in lines if not line.startswith("--"))  # pg_dump's comments
    sql = sql.replace(f"CREATE SCHEMA {FIXTURE_SCHEMA};", "")
    sql = sql.replace(f"{FIXTURE_SCHEMA}.", f'"{schema}".')
    assert FIXTURE_SCHEMA not in sql, "the dump names its schema somewhere unexpected"
    run_coroutine(lambda: pg_execute(TEST_POSTGRES_URL, sql))
    return with_search_path(TEST_POSTGRES_URL, schema)


@pytest.fixture(params=["sqlite", "postgres"])
def old_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[OldStore]:
    backend: str = request.param
    manifest = json.loads((FIXTURES / f"{RELEASE}.json").read_text())[backend]
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    if backend == "sqlite":
        shutil.copy(FIXTURES / f"{RELEASE}.sqlite3", data_dir / "homing.db")
        yield OldStore(backend, f"sqlite:///{data_dir / 'homing.db'}", data_dir, manifest)
        return
    postgres_or_skip()
    schemas = PostgresSchemas()
    try:
        yield OldStore(backend, load_dump(schemas), data_dir, manifest)
    finally:
        schemas.drop()


def fixed_port_receiver(port: int, timeout: float = 30) -> Receiver:
    """A receiver on the port the fixtures' destinations name. Another run of these tests on
    the same machine may hold it for a few seconds: wait for it rather than fail at once."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return Receiver(port=port)
        except OSError as exc:
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"port {port}, where the upgrade fixtures deliver, stays taken: {exc}"
                ) from exc
            time.sleep(0.2)
