"""`homing migrate`: forward-only and idempotent, once when nodes start together, and `--check`
tells whether a store needs it without changing anything (exit 0 up to date, 1 needs migrating,
2 cannot tell)."""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import sqlite3
import subprocess
import sys
from importlib import resources
from pathlib import Path
from typing import Any

import httpx

from tests.support.cli import run_homing
from tests.support.server import (
    TEST_POSTGRES_URL,
    PostgresSchemas,
    free_port,
    postgres_or_skip,
    run_coroutine,
    with_search_path,
)
from tests.support.waiting import wait_until
from tests.upgrade.conftest import OldStore

UP_TO_DATE, NEEDED, UNKNOWN = 0, 1, 2


def known_versions(backend: str) -> list[int]:
    folder = resources.files(f"homing.storage.{backend}").joinpath("migrations")
    return sorted(int(f.name[:4]) for f in folder.iterdir() if f.name.endswith(".sql"))


def check(url: str) -> tuple[int, str]:
    done = run_homing("migrate", "--check", "--database", url)
    return done.returncode, done.stdout + done.stderr


def sqlite_snapshot(path: Path) -> Any:
    with contextlib.closing(sqlite3.connect(path)) as db:
        schema = db.execute("SELECT type, name, sql FROM sqlite_master ORDER BY name").fetchall()
        versions = db.execute("SELECT * FROM homing_schema_version ORDER BY 1").fetchall()
    return schema, versions


async def postgres_rows(url: str, sql: str) -> list[tuple[Any, ...]]:
    import asyncpg  # type: ignore[import-untyped]

    conn = await asyncpg.connect(url, timeout=10)
    try:
        return [tuple(r) for r in await conn.fetch(sql)]
    finally:
        await conn.close()


def postgres_snapshot(url: str) -> Any:
    def rows(sql: str) -> list[tuple[Any, ...]]:
        found: list[tuple[Any, ...]] = run_coroutine(lambda: postgres_rows(url, sql))
        return found

    return (
        rows(
            "SELECT table_name, column_name, data_type, column_default FROM "
            "information_schema.columns WHERE table_schema = current_schema() ORDER BY 1, 2"
        ),
        rows("SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = current_schema()"),
        rows("SELECT version, applied_ms FROM homing_schema_version ORDER BY 1"),
    )


def snapshot(store: OldStore) -> Any:
    if store.backend == "sqlite":
        return sqlite_snapshot(store.data_dir / "homing.db")
    return postgres_snapshot(store.url)


def test_migrating_an_old_store_twice_changes_nothing_the_second_time(old_store: OldStore) -> None:
    first = run_homing("migrate", "--database", old_store.url)
    assert first.returncode == 0, first.stderr
    after_first = snapshot(old_store)

    second = run_homing("migrate", "--database", old_store.url)

    assert second.returncode == 0, second.stderr
    assert second.stdout.strip().endswith("no change")
    assert snapshot(old_store) == after_first
    versions = [row[0] for row in after_first[-1]]
    assert versions == known_versions(old_store.backend)
    assert check(old_store.url)[0] == UP_TO_DATE


def test_check_on_sqlite_tells_what_is_missing_and_touches_nothing(tmp_path: Path) -> None:
    # No store yet: it needs migrating, and the check does not create one
    missing = tmp_path / "new" / "homing.db"
    code, said = check(f"sqlite:///{missing}")
    assert code == NEEDED and "no store yet" in said
    assert not missing.parent.exists()

    # A store that has only the first migration
    path = tmp_path / "homing.db"
    first = resources.files("homing.storage.sqlite").joinpath("migrations/0001_initial.sql")
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.executescript(first.read_text())
        db.execute("CREATE TABLE homing_schema_version (version INTEGER PRIMARY KEY)")
        db.execute("INSERT INTO homing_schema_version VALUES (1)")
        db.commit()
    before = hashlib.sha256(path.read_bytes()).hexdigest()
    files = sorted(os.listdir(tmp_path))

    code, said = check(f"sqlite:///{path}")

    later = ", ".join(f"{v:04d}" for v in known_versions("sqlite")[1:])
    assert (code, said.strip()) == (NEEDED, f"needs migrating: sqlite:///{path} lacks {later}")
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before
    assert sorted(os.listdir(tmp_path)) == files

    # Migrated: up to date
    assert run_homing("migrate", "--database", f"sqlite:///{path}").returncode == 0
    code, said = check(f"sqlite:///{path}")
    assert code == UP_TO_DATE and said.startswith("up to date")


def test_check_refuses_a_store_of_a_newer_release(tmp_path: Path) -> None:
    path = tmp_path / "homing.db"
    assert run_homing("migrate", "--database", f"sqlite:///{path}").returncode == 0
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.execute("INSERT INTO homing_schema_version VALUES (9999)")
        db.commit()
    code, said = check(f"sqlite:///{path}")
    assert code == UNKNOWN and "newer Homing (versions 9999" in said


def test_check_on_postgres_tells_and_touches_nothing() -> None:
    postgres_or_skip()
    schemas = PostgresSchemas()
    try:
        url = with_search_path(TEST_POSTGRES_URL, schemas.new())
        tables = "SELECT count(*) FROM pg_tables WHERE schemaname = current_schema()"

        code, said = check(url)
        assert code == NEEDED and "no store yet" in said
        assert run_coroutine(lambda: postgres_rows(url, tables)) == [(0,)]

        assert run_homing("migrate", "--database", url).returncode == 0
        code, said = check(url)
        assert code == UP_TO_DATE and said.startswith("up to date")
    finally:
        schemas.drop()
    code, said = check(f"postgresql://postgres@127.0.0.1:{free_port()}/test")
    assert code == UNKNOWN and "cannot read the schema" in said


def test_two_nodes_starting_together_on_postgres_migrate_once(tmp_path: Path) -> None:
    postgres_or_skip()
    schemas = PostgresSchemas()
    url = with_search_path(TEST_POSTGRES_URL, schemas.new())
    ports = [free_port(), free_port()]
    nodes: list[subprocess.Popen[bytes]] = []
    try:
        # Given a fresh schema and two nodes started at the same moment
        for i, port in enumerate(ports):
            data_dir = str(tmp_path / f"node{i}")
            command = ["dev", "--port", str(port), "--database", url, "--data-dir", data_dir]
            nodes.append(
                subprocess.Popen(
                    [sys.executable, "-m", "homing", *command],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )

        # Then both come up ready
        def ready(port: int) -> bool:
            try:
                return httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200
            except httpx.TransportError:
                return False

        assert wait_until(lambda: all(ready(p) for p in ports), timeout=30)
        # And each migration was applied once
        versions = run_coroutine(
            lambda: postgres_rows(url, "SELECT version FROM homing_schema_version ORDER BY 1")
        )
        assert [v for (v,) in versions] == known_versions("postgres")
    finally:
        for node in nodes:
            node.send_signal(signal.SIGTERM)
        for node in nodes:
            try:
                node.wait(15)
            except subprocess.TimeoutExpired:
                node.kill()
                node.wait()
        schemas.drop()
