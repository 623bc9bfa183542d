"""The storage contract: domain operations every backend implements, and nothing else.

Storage records decisions; it does not make them. Retry timing, header semantics, fan-out,
callback bodies, what an outcome writes (also when the message was canceled meanwhile), log
entries, flow-control capacity and URL-group membership are decided by pure code
(`homing.publish`, `homing.retry`, `homing.delivery.outcome`, `homing.log_events`,
`homing.flow_control`, `homing.url_groups`) and handed over as values. What storage
owns is what must be atomic or global: deduplication, claiming (each due message to exactly one
claimer), lease fencing, FIFO admission for queues, and the log of state transitions.

Every method's docstring states its guarantee; `tests/contract/` checks each guarantee against
every backend.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from homing.health import Health
from homing.models import (
    AttemptOutcome,
    Claimed,
    FlowKeyInfo,
    InsertResult,
    Lease,
    LogEntry,
    Message,
    MessageFilter,
    NewMessage,
    NewRun,
    NewWaiter,
    Page,
    Principal,
    Registered,
    Run,
    RunAppend,
    RunEnd,
    RunFilter,
    RunState,
    RunStep,
    Schedule,
    SigningKeys,
    TokenInfo,
    Waiter,
)
from homing.publish import Endpoint

WakeListener = Callable[[int], None]


class Taker(Protocol):
    """The delivery engine of this process, taking messages straight from the insert that
    stores them.

    A message due at once (no queue, no flow-control key) is the common case, and claiming it
    back from the store costs a transaction, an fsync and a wake-up before its first attempt
    can start. Instead the insert asks the taker for room (`reserve`), stores as many such
    messages as it got room for already ACTIVE under the taker's lease (logging CREATED, then
    ACTIVE), and hands them over once the transaction is durable (`take`), or gives the room
    back when it was not (`release`). Fencing, lease renewal, expiry and recovery are those of
    any claim: a node that dies before the attempt leaves a lease that expires."""

    def reserve(self, count: int) -> Lease | None:
        """Room for up to `count` messages now, or None (stopping, or no free slot)."""

    def take(self, lease: Lease, claimed: Sequence[Claimed]) -> None:
        """The messages stored under `lease` (at most `lease.slots`), durable: attempt them."""

    def release(self, lease: Lease) -> None:
        """Nothing was stored under `lease`: its room is free again."""


@dataclass(frozen=True, slots=True)
class QueueInfo:
    name: str
    parallelism: int
    paused: bool
    created_ms: int
    updated_ms: int
    lag: int


@dataclass(frozen=True, slots=True)
class UrlGroup:
    name: str
    created_ms: int
    updated_ms: int
    endpoints: tuple[Endpoint, ...]


class Storage(abc.ABC):
    """One backend's implementation of Homing's persistent state."""

    # True when one process owns the store (SQLite): at start, every claim is an orphan.
    single_node: bool = False

    def __init__(self) -> None:
        self._listeners: list[WakeListener] = []
        self._taker: Taker | None = None

    # -- lifecycle ------------------------------------------------------------------------

    @abc.abstractmethod
    async def open(self) -> None:
        """Connect and apply pending migrations (safe when several nodes start together)."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Release every connection and thread; idempotent."""

    @abc.abstractmethod
    async def ping(self) -> None:
        """Raise StorageUnavailable unless the store answers and is migrated."""

    def report_to(self, health: Health) -> None:  # noqa: B027 - optional for a backend
        """Report conditions that make this node unready (e.g. a full disk) to `health`."""

    def add_wake_listener(self, listener: WakeListener) -> None:
        """`listener(due_ms)` is called (on the event loop) when a message becomes claimable at
        `due_ms`, on this node or, where the backend can tell, on another. Only a hint: the
        engine also polls."""
        self._listeners.append(listener)

    def _wake(self, due_ms: int) -> None:
        for listener in self._listeners:
            listener(due_ms)

    def attach_taker(self, taker: Taker) -> None:
        """From now on, `insert_messages` stores messages due at once already claimed by
        `taker` when it has room, and hands them to it once durable (see `Taker`)."""
        self._taker = taker

    # -- accounts, tokens, signing keys ---------------------------------------------------

    @abc.abstractmethod
    async def ensure_account(
        self,
        account_id: str,
        *,
        now_ms: int,
        keys: SigningKeys,
        token: str | None = None,
        reset_keys: bool = False,
    ) -> None:
        """Create the account if missing (with `keys`); with `reset_keys`, set its keys to
        `keys` even if it exists. With `token`, make that token (stored hashed) a read-write
        token of the account."""

    @abc.abstractmethod
    async def authenticate(self, token: str) -> Principal | None:
        """The principal of a valid, unrevoked token; None otherwise."""

    @abc.abstractmethod
    async def token_active(self, token_id: str) -> bool:
        """Whether the token with this id exists and is not revoked (console sessions)."""

    @abc.abstractmethod
    async def signing_keys(self, account_id: str) -> SigningKeys:
        """The account's current and next signing keys."""

    @abc.abstractmethod
    async def rotate_signing_keys(self, account_id: str, new_next: str) -> SigningKeys:
        """current := next, next := new_next, atomically; returns the new pair."""

    @abc.abstractmethod
    async def create_token(
        self,
        account_id: str,
        token: str,
        *,
        name: str | None,
        read_only: bool,
        now_ms: int,
        new_keys: SigningKeys,
    ) -> TokenInfo:
        """Store a new token (hashed) for the account, creating the account with `new_keys`
        if it does not exist. Names are unique among unrevoked tokens (InvalidRequest)."""

    @abc.abstractmethod
    async def list_tokens(self) -> list[TokenInfo]:
        """Every token, revoked ones included, oldest first."""

    @abc.abstractmethod
    async def revoke_token(self, id_or_name: str, *, now_ms: int) -> TokenInfo | None:
        """Revoke by id or name; effective for the next request on every node."""

    @abc.abstractmethod
    async def list_accounts(self) -> list[str]:
        """Every account id."""

    # -- messages ---------------------------------------------------------------------------

    @abc.abstractmethod
    async def insert_messages(
        self, messages: Sequence[NewMessage], *, now_ms: int, dedup_window_ms: int
    ) -> list[InsertResult]:
        """Store messages in one transaction and log CREATED for each; durable on return.

        A message whose `dedup_key` was used by a message of the same account within the last
        `dedup_window_ms` is not stored: its result names the original message and
        `deduplicated=True`. Messages with a `queue_name` join the end of their queue
        (creating it with parallelism 1 if needed) and are admitted in FIFO order. Results are
        in input order. With a taker attached, messages due at once without a queue or a
        flow-control key may be stored ACTIVE under its lease and handed to it (`Taker`)."""

    @abc.abstractmethod
    async def get_message(self, account_id: str, message_id: str) -> Message | None:
        """A message of this account in any state, while it is retained."""

    @abc.abstractmethod
    async def cancel_messages(
        self,
        account_id: str,
        *,
        message_ids: Sequence[str] | None,
        filter: MessageFilter | None,
        limit: int | None,
        now_ms: int,
    ) -> int:
        """Cancel non-final messages: the given ids, or those matching `filter` (all when both
        are None), at most `limit`. A pending message becomes CANCELED (logs CANCEL_REQUESTED,
        CANCELED); an active one is marked (logs CANCEL_REQUESTED) and its outcome decides. A
        message already marked is not counted again. Returns how many were counted."""

    # -- delivery ---------------------------------------------------------------------------

    @abc.abstractmethod
    async def claim_due(
        self,
        *,
        now_ms: int,
        limit: int,
        node_id: str,
        lease_ms: int,
        due_by_ms: int | None = None,
    ) -> list[Claimed]:
        """Claim up to `limit` READY messages with `due_ms <= now_ms`, oldest due first, and log
        ACTIVE for each (at `now_ms`). Each due message goes to exactly one claimer; each claim
        carries a new lease token and expires at `now_ms + lease_ms` unless renewed.

        With `due_by_ms`, messages without a flow-control key that fall due by then are
        claimed too (ahead of time: the claimer sends each at its `due_ms`, after checking
        `cancel_requested`); flow-controlled ones only once due, since their capacity is
        counted when they start."""

    @abc.abstractmethod
    async def cancel_requested(self, message_id: str) -> bool:
        """Whether a cancel was requested for this message (or it no longer exists)."""

    @abc.abstractmethod
    async def next_due_ms(self) -> int | None:
        """The earliest `due_ms` of any READY message, or None."""

    @abc.abstractmethod
    async def renew_leases(self, node_id: str, *, until_ms: int) -> int:
        """Extend every active claim held by `node_id` to `until_ms`."""

    @abc.abstractmethod
    async def record_outcomes(self, outcomes: Sequence[AttemptOutcome]) -> list[bool]:
        """Record each attempt's outcome with the messages it creates, atomically per outcome.

        An outcome whose lease token no longer matches an ACTIVE message is ignored (False).
        Otherwise the message gets `outcome.effect`, or `outcome.if_canceled` when a cancel was
        requested while the attempt was in flight: its state, times and DLQ entry, its log
        entries (at `finished_ms`, in order) and its new messages, exactly as decided by
        `homing.delivery.outcome`. A message whose effect is final frees its queue slot."""

    @abc.abstractmethod
    async def release_leases(self, *, node_id: str | None, now_ms: int) -> int:
        """Make active claims of `node_id` (every node's when None) READY again, due now."""

    @abc.abstractmethod
    async def release_expired_leases(self, *, now_ms: int) -> int:
        """Make claims whose lease expired before `now_ms` READY again, due now."""

    # -- dead-letter queue ------------------------------------------------------------------

    @abc.abstractmethod
    async def list_dlq(
        self,
        account_id: str,
        *,
        filter: MessageFilter,
        cursor: str | None,
        count: int,
        newest_first: bool = False,
    ) -> Page[Message]:
        """DLQ entries matching `filter`, paged by an opaque cursor positioned after the last
        entry returned (stable when entries before it are deleted)."""

    @abc.abstractmethod
    async def get_dlq(self, account_id: str, dlq_id: str) -> Message | None:
        """One DLQ entry."""

    @abc.abstractmethod
    async def delete_dlq(self, account_id: str, dlq_ids: Sequence[str]) -> int:
        """Remove entries from the DLQ; returns how many existed."""

    @abc.abstractmethod
    async def replace_dlq(
        self,
        account_id: str,
        replacements: Sequence[tuple[str, NewMessage]],
        *,
        now_ms: int,
        dedup_window_ms: int,
    ) -> list[InsertResult | None]:
        """For each (dlq_id, message): atomically remove the entry and insert the message. An
        entry already gone yields None and inserts nothing, so a retry never runs twice."""

    # -- logs -------------------------------------------------------------------------------

    @abc.abstractmethod
    async def list_logs(
        self,
        account_id: str,
        *,
        filter: MessageFilter,
        before_id: int | None,
        count: int,
        newest_first: bool = True,
    ) -> Page[LogEntry]:
        """Log entries matching `filter`. The page's cursor is the id of its last entry;
        passing it back as `before_id` (exclusive) continues the listing without skipping or
        repeating an entry."""

    # -- queues -----------------------------------------------------------------------------

    @abc.abstractmethod
    async def upsert_queue(
        self, account_id: str, name: str, *, parallelism: int, paused: bool, now_ms: int
    ) -> None:
        """Create or update a queue; admits waiting messages if capacity grew or it resumed."""

    @abc.abstractmethod
    async def get_queue(self, account_id: str, name: str) -> QueueInfo | None: ...

    @abc.abstractmethod
    async def list_queues(self, account_id: str) -> list[QueueInfo]: ...

    @abc.abstractmethod
    async def set_queue_paused(
        self, account_id: str, name: str, *, paused: bool, now_ms: int
    ) -> bool:
        """Pause or resume; False when the queue does not exist."""

    @abc.abstractmethod
    async def delete_queue(self, account_id: str, name: str, *, now_ms: int) -> None:
        """Delete the queue and cancel its messages that have not started."""

    # -- URL groups -------------------------------------------------------------------------

    @abc.abstractmethod
    async def upsert_endpoints(
        self, account_id: str, group: str, endpoints: Sequence[Endpoint], *, now_ms: int
    ) -> None:
        """Create the group if needed; an endpoint with the same url (or name, when given)
        replaces the existing one in place; others are appended."""

    @abc.abstractmethod
    async def remove_endpoints(
        self, account_id: str, group: str, endpoints: Sequence[Endpoint], *, now_ms: int
    ) -> bool:
        """Remove endpoints matching by url or name; an emptied group is deleted. False when the
        group does not exist."""

    @abc.abstractmethod
    async def get_url_group(self, account_id: str, name: str) -> UrlGroup | None: ...

    @abc.abstractmethod
    async def list_url_groups(self, account_id: str) -> list[UrlGroup]: ...

    @abc.abstractmethod
    async def delete_url_group(self, account_id: str, name: str) -> None: ...

    # -- schedules --------------------------------------------------------------------------

    @abc.abstractmethod
    async def upsert_schedule(self, schedule: Schedule) -> None:
        """Create the schedule, or replace every field of the one with the same id (keeping
        its creation time)."""

    @abc.abstractmethod
    async def get_schedule(self, account_id: str, schedule_id: str) -> Schedule | None:
        """The schedule with `last_states` of the messages of its latest fire."""

    @abc.abstractmethod
    async def list_schedules(self, account_id: str) -> list[Schedule]: ...

    @abc.abstractmethod
    async def delete_schedule(self, account_id: str, schedule_id: str) -> bool:
        """Delete; it never fires afterwards. False when it did not exist."""

    @abc.abstractmethod
    async def set_schedule_paused(
        self, account_id: str, schedule_id: str, *, paused: bool, next_fire_ms: int | None
    ) -> bool:
        """Pause or resume (with the next fire time counted from now). False when unknown."""

    @abc.abstractmethod
    async def due_schedules(self, *, now_ms: int, limit: int) -> list[Schedule]:
        """Schedules that are not paused and whose next fire time has come."""

    @abc.abstractmethod
    async def next_schedule_ms(self) -> int | None:
        """The earliest next fire time of any schedule that is not paused."""

    @abc.abstractmethod
    async def record_fire(
        self,
        schedule: Schedule,
        *,
        tick_ms: int | None,
        messages: Sequence[NewMessage],
        next_fire_ms: int | None,
        error: str | None,
        now_ms: int,
    ) -> bool:
        """Record one fire of `schedule` at `tick_ms` and insert its messages, atomically.

        Exactly one fire per (schedule, tick) is ever recorded: a second call for the same tick
        (another node, a retry) inserts nothing and returns False. Nothing is inserted either
        if the schedule was deleted, paused or replaced since it was read. `tick_ms` None
        records no fire and only moves the next fire time (a tick skipped as too old)."""

    async def check_durability(self) -> str | None:
        """A warning when the store does not make commits durable, else None."""
        return None

    async def db_now_ms(self) -> int | None:
        """The database's clock, where the store has one that all nodes share; None otherwise.
        Schedule decisions use it so that a skewed node clock neither fires early nor twice."""
        return None

    # -- flow control -----------------------------------------------------------------------

    @abc.abstractmethod
    async def get_flow_key(self, account_id: str, key: str, *, now_ms: int) -> FlowKeyInfo | None:
        """A key's configuration and live counts; it exists from the first publish using it."""

    @abc.abstractmethod
    async def list_flow_keys(
        self, account_id: str, *, search: str | None, now_ms: int
    ) -> list[FlowKeyInfo]: ...

    @abc.abstractmethod
    async def set_flow_paused(
        self, account_id: str, key: str, *, paused: bool, now_ms: int
    ) -> bool:
        """A paused key starts no deliveries; its messages wait. False when unknown."""

    @abc.abstractmethod
    async def pin_flow(
        self,
        account_id: str,
        key: str,
        *,
        parallelism: int | None,
        rate: int | None,
        period_s: int | None,
        now_ms: int,
    ) -> bool:
        """Fix parallelism and/or rate (+period) against changes by new messages; pinning the
        rate restarts its window. False when unknown."""

    @abc.abstractmethod
    async def unpin_flow(
        self, account_id: str, key: str, *, parallelism: bool, rate: bool
    ) -> bool: ...

    @abc.abstractmethod
    async def reset_flow_rate(self, account_id: str, key: str, *, now_ms: int) -> bool:
        """Rate count to 0 and a new window from now."""

    @abc.abstractmethod
    async def active_count(self, account_id: str) -> int:
        """Deliveries of the account in flight right now (global parallelism)."""

    # -- statistics (console, metrics) -----------------------------------------------------

    @abc.abstractmethod
    async def event_counts(
        self, account_id: str | None, *, since_ms: int, bucket_ms: int
    ) -> list[tuple[int, str, int]]:
        """(bucket start, log state, count) of log entries since `since_ms`, in time buckets
        of `bucket_ms`; all accounts when `account_id` is None."""

    @abc.abstractmethod
    async def state_counts(self, account_id: str | None) -> dict[str, int]:
        """How many messages are in each `MessageState`, plus `dlq` (entries in the DLQ)."""

    @abc.abstractmethod
    async def delivery_latencies(
        self, account_id: str | None, *, since_ms: int, limit: int
    ) -> list[int]:
        """Milliseconds from due (not-before) to delivered, for up to `limit` recent deliveries."""

    # -- workflow runs ----------------------------------------------------------------------

    @abc.abstractmethod
    async def start_run(
        self,
        run: NewRun,
        init: NewMessage,
        *,
        now_ms: int,
        dedup_window_ms: int,
        copied: Sequence[RunStep] = (),
    ) -> InsertResult:
        """Create a run with its init message (step list position 0, body = the initial
        payload) in one transaction; durable on return. While the account has an active
        (RUN_STARTED) run of the same id, nothing is stored and the result names that run's
        init message with `deduplicated=True`, on every node at once.

        With `copied` (a run resumed from the workflow DLQ) the step list starts with those
        entries as they are (never delivered again) and `init` follows them, with its own body
        and call type: the message the failed run stopped at, delivered anew."""

    @abc.abstractmethod
    async def append_to_run(
        self,
        account_id: str,
        run_id: str,
        items: Sequence[RunAppend],
        *,
        now_ms: int,
        dedup_window_ms: int,
    ) -> list[InsertResult] | None:
        """Store messages of the account's active run `run_id`, appending the `listed` ones to
        its step list in input order, in one transaction that orders appends of the same run
        (positions follow acceptance on every node). An item whose `step_key` the run already
        has is neither stored nor appended: its result names the original message, with
        `deduplicated=True`. None (nothing stored) when the run is unknown or final."""

    @abc.abstractmethod
    async def run_steps(
        self, account_id: str, run_id: str, *, upto_message_id: str | None
    ) -> list[RunStep] | None:
        """The step list of the account's active run, in order, up to and including the entry
        of `upto_message_id` (all of it when None, or when that message is not listed). None
        when there is no active run of that id."""

    @abc.abstractmethod
    async def get_run(self, account_id: str, run_id: str) -> Run | None:
        """The account's latest run of this id, with its whole step list."""

    @abc.abstractmethod
    async def list_runs(
        self, account_id: str, *, filter: RunFilter, cursor: str | None, count: int
    ) -> Page[Run]:
        """Runs matching `filter`, newest first, `count` per page (without their steps);
        the page's cursor continues after its last run, None on the last page."""

    @abc.abstractmethod
    async def end_run(
        self,
        account_id: str,
        run_id: str,
        *,
        state: RunState,
        now_ms: int,
        result: bytes | None = None,
        failure: str | None = None,
        new_messages: Sequence[NewMessage] = (),
    ) -> RunEnd:
        """End the account's active run of this id in `state` (final), once: of concurrent
        calls on any nodes, exactly one sees `changed=True`, and only that call stores
        `new_messages` (the run's failure callback), in the same transaction. Without an
        active run, reports the latest run's state unchanged (`found=False` when the id never
        ran). The result lists the run's message ids, for the caller to cancel those still
        pending."""

    # -- workflow waiters -------------------------------------------------------------------

    @abc.abstractmethod
    async def add_waiter(
        self, waiter: NewWaiter, *, unmatched_since_ms: int | None = None
    ) -> Registered:
        """Register a waiter, durable on return. If the run already has a waiter at the same
        step (`step_key`), nothing is stored and that one is returned (`duplicate=True`).
        Otherwise, if an event is kept for (account, run, event id) — or, with
        `unmatched_since_ms`, an account-wide event of that id kept since then — the oldest
        one is consumed in the same transaction and returned with the waiter. Ordered against
        `waiters_to_notify` of the same (run or account, event) on every node: an event is
        either kept before the waiter registers (and consumed by it) or finds the waiter."""

    @abc.abstractmethod
    async def waiters_to_notify(
        self,
        account_id: str,
        event_id: str,
        *,
        run_id: str | None,
        keep: bytes | None,
        now_ms: int,
        limit: int,
    ) -> list[Waiter]:
        """The waiters an event reaches: every waiter of the account for `event_id` (at most
        `limit`, oldest first), or only the run's when `run_id` is given; only waiters of
        active runs. With `keep`, when no waiter is found, `keep` is stored as the event's data
        in the same transaction: for the run's next wait (`run_id`), or account-wide for the
        first wait of the event id (`add_waiter(unmatched_since_ms=...)`). Nothing is
        removed: a waiter leaves with `remove_waiter` once its result is in the run."""

    @abc.abstractmethod
    async def list_waiters(self, account_id: str, event_id: str, *, limit: int) -> list[Waiter]:
        """The account's waiters for `event_id`, oldest first, at most `limit`."""

    @abc.abstractmethod
    async def run_waiters(self, account_id: str, run_id: str, *, limit: int) -> list[Waiter]:
        """The run's waiters, oldest first, at most `limit` (what its console page lists)."""

    @abc.abstractmethod
    async def due_waiters(self, *, now_ms: int, limit: int) -> list[Waiter]:
        """Waiters of every account whose deadline is at or before `now_ms`, earliest first."""

    @abc.abstractmethod
    async def next_waiter_deadline(self) -> int | None:
        """The earliest deadline of any waiter, None when nobody waits."""

    @abc.abstractmethod
    async def remove_waiter(self, waiter_id: str) -> bool:
        """Forget a waiter; True only for the call that removed it."""

    @abc.abstractmethod
    async def expire_events(self, *, before_ms: int) -> int:
        """Forget events kept for a run's next wait that were stored before `before_ms`."""

    # -- housekeeping -----------------------------------------------------------------------

    @abc.abstractmethod
    async def purge(self, *, now_ms: int, retention_ms: int, dlq_retention_ms: int) -> int:
        """Forget expired deduplication keys, DLQ entries older than `dlq_retention_ms`, and
        final messages with their logs, and workflow runs that ended with their step lists,
        older than `retention_ms`."""
