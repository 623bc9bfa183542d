"""Settings: one frozen object built once by the CLI (or by tests), read everywhere else.

This module and `cli.py` are the only places that read `os.environ`.
"""

from __future__ import annotations

import base64
import hashlib
import os
from dataclasses import dataclass, field

import orjson

from homing.errors import InvalidRequest
from homing.headers import Limits


@dataclass(frozen=True, slots=True)
class AccountSeed:
    """An account that the server makes sure exists at start, with a token and signing keys."""

    account_id: str
    token: str
    current_key: str
    next_key: str
    reset_keys: bool = False  # restore these keys at every start (the public dev users)


# Spec 13: the predefined users of the QStash development server. Public credentials: the
# TypeScript SDK's dev mode recognises a dev server by user 1's token and keys.
DEV_USERS = (
    (
        "eyJVc2VySUQiOiJkZWZhdWx0VXNlciIsIlBhc3N3b3JkIjoiZGVmYXVsdFBhc3N3b3JkIn0=",
        "sig_7kYjw48mhY7kAjqNGcy6cr29RJ6r",
        "sig_5ZB6DVzB1wjE8S6rZ7eenA8Pdnhs",
    ),
    (
        "eyJVc2VySUQiOiJ0ZXN0VXNlcjEiLCJQYXNzd29yZCI6InRlc3RQYXNzd29yZCJ9",
        "sig_7GVPjvuwsfqF65iC8fSrs1dfYruM",
        "sig_5NoELc3EFnZn4DVS5bDs2Nk4b7Ua",
    ),
    (
        "eyJVc2VySUQiOiJ0ZXN0VXNlcjIiLCJQYXNzd29yZCI6InRlc3RQYXNzd29yZCJ9",
        "sig_6jWGaWRxHsw4vMSPJprXadyvrybF",
        "sig_7qHbvhmahe5GwfePDiS5Lg3pi6Qx",
    ),
    (
        "eyJVc2VySUQiOiJ0ZXN0VXNlcjMiLCJQYXNzd29yZCI6InRlc3RQYXNzd29yZCJ9",
        "sig_5T8FcSsynBjn9mMLBsXhpacRovJf",
        "sig_7GFR4YaDshFcqsxWRZpRB161jguD",
    ),
)


def dev_accounts() -> tuple[AccountSeed, ...]:
    seeds = []
    for token, current, nxt in DEV_USERS:
        user = orjson.loads(base64.b64decode(token))["UserID"]
        seeds.append(AccountSeed(user, token, current, nxt, reset_keys=True))
    return tuple(seeds)


def operator_accounts(tokens: list[str], current_key: str, next_key: str) -> list[AccountSeed]:
    """The operator's account, with every given token. Its id derives from the first token so
    that it is stable across restarts."""
    account_id = "acct_" + hashlib.sha256(tokens[0].encode()).hexdigest()[:16]
    return [AccountSeed(account_id, token, current_key, next_key) for token in tokens]


@dataclass(frozen=True, slots=True)
class Settings:
    mode: str = "dev"  # "dev" or "serve"
    host: str = "127.0.0.1"
    port: int = 8080
    data_dir: str = ".homing"
    database_url: str | None = None
    accounts: tuple[AccountSeed, ...] = ()
    allow_private_destinations: bool = True
    max_body_size: int = 10 * 1024 * 1024
    max_batch_size: int = 100 * 1024 * 1024
    limits: Limits = field(default_factory=Limits)
    dedup_window_ms: int = 10 * 60 * 1000
    schedule_grace_ms: int = 3_600_000  # a missed tick fires once if at most this late
    # An account-wide workflow notify that reaches no waiter: dropped (0, as the hosted service
    # does), or kept this long for the first waiter of its event id (opt-in).
    keep_unmatched_events_ms: int = 0
    retention_ms: int = 7 * 86_400_000
    dlq_retention_ms: int = 7 * 86_400_000
    shutdown_timeout_s: float = 8.0
    backoff_scale: float = 1.0
    concurrency: int = 512
    sqlite_synchronous: str = "FULL"
    metrics_path: str = "/metrics"  # "" turns the endpoint off
    metrics_token: str | None = None  # when set, /metrics needs `Authorization: Bearer <it>`
    otel_endpoint: str | None = None  # OTLP/HTTP traces URL; None: no spans (homing.telemetry)
    console_secret: str | None = None  # signs console sessions; None: a random key per process
    log_format: str = "text"
    allow_unsafe_durability: bool = True  # serve: refuse PostgreSQL with fsync=off unless set
    role: str = "all"  # "all", "api" or "worker": what this node runs (homing.runtime)
    lease_ms: int = 30_000  # how long a claim holds without renewal (a dead node's attempts wait)
    # PostgreSQL: the longest wait for a pooled connection, and for any one statement; past
    # either the request is answered 503 (homing.storage.postgres.pool).
    database_acquire_timeout_s: float = 2.0
    database_statement_timeout_s: float = 30.0

    @property
    def store_url(self) -> str:
        if self.database_url:
            return self.database_url
        return "sqlite:///" + os.path.join(self.data_dir, "homing.db")


ROLES = ("all", "api", "worker")


def role_problem(role: str, *, single_node: bool) -> str | None:
    """Why a node cannot run `role` on its store (`single_node`: SQLite), or None when it can."""
    if role not in ROLES:
        return f"unknown role {role!r}: use all, api or worker"
    if role != "all" and single_node:
        return (
            f"role {role!r} needs PostgreSQL: an SQLite store belongs to one process, which "
            "must run every part (use --role all, or --database postgresql://...)"
        )
    return None


def sqlite_path(url: str) -> str:
    """`sqlite:///relative/path` or `sqlite:////absolute/path` -> a file path."""
    prefix = "sqlite:///"
    if not url.startswith(prefix) or len(url) == len(prefix):
        raise InvalidRequest(
            f"invalid database URL {url!r}: use sqlite:///relative/path, "
            "sqlite:////absolute/path or postgresql://..."
        )
    return url[len(prefix) :]
