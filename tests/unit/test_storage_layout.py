"""Both storage backends are laid out alike, so that a change to one concern is found, and made,
in the same place in each.

Each dialect (`homing/storage/<dialect>/`) implements the contract (`Storage`) by concern, one
mixin per module with the same name in both; the backend class itself keeps only the lifecycle
and the purge. Each dialect's SQL is in its `queries.sql`, every named query is used, and a
query name that exists in one dialect exists in the other unless it is listed below with the
reason why only one dialect needs it. That the two behave alike is the contract suite's proof
(tests/contract/).
"""

from __future__ import annotations

import importlib
import inspect
import re
from pathlib import Path

import pytest

from homing.storage.base import Storage
from homing.storage.queries import load_queries

DIALECTS = ("sqlite", "postgres")
PACKAGE = Path(__file__).resolve().parents[2] / "homing" / "storage"

# module -> the mixin it defines, in both dialects
CONCERNS = {
    "accounts": "AccountStore",
    "messages": "MessageStore",
    "delivery": "DeliveryStore",
    "queues": "QueueStore",
    "url_groups": "UrlGroupStore",
    "schedules": "ScheduleStore",
    "flow": "FlowControlStore",
    "stats": "StatsStore",
    "workflows": "WorkflowStore",
    "waiters": "WaiterStore",
}
BACKENDS = {"sqlite": "SqliteStorage", "postgres": "PostgresStorage"}
# What the backend class implements itself: opening, closing and checking the store, and the
# housekeeping that spans every table.
LIFECYCLE = {"open", "close", "ping", "purge"}

# Named queries only one dialect has, and why. Everything else is defined in both.
SQLITE_ONLY = {
    # `homing backup` / `restore` check a copied file (PostgreSQL: pg_dump and friends).
    "backup_tables": "backup: the file holds Homing's tables",
    "backup_schema_version": "backup: the file's schema is not newer than this release",
    "backup_message_count": "backup: what the copy holds",
    # Inserts go row by row (executemany) inside the single writer, where PostgreSQL inserts a
    # whole batch with one statement over arrays.
    "find_dedup": "deduplication: look up, then write (PostgreSQL: dedup_claim)",
    "put_dedup": "deduplication: look up, then write (PostgreSQL: dedup_claim)",
    "ensure_queue": "one queue per statement (PostgreSQL: ensure_queues over arrays)",
    # Admission in three steps in the writer's transaction (PostgreSQL: one `admit` statement
    # holding the queue rows' locks).
    "queue_settings": "admission, step 1",
    "queue_busy": "admission, step 2",
    "admit_queued": "admission, step 3",
    "queue_names": "list_queues reads each queue's info in turn (PostgreSQL: queue_info)",
    # Claims: candidates are read, flow control decided in Python, then the chosen rows are
    # claimed (PostgreSQL: one `claim` statement with SKIP LOCKED, `claim_ids` for flow keys).
    "claim_candidates": "claim, step 1",
    "claim_seqs": "claim, step 2",
    # Outcomes: one message at a time (PostgreSQL: one `record_outcomes` statement per batch).
    "outcome_targets": "outcome: read the fenced targets of a batch and their cancel flags",
    "record_attempt": "outcome: write the decided effect",
    # Flow keys: read and written one at a time (PostgreSQL: locked in key order, `flow_lock`,
    # and saved together, `flow_save`; `flow_info` returns the counts in one row).
    "flow_key": "a key's settings and window",
    "flow_waiting": "a key's waitlist size",
    "flow_list": "keys matching a search",
    "flow_save_window": "write back a rolled-over window",
    "flow_started": "count deliveries started in the window",
    "flow_block": "remember when an exhausted window reopens",
    # Statistics: separate queries with and without an account, so that the account index
    # serves the first (an `IS NULL OR` condition makes SQLite scan).
    "state_counts_all": "state counts of every account",
    "dlq_count_all": "DLQ size of every account",
    # Log entry ids are issued in Python (see sqlite/core.py), continuing after the last one.
    "last_event_id": "the last log entry id at start",
}
POSTGRES_ONLY = {
    "lock_run_events": "a wait and a run-scoped notify of one (run, event) take turns across "
    "nodes (SQLite: the single writer orders them)",
    "dedup_claim": "deduplication for a batch in one statement",
    "dedup_originals": "the originals a batch's duplicates point to",
    "ensure_queues": "queues of a batch in one statement",
    "lock_queues": "queue rows locked in order before admitting or cancelling (several nodes)",
    "admit": "admission in one statement, under the queue locks",
    "claim": "claim with FOR UPDATE SKIP LOCKED (several nodes)",
    "claim_ids": "claim of messages decided under their flow keys' locks",
    "recheck_ready": "flow-key candidates re-read under the keys' locks",
    "record_outcomes": "a batch of outcomes in one statement",
    "flow_lock": "flow keys locked in key order (several nodes)",
    "flow_save": "flow keys written back together",
    "flow_info": "a key's settings and counts in one row",
    "ensure_url_group": "create the row so that it can be locked",
    "migration_lock": "one node migrates at a time",
    "notify": "wake-ups for other nodes",
    "db_now": "the clock shared by every node",
    "fsync": "durability check of the server's settings",
}


def _backend(dialect: str) -> type[Storage]:
    module = importlib.import_module(f"homing.storage.{dialect}.backend")
    cls: type[Storage] = getattr(module, BACKENDS[dialect])
    return cls


def _concern(dialect: str, module: str) -> type:
    found: type = getattr(
        importlib.import_module(f"homing.storage.{dialect}.{module}"), CONCERNS[module]
    )
    return found


def _operations(cls: type) -> set[str]:
    """The contract operations a class defines itself (not inherited)."""
    return set(vars(cls)) & Storage.__abstractmethods__


@pytest.mark.parametrize("dialect", DIALECTS)
def test_every_operation_is_implemented_once_by_its_concern_or_the_lifecycle(dialect: str) -> None:
    backend = _backend(dialect)
    assert not inspect.isabstract(backend)
    assert _operations(backend) == LIFECYCLE
    owners: dict[str, str] = {name: "backend" for name in LIFECYCLE}
    for module in CONCERNS:
        mixin = _concern(dialect, module)
        assert mixin in backend.__mro__, f"{BACKENDS[dialect]} does not mix in {mixin.__name__}"
        for name in _operations(mixin):
            assert name not in owners, f"{name} is implemented in {owners[name]} and {module}"
            owners[name] = module
    assert set(owners) == Storage.__abstractmethods__


@pytest.mark.parametrize("module", CONCERNS)
def test_each_concern_implements_the_same_operations_in_both_dialects(module: str) -> None:
    sqlite, postgres = (_operations(_concern(d, module)) for d in DIALECTS)
    assert sqlite, f"{module} implements no operation"
    assert sqlite == postgres


def test_both_query_files_define_the_same_queries_except_the_listed_ones() -> None:
    sqlite, postgres = (set(load_queries(f"homing.storage.{d}")) for d in DIALECTS)
    assert sqlite - postgres == set(SQLITE_ONLY)
    assert postgres - sqlite == set(POSTGRES_ONLY)


@pytest.mark.parametrize("dialect", DIALECTS)
def test_every_named_query_is_used_and_every_used_one_exists(dialect: str) -> None:
    source = "".join(p.read_text() for p in (PACKAGE / dialect).glob("*.py"))
    used = set(re.findall(r'Q\["(\w+)"\]', source))
    assert used == set(load_queries(f"homing.storage.{dialect}"))


# A statement written in Python instead of queries.sql: a string literal that starts one.
_INLINE_SQL = re.compile(r"""["'](SELECT|INSERT|UPDATE|DELETE|WITH|CREATE)\s""")
# connection.py and pool.py manage transactions and connections, not data; filters.py composes
# WHERE fragments from a filter (its sub-selects are part of those fragments).
_NOT_DATA = {"connection.py", "pool.py", "listener.py", "filters.py"}


@pytest.mark.parametrize("dialect", DIALECTS)
def test_no_statement_is_written_inline_in_python(dialect: str) -> None:
    for path in sorted((PACKAGE / dialect).glob("*.py")):
        if path.name not in _NOT_DATA:
            assert not _INLINE_SQL.findall(path.read_text()), f"inline SQL in {dialect}/{path.name}"
