"""Fixtures of the multi-node tests. Every process a test starts is stopped by a finalizer,
also when the test fails; schemas and throwaway clusters are removed.

The shared PostgreSQL server is HOMING_TEST_POSTGRES_URL (default
postgresql://postgres@127.0.0.1:5432/test). When it is unreachable the tests are skipped, or
fail when the `CI` environment variable is set (as the storage contract suite does).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.multinode.support import Nodes, SinkProcess, Sql, ThrowawayCluster, log
from tests.support.server import TEST_POSTGRES_URL, PostgresSchemas, pg_execute, run_coroutine

IN_CI = bool(os.environ.get("CI"))  # read at import: HOMING_* and friends are hidden later


def _require_shared_postgres() -> None:
    try:
        run_coroutine(lambda: pg_execute(TEST_POSTGRES_URL, "SELECT 1"), timeout=15)
    except Exception as exc:  # any failure to connect: skip locally, fail in CI
        message = f"PostgreSQL at {TEST_POSTGRES_URL} is not reachable: {exc}"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)


@dataclass
class SharedSchema:
    url: str  # the database URL the nodes get (search_path=<schema>)
    sql: Sql


@pytest.fixture
def shared_schema() -> Iterator[SharedSchema]:
    """A fresh schema on the shared server, dropped after the test (after its nodes stopped:
    the `nodes` fixture depends on nothing, so request this one first)."""
    _require_shared_postgres()
    schemas = PostgresSchemas(TEST_POSTGRES_URL)
    url = schemas.url_for("multinode")
    try:
        yield SharedSchema(url, Sql(url))
    finally:
        schemas.drop()


@pytest.fixture
def nodes(tmp_path: Path) -> Iterator[Nodes]:
    found = Nodes(tmp_path)
    try:
        yield found
    finally:
        found.close()
        log("node logs: " + ", ".join(str(n.log_path) for n in found.all))


@pytest.fixture
def sink() -> Iterator[SinkProcess]:
    s = SinkProcess()
    try:
        yield s
    finally:
        s.close()


@pytest.fixture
def throwaway_cluster() -> Iterator[ThrowawayCluster]:
    cluster = ThrowawayCluster()
    try:
        cluster.init()
        cluster.start()
        yield cluster
    finally:
        cluster.destroy()
