"""Homing's domain objects: plain frozen dataclasses, no I/O.

Times are Unix milliseconds (`*_ms`) unless a name says seconds (`*_s`). Header maps are
`{canonical name: [values]}`, the shape QStash uses on the wire.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

T = TypeVar("T")

Headers = dict[str, list[str]]


class MessageState(enum.StrEnum):
    """Where a message is in its life. Storage keeps exactly one of these per message.

    QUEUED    waits for its queue to admit it (FIFO order, parallelism)
    READY     may be claimed once `due_ms` has passed (first attempt or a retry)
    WAITING   due, but held in its flow-control key's waitlist until the key has capacity
    ACTIVE    claimed by a node; an attempt is running under a lease
    DELIVERED final: a 2xx was received
    FAILED    final: retries exhausted or non-retryable; the message sits in the DLQ
    CANCELED  final: cancelled before it could be delivered
    """

    QUEUED = "queued"
    READY = "ready"
    WAITING = "waiting"
    ACTIVE = "active"
    DELIVERED = "delivered"
    FAILED = "failed"
    CANCELED = "canceled"

    @property
    def is_final(self) -> bool:
        return self in (MessageState.DELIVERED, MessageState.FAILED, MessageState.CANCELED)


FINAL_STATES = (MessageState.DELIVERED, MessageState.FAILED, MessageState.CANCELED)


class LogState(enum.StrEnum):
    """The log (event) states of QStash, spelled exactly as the SDKs expect."""

    CREATED = "CREATED"
    ACTIVE = "ACTIVE"
    RETRY = "RETRY"
    ERROR = "ERROR"
    DELIVERED = "DELIVERED"
    FAILED = "FAILED"
    CANCEL_REQUESTED = "CANCEL_REQUESTED"
    CANCELED = "CANCELED"


class MessageKind(enum.StrEnum):
    MESSAGE = "message"
    CALLBACK = "callback"
    FAILURE_CALLBACK = "failure_callback"


@dataclass(frozen=True, slots=True)
class CallbackSpec:
    """Where and how to send a callback or failure callback."""

    url: str
    headers: Headers = field(default_factory=dict)
    method: str = "POST"
    retries: int | None = None  # None: the message's own max retries
    retry_delay: str | None = None
    timeout_s: int | None = None
    delay_s: int | None = None
    # Workflow control of the callback message (`Upstash-Callback-Workflow-RunId` as
    # `upstash-workflow-runid`, ...): it makes the callback a message of the run.
    control: dict[str, str] = field(default_factory=dict)
    workflow: WorkflowTag | None = None  # set when the callback belongs to a run


@dataclass(frozen=True, slots=True)
class FlowControl:
    key: str
    parallelism: int | None = None
    rate: int | None = None
    period_s: int = 1


@dataclass(frozen=True, slots=True)
class Redaction:
    body: bool = False
    all_headers: bool = False
    header_names: frozenset[str] = frozenset()  # lower-cased

    @property
    def any(self) -> bool:
        return self.body or self.all_headers or bool(self.header_names)

    def redacts_header(self, name: str) -> bool:
        return self.all_headers or name.lower() in self.header_names


@dataclass(frozen=True, slots=True)
class DeliverySpec:
    """Everything needed to make (and repeat) the HTTP request of one message.

    Stored as one JSON document per message: it is read whole by the engine and never queried.
    """

    method: str = "POST"
    headers: Headers = field(default_factory=dict)
    max_retries: int = 3
    retry_delay: str | None = None
    timeout_s: int | None = None  # None: the configured maximum
    callback: CallbackSpec | None = None
    failure_callback: CallbackSpec | None = None
    redact: Redaction = Redaction()
    trace: dict[str, str] = field(default_factory=dict)  # W3C traceparent / tracestate
    kind: MessageKind = MessageKind.MESSAGE
    workflow: WorkflowTag | None = None  # set on the messages of an Upstash Workflow run


@dataclass(frozen=True, slots=True)
class NewMessage:
    """A message decided by policy code and ready to be stored."""

    id: str
    account_id: str
    url: str
    body: bytes
    spec: DeliverySpec
    created_ms: int
    not_before_ms: int
    caller_ip: str = ""
    queue_name: str | None = None
    topic_name: str | None = None
    endpoint_name: str | None = None
    schedule_id: str | None = None
    labels: tuple[str, ...] = ()
    flow: FlowControl | None = None
    dedup_key: str | None = None  # already scoped to the destination URL
    # A callback of a queued message holds its parent's queue slot until it is final, so the
    # next message of a FIFO queue waits for the callbacks of the current one.
    queue_slot: str | None = None


@dataclass(frozen=True, slots=True)
class Response:
    """What a destination answered (or did not)."""

    status: int  # 0 when no HTTP response was received
    headers: Headers = field(default_factory=dict)
    body: bytes = b""
    error: str | None = None  # transport error text when status == 0


@dataclass(frozen=True, slots=True)
class Message:
    """A stored message, as storage returns it."""

    id: str
    account_id: str
    url: str
    body: bytes
    spec: DeliverySpec
    state: MessageState
    created_ms: int
    not_before_ms: int
    due_ms: int | None
    attempts: int  # attempts made so far; the next attempt is sent with Upstash-Retried = attempts
    caller_ip: str = ""
    queue_name: str | None = None
    topic_name: str | None = None
    endpoint_name: str | None = None
    schedule_id: str | None = None
    labels: tuple[str, ...] = ()
    flow: FlowControl | None = None
    cancel_requested: bool = False
    dlq_id: str | None = None
    dlq_ms: int | None = None
    last_response: Response | None = None
    final_ms: int | None = None


@dataclass(frozen=True, slots=True)
class Claimed:
    """A message claimed for one attempt, fenced by its lease token."""

    message: Message
    lease_token: int


@dataclass(frozen=True, slots=True)
class Lease:
    """Room a delivery engine reserved for messages stored already claimed by it (see
    `homing.storage.base.Taker`): at most `slots` messages, leased to `node_id` until
    `until_ms` under `token`."""

    node_id: str
    until_ms: int
    token: int
    slots: int


class OutcomeKind(enum.StrEnum):
    DELIVERED = "delivered"
    RETRY = "retry"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class LogEvent:
    """One log entry that recording something writes (its time is the recording's)."""

    state: LogState
    info: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class Effect:
    """What recording an attempt writes to its message, decided in full by pure code
    (`homing.delivery.outcome`): storage copies these values and does nothing else."""

    state: MessageState  # DELIVERED, READY (a retry), FAILED or CANCELED
    due_ms: int | None  # READY only: when the retry is due
    final_ms: int | None  # final states only
    dlq_id: str | None  # FAILED only: the message enters the DLQ under this id
    dlq_ms: int | None
    events: tuple[LogEvent, ...]  # logged at the outcome's `finished_ms`, in this order
    new_messages: tuple[NewMessage, ...] = ()  # callbacks, failure callbacks

    @property
    def frees_slot(self) -> bool:
        """A message that is done frees its queue slot; a retry keeps it (FIFO order)."""
        return self.final_ms is not None


@dataclass(frozen=True, slots=True)
class AttemptOutcome:
    """The decision about one attempt, to be recorded atomically with the messages it creates.

    Storage applies it only while the lease token still matches (a node whose lease expired
    cannot overwrite the result of the node that took over). It records `effect`, or
    `if_canceled` when a cancel was requested while the attempt was in flight: storage reads
    that flag and picks the branch, both of which `homing.delivery.outcome` decided.
    """

    message_id: str
    lease_token: int
    kind: OutcomeKind
    finished_ms: int
    response: Response
    effect: Effect
    if_canceled: Effect

    def effect_for(self, *, cancel_requested: bool) -> Effect:
        return self.if_canceled if cancel_requested else self.effect

    @property
    def retry_at_ms(self) -> int | None:
        return self.effect.due_ms

    @property
    def dlq_id(self) -> str | None:
        return self.effect.dlq_id

    @property
    def new_messages(self) -> tuple[NewMessage, ...]:
        return self.effect.new_messages


@dataclass(frozen=True, slots=True)
class InsertResult:
    message_id: str
    url: str
    deduplicated: bool = False


@dataclass(frozen=True, slots=True)
class SigningKeys:
    current: str
    next: str


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the account a token belongs to, and what the token may do."""

    account_id: str
    read_only: bool = False
    token_id: str | None = None


@dataclass(frozen=True, slots=True)
class TokenInfo:
    """A stored API token, without the token itself (only its hash is kept)."""

    id: str
    account_id: str
    name: str | None
    read_only: bool
    created_ms: int
    revoked_ms: int | None = None


@dataclass(frozen=True, slots=True)
class MessageFilter:
    """Filters shared by logs, DLQ and bulk cancel. Values of one field are OR-ed."""

    message_ids: tuple[str, ...] = ()
    dlq_ids: tuple[str, ...] = ()
    urls: tuple[str, ...] = ()
    hosts: tuple[str, ...] = ()
    paths: tuple[str, ...] = ()
    topic_names: tuple[str, ...] = ()
    queue_names: tuple[str, ...] = ()
    schedule_ids: tuple[str, ...] = ()
    labels: tuple[str, ...] = ()
    flow_control_keys: tuple[str, ...] = ()
    caller_ips: tuple[str, ...] = ()
    response_statuses: tuple[int, ...] = ()
    states: tuple[LogState, ...] = ()
    from_ms: int | None = None
    to_ms: int | None = None


@dataclass(frozen=True, slots=True)
class LogEntry:
    id: int
    time_ms: int
    state: LogState
    message: Message
    info: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    items: list[T]
    cursor: str | None = None


class ScheduleState(enum.StrEnum):
    """What a schedule reports for the messages of its latest fire."""

    IN_PROGRESS = "IN_PROGRESS"
    SUCCESS = "SUCCESS"
    FAIL = "FAIL"


@dataclass(frozen=True, slots=True)
class Schedule:
    """A cron schedule and the template of the messages each fire publishes."""

    id: str
    account_id: str
    cron: str
    destination: str  # a URL or a URL-group name, verbatim
    body: bytes
    spec: DeliverySpec
    created_ms: int
    caller_ip: str = ""
    delay_s: int = 0
    queue_name: str | None = None
    labels: tuple[str, ...] = ()
    flow: FlowControl | None = None
    paused: bool = False
    last_fire_ms: int | None = None
    next_fire_ms: int | None = None
    last_states: dict[str, ScheduleState] = field(default_factory=dict)
    error: str | None = None
    version: int = 0  # changes on every overwrite or pause; a fire of a stale read is refused


@dataclass(frozen=True, slots=True)
class FlowKeyInfo:
    """The live state of one flow-control key (`GET /v2/flowControl/{key}`)."""

    key: str
    wait_list_size: int
    parallelism_max: int
    parallelism_count: int
    rate_max: int
    rate_count: int
    rate_period_s: int
    rate_period_start_ms: int
    paused: bool
    pinned_parallelism: bool
    pinned_rate: bool


# -- workflow runs ----------------------------------------------------------------------------


class RunState(enum.StrEnum):
    """Where an Upstash Workflow run is, spelled as the workflow logs API reports it.

    STARTED is the only non-final state: a run ends exactly once, in one of the other three.
    """

    STARTED = "RUN_STARTED"
    SUCCESS = "RUN_SUCCESS"
    FAILED = "RUN_FAILED"
    CANCELED = "RUN_CANCELED"

    @property
    def is_final(self) -> bool:
        return self is not RunState.STARTED


class CallType(enum.StrEnum):
    """What a message of a run is (`Upstash-Workflow-CallType`); unknown types are kept as
    text in the step list, so this names only those Homing treats differently."""

    STEP = "step"
    TO_CALLBACK = "toCallback"
    FROM_CALLBACK = "fromCallback"
    FAILURE_CALL = "failureCall"


@dataclass(frozen=True, slots=True)
class WorkflowTag:
    """What a message knows of the run it belongs to (kept in its delivery spec)."""

    run_id: str
    created_ms: int  # the run's creation time (`Upstash-Workflow-CreatedAt`)
    call_type: str = CallType.STEP.value
    init: bool = False  # the run's init message (WF_DetectTrigger applies to its delivery)
    detect_trigger: bool = False
    # Delivered with the run's step list as body (steps to the workflow URL); callbacks and
    # calls to third parties carry their own body.
    step_list: bool = True


@dataclass(frozen=True, slots=True)
class Invoker:
    """The run that started a run with `context.invoke`: where the child's result goes, as the
    invoke publish described it (the parent's publish headers and its step, JSON)."""

    run_id: str
    url: str
    created_ms: int
    headers: Headers = field(default_factory=dict)
    step: bytes = b"{}"


@dataclass(frozen=True, slots=True)
class RunConfig:
    """What the init message configured for the whole run (`WF_TriggerOnConfig`)."""

    headers: Headers = field(default_factory=dict)  # run headers: re-attached to deliveries
    features: tuple[str, ...] = ()
    retries: int | None = None
    retry_delay: str | None = None
    flow: FlowControl | None = None
    failure_callback: CallbackSpec | None = None
    redact: Redaction = Redaction()
    invoker: Invoker | None = None  # a child run started by `context.invoke`


@dataclass(frozen=True, slots=True)
class RunStep:
    """One entry of a run's step list: a message of the run, in the order it was accepted."""

    position: int  # 0 is the init message (its body is the initial payload)
    message_id: str
    call_type: str
    body: bytes
    created_ms: int


@dataclass(frozen=True, slots=True)
class NewRun:
    """A run decided by policy code, stored together with its init message."""

    account_id: str
    run_id: str
    url: str
    created_ms: int
    payload: bytes
    init_message_id: str
    config: RunConfig = RunConfig()
    labels: tuple[str, ...] = ()
    caller_ip: str = ""


@dataclass(frozen=True, slots=True)
class RunAppend:
    """A message of an existing run, to be stored and (when `listed`) appended to its step
    list. `step_key` identifies the step a result stands for (pure: `workflow.steps`); a
    second message with the same key is accepted but neither stored nor appended."""

    message: NewMessage
    call_type: str
    step_key: str | None = None
    listed: bool = True


@dataclass(frozen=True, slots=True)
class Run:
    """A stored workflow run."""

    account_id: str
    run_id: str
    url: str
    state: RunState
    created_ms: int
    payload: bytes
    init_message_id: str
    config: RunConfig = RunConfig()
    labels: tuple[str, ...] = ()
    caller_ip: str = ""
    ended_ms: int | None = None
    result: bytes | None = None  # the body of the successful run end (`workflowRunResponse`)
    failure: str | None = None  # why the run failed, as text
    step_count: int = 0  # entries in the step list, the init included
    steps: tuple[RunStep, ...] = ()  # filled by get_run; list_runs leaves it empty


@dataclass(frozen=True, slots=True)
class RunFilter:
    """Which runs a listing or a bulk cancel covers. Values of one field are OR-ed."""

    run_ids: tuple[str, ...] = ()
    url: str | None = None
    url_exact: bool = False  # else `url` is a prefix
    states: tuple[RunState, ...] = ()
    labels: tuple[str, ...] = ()
    caller_ips: tuple[str, ...] = ()
    flow_control_keys: tuple[str, ...] = ()
    from_ms: int | None = None
    to_ms: int | None = None


@dataclass(frozen=True, slots=True)
class RunEnd:
    """What ending a run did: `changed` only for the call that made the transition."""

    found: bool
    state: RunState | None  # the state after the call
    changed: bool
    message_ids: tuple[str, ...] = ()  # the run's messages, for cancelling those pending


# -- workflow waiters (context.waitForEvent, notify, webhooks) ---------------------------------


@dataclass(frozen=True, slots=True)
class NewWaiter:
    """A run waiting for an event (`POST /v2/wait/{eventId}`), as registered."""

    id: str
    account_id: str
    run_id: str
    event_id: str
    step_key: str  # the wait step's identity in the run (`homing.workflow.steps.step_key`)
    url: str  # where the notified result goes
    deadline_ms: int
    headers: Headers  # publish headers of the notified result
    timeout_url: str
    timeout_headers: Headers  # publish headers of the timed-out result
    step: bytes  # the wait step as the SDK sent it (JSON), the base of its result
    timeout: str  # the timeout as the SDK gave it ("10d"), echoed in the result
    created_ms: int


Waiter = NewWaiter  # a stored waiter reads back exactly as it was registered


@dataclass(frozen=True, slots=True)
class Registered:
    """What registering a waiter did: `event` holds the data of an event kept for the run
    (lookback) that this wait consumed; the waiter is then resolved at once with it."""

    waiter: Waiter
    event: bytes | None = None
    duplicate: bool = False  # the run already waited at this step: nothing new was stored
