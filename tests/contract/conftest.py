"""The storage contract suite: every test runs against every backend.

`storage` is parametrized over SQLite (a fresh file in tmp_path) and PostgreSQL (a fresh schema
per test in the test database, dropped afterwards). PostgreSQL tests fail when the server is
unreachable and the `CI` environment variable is set, and are skipped otherwise.

Tests call only `Storage` methods and pass explicit times: nothing sleeps. The builders below
(`new_message`, `delivered`, `retry`, `failed`, ...) keep each test down to its Given/When/Then.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from homing.delivery import outcome
from homing.models import (
    AttemptOutcome,
    CallbackSpec,
    Claimed,
    DeliverySpec,
    FlowControl,
    MessageFilter,
    NewMessage,
    Response,
    SigningKeys,
)
from homing.storage.base import Storage
from homing.storage.sqlite.backend import SqliteStorage

# Read at import: the autouse fixture in tests/conftest.py hides HOMING_* during each test.
POSTGRES_URL = os.environ.get(
    "HOMING_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
ACCOUNT = "acct_main"
OTHER = "acct_other"
T0 = 1_700_000_000_000  # a fixed "now" for every test
KEYS = SigningKeys("sig_current", "sig_next")

_ids = itertools.count(1)


# -- known backend bugs --------------------------------------------------------------------


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "sqlite_bug(reason): a known bug of the SQLite backend; strict xfail on SQLite only",
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        marker = item.get_closest_marker("sqlite_bug")
        callspec = getattr(item, "callspec", None)
        on_sqlite = callspec is not None and callspec.params.get("open_node") == "sqlite"
        if marker is not None and on_sqlite:
            reason = "SQLite backend bug: " + str(marker.args[0])
            item.add_marker(pytest.mark.xfail(strict=True, reason=reason))


# -- fixtures ------------------------------------------------------------------------------


def _postgres_unavailable(reason: str) -> None:
    message = f"PostgreSQL at {POSTGRES_URL} is not reachable: {reason}"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


async def _admin() -> Any:
    import asyncpg  # type: ignore[import-untyped]

    try:
        return await asyncpg.connect(POSTGRES_URL, timeout=5)
    except Exception as exc:  # any failure to connect: skip locally, fail in CI
        _postgres_unavailable(str(exc))


StorageFactory = Callable[[], Awaitable[Storage]]

# Every table a test may write; emptied before each test that reuses a schema.
_TABLES = (
    "tokens", "accounts", "messages", "dedup", "events", "queues", "url_groups", "schedules",
    "schedule_fires", "flow_keys", "workflow_runs", "workflow_steps",
    "workflow_waiters", "workflow_events",
)  # fmt: skip


class Schemas:
    """PostgreSQL schemas of this session: migrated once, emptied before each reuse, dropped at
    the end. Migrating costs ~0.2 s; emptying a few tiny tables costs a few ms."""

    def __init__(self) -> None:
        self.free: list[str] = []
        self.created: list[str] = []

    async def take(self, admin: Any) -> str:
        if self.free:
            schema = self.free.pop()
            await admin.execute("; ".join(f'DELETE FROM "{schema}".{t}' for t in _TABLES))
            return schema
        return await self.new(admin)

    async def new(self, admin: Any) -> str:
        schema = "homing_ct_" + secrets.token_hex(6)
        await admin.execute(f'CREATE SCHEMA "{schema}"')
        self.created.append(schema)
        return schema

    def drop_all(self) -> None:
        if not self.created:
            return

        async def drop() -> None:
            admin = await _admin()
            for schema in self.created:
                await admin.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
            await admin.close()

        asyncio.run(drop())


@pytest.fixture(scope="session")
def pg_schemas() -> Iterator[Schemas]:
    schemas = Schemas()
    yield schemas
    schemas.drop_all()


@pytest.fixture(params=["sqlite", "postgres"])
async def open_node(
    request: pytest.FixtureRequest, tmp_path: Path, pg_schemas: Schemas
) -> AsyncIterator[StorageFactory]:
    """`await open_node()` -> one more opened node on the same empty store (closed after).

    SQLite allows one node per file: a second call skips the test, with the reason."""
    opened: list[Storage] = []
    backend: str = request.param
    admin: Any = None
    schema = ""
    if backend == "postgres":
        admin = await _admin()
        schema = await pg_schemas.take(admin)

    async def open_one() -> Storage:
        store: Storage
        if backend == "sqlite":
            if opened:
                pytest.skip("SQLite: one process owns the database file (single node)")
            store = SqliteStorage(str(tmp_path / "homing.db"), synchronous="NORMAL")
        else:
            store = postgres_node(schema)
        await store.open()
        opened.append(store)
        return store

    try:
        yield open_one
    finally:
        for store in reversed(opened):
            await store.close()
        if admin is not None:
            pg_schemas.free.append(schema)
            await admin.close()


def postgres_node(schema: str) -> Storage:
    from homing.storage.postgres.backend import PostgresStorage

    return PostgresStorage(
        POSTGRES_URL,
        server_settings={"search_path": schema},
        min_connections=1,
        max_connections=4,
    )


@pytest.fixture
async def storage(open_node: StorageFactory) -> Storage:
    """A fresh, opened store with the account ACCOUNT (and OTHER) in it."""
    store = await open_node()
    await store.ensure_account(ACCOUNT, now_ms=T0, keys=KEYS)
    await store.ensure_account(OTHER, now_ms=T0, keys=KEYS)
    return store


def backend_of(storage: Storage) -> str:
    return "sqlite" if isinstance(storage, SqliteStorage) else "postgres"


# -- builders ------------------------------------------------------------------------------


def new_message(
    id: str | None = None,
    *,
    account: str = ACCOUNT,
    url: str = "https://example.com/hook",
    at: int = T0,
    delay_ms: int = 0,
    queue: str | None = None,
    queue_slot: str | None = None,
    flow: FlowControl | None = None,
    dedup: str | None = None,
    labels: tuple[str, ...] = (),
    body: bytes = b"payload",
    max_retries: int = 3,
    callback: str | None = None,
    topic: str | None = None,
    schedule_id: str | None = None,
    caller_ip: str = "",
) -> NewMessage:
    spec = DeliverySpec(
        max_retries=max_retries,
        callback=CallbackSpec(callback) if callback else None,
    )
    return NewMessage(
        id=id or f"msg_{next(_ids):06d}",
        account_id=account,
        url=url,
        body=body,
        spec=spec,
        created_ms=at,
        not_before_ms=at + delay_ms,
        caller_ip=caller_ip,
        queue_name=queue,
        topic_name=topic,
        schedule_id=schedule_id,
        labels=labels,
        flow=flow,
        dedup_key=dedup,
        queue_slot=queue_slot,
    )


async def insert(
    storage: Storage, *messages: NewMessage, now: int = T0, window_ms: int = 0
) -> list[str]:
    """Insert and return the ids of the stored messages."""
    results = await storage.insert_messages(messages, now_ms=now, dedup_window_ms=window_ms)
    return [r.message_id for r in results]


async def claim(
    storage: Storage,
    *,
    now: int = T0,
    limit: int = 100,
    node: str = "node_a",
    lease_ms: int = 30_000,
) -> list[Claimed]:
    return await storage.claim_due(now_ms=now, limit=limit, node_id=node, lease_ms=lease_ms)


def ids_of(claims: Sequence[Claimed]) -> list[str]:
    return sorted(c.message.id for c in claims)


def delivered(
    c: Claimed, *, at: int = T0 + 100, new: tuple[NewMessage, ...] = (), status: int = 200
) -> AttemptOutcome:
    return outcome.delivered(
        c.message.id,
        c.lease_token,
        finished_ms=at,
        response=Response(status, {"Content-Type": ["text/plain"]}, b"ok"),
        new_messages=new,
    )


def retry(
    c: Claimed, *, at: int = T0 + 100, retry_at: int = T0 + 10_000, status: int = 500
) -> AttemptOutcome:
    return outcome.retry(
        c.message.id,
        c.lease_token,
        finished_ms=at,
        response=Response(status, {}, b"boom"),
        retry_at_ms=retry_at,
    )


def failed(
    c: Claimed,
    *,
    at: int = T0 + 100,
    dlq_id: str | None = None,
    status: int = 500,
    new: tuple[NewMessage, ...] = (),
) -> AttemptOutcome:
    return outcome.failed(
        c.message.id,
        c.lease_token,
        finished_ms=at,
        response=Response(status, {}, b"boom"),
        dlq_id=dlq_id or f"{at}-{next(_ids)}",
        new_messages=new,
    )


async def to_dlq(storage: Storage, *messages: NewMessage, at: int = T0) -> list[str]:
    """Insert messages, attempt each once and fail it: returns their DLQ ids in input order."""
    await insert(storage, *messages, now=at)
    claims = {c.message.id: c for c in await claim(storage, now=at + max_delay(messages))}
    outcomes = [failed(claims[m.id], at=at + 100 + i) for i, m in enumerate(messages)]
    assert await storage.record_outcomes(outcomes) == [True] * len(outcomes)
    return [o.dlq_id or "" for o in outcomes]


def max_delay(messages: Sequence[NewMessage]) -> int:
    return max(m.not_before_ms - m.created_ms for m in messages)


async def log_states(storage: Storage, message_id: str, account: str = ACCOUNT) -> list[str]:
    """The log states of one message, oldest first."""
    page = await storage.list_logs(
        account,
        filter=MessageFilter(message_ids=(message_id,)),
        before_id=None,
        count=100,
        newest_first=False,
    )
    return [e.state.value for e in page.items]


async def gather(*aws: Awaitable[Any]) -> list[Any]:
    return list(await asyncio.gather(*aws))
