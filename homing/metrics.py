"""Prometheus metrics, in a registry owned by the app (no module globals).

Counters are updated where things happen (publish, attempt outcomes, schedule fires); gauges
that describe the store (messages by state, queue depth and lag) are read when scraped.
"""

from __future__ import annotations

import functools
from urllib.parse import urlsplit

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from homing.models import AttemptOutcome, Message, OutcomeKind
from homing.storage.base import Storage

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


def _host(url: str) -> str:
    # Per message, and most traffic goes to a few URLs; only short URLs are remembered, so
    # that huge ones cannot pin memory.
    return _cached_host(url) if len(url) <= 2048 else _parse_host(url)


@functools.lru_cache(maxsize=4096)
def _cached_host(url: str) -> str:
    return _parse_host(url)


def _parse_host(url: str) -> str:
    try:
        return urlsplit(url).hostname or ""
    except ValueError:
        return ""


class Metrics:
    def __init__(self) -> None:
        self._children: dict[tuple[object, ...], Counter] = {}
        self._attempt_counters: dict[tuple[str, str, OutcomeKind], tuple[Counter, Counter]] = {}
        self._attempt_tally: dict[tuple[str, str, OutcomeKind], int] = {}
        self.registry = CollectorRegistry()
        r = self.registry
        self.published = Counter(
            "homing_messages_published", "Messages accepted", ["account", "host"], registry=r
        )
        self.attempts = Counter(
            "homing_attempts",
            "Delivery attempts by outcome (delivered, retry, failed)",
            ["account", "host", "outcome"],
            registry=r,
        )
        self.delivered = Counter(
            "homing_messages_delivered", "Messages delivered", ["account", "host"], registry=r
        )
        self.retried = Counter(
            "homing_messages_retried", "Retries scheduled", ["account", "host"], registry=r
        )
        self.dead_lettered = Counter(
            "homing_messages_dead_lettered", "Messages moved to the DLQ", ["account", "host"],
            registry=r,
        )  # fmt: skip
        self.latency = Histogram(
            "homing_delivery_latency_seconds",
            "From the time a message was due to its delivery",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.attempt_duration = Histogram(
            "homing_attempt_duration_seconds",
            "Duration of one HTTP attempt",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.commit = Histogram(
            "homing_storage_commit_seconds",
            "Latency of storage writes (publish inserts, outcome batches)",
            ["operation"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        # Observed on every publish and outcome batch: the labelled children, made once.
        self.commit_publish = self.commit.labels("publish")
        self.commit_outcomes = self.commit.labels("outcomes")
        self.schedule_fires = Counter("homing_schedule_fires", "Schedule fires", registry=r)
        self.workflow_runs = Counter(
            "homing_workflow_runs",
            "Upstash Workflow runs by event (started, succeeded, failed, canceled)",
            ["event"],
            registry=r,
        )
        self.workflow_invokes = Counter(
            "homing_workflow_invokes",
            "context.invoke: child runs started, results returned to the invoking run, and "
            "results that found no active invoking run (unrouted)",
            ["event"],
            registry=r,
        )
        self.workflow_steps_delivered = Counter(
            "homing_workflow_steps_delivered",
            "Deliveries of workflow steps (the step list) to workflow endpoints",
            registry=r,
        )
        self.workflow_waiters = Counter(
            "homing_workflow_waiters",
            "Workflow waiters by event (registered, notified, timed_out)",
            ["event"],
            registry=r,
        )
        self.workflow_notifies = Counter(
            "homing_workflow_notifies",
            "Notifies of workflow events by result (delivered: reached a waiter; kept: stored "
            "for the run's next wait; unmatched: reached nobody and was dropped)",
            ["result"],
            registry=r,
        )
        self.task_failures = Counter(
            "homing_task_failures",
            "Failed runs of background tasks (engine.renew, engine.reap, engine.purge, scheduler, "
            "waiters)",
            ["task"],
            registry=r,
        )
        self.messages = Gauge(
            "homing_messages", "Messages in the store by state", ["state"], registry=r
        )
        self.flow_waiting = Gauge(
            "homing_flow_control_waiting",
            "Messages waiting for flow-control capacity",
            registry=r,
        )
        self.queue_depth = Gauge(
            "homing_queue_lag", "Messages of a queue not yet final", ["account", "queue"],
            registry=r,
        )  # fmt: skip
        self.queue_paused = Gauge(
            "homing_queue_paused", "1 when the queue is paused", ["account", "queue"], registry=r
        )

    def record_run(self, event: str, count: int = 1) -> None:
        """A run started, succeeded, failed or was canceled."""
        if count:
            self.workflow_runs.labels(event).inc(count)

    def record_invoke(self, event: str) -> None:
        """An invoked child run started, or its end was returned (or not) to its invoker."""
        self.workflow_invokes.labels(event).inc()

    def record_waiter(self, event: str, count: int = 1) -> None:
        """A waiter registered, was notified or timed out."""
        if count:
            self.workflow_waiters.labels(event).inc(count)

    def record_publish(self, account: str, urls: list[str]) -> None:
        for url in urls:
            self._child(self.published, account, url).inc()

    def record_attempt(self, message: Message, outcome: AttemptOutcome, duration_s: float) -> None:
        # The counters are tallied in a plain dict and added to Prometheus's (a lock per
        # increment) when scraped, or when the tally gets large: two counters per attempt
        # were a tenth of its metrics cost. The histograms are observed at once.
        kind = outcome.kind
        key = (message.account_id, message.url, kind)
        tally = self._attempt_tally
        tally[key] = tally.get(key, 0) + 1
        if len(tally) >= 1024:
            self._flush_attempts()
        self.attempt_duration.observe(duration_s)
        if kind is OutcomeKind.DELIVERED:
            due = message.due_ms or message.not_before_ms
            self.latency.observe(max(0, outcome.finished_ms - due) / 1000)

    def _flush_attempts(self) -> None:
        tally, self._attempt_tally = self._attempt_tally, {}
        for key, count in tally.items():
            counters = self._attempt_counters.get(key)
            if counters is None:
                counters = self._counters_of_attempt(*key)
            for counter in counters:
                counter.inc(count)

    def _counters_of_attempt(
        self, account: str, url: str, kind: OutcomeKind
    ) -> tuple[Counter, Counter]:
        """The two counters an attempt with this outcome adds to, remembered per (account,
        URL, outcome)."""
        if kind is OutcomeKind.DELIVERED:
            metric = self.delivered
        elif kind is OutcomeKind.RETRY:
            metric = self.retried
        else:
            metric = self.dead_lettered
        counters = (
            self._child(self.attempts, account, url, kind.value),
            self._child(metric, account, url),
        )
        if len(url) <= 2048:  # huge URLs are not remembered: they must not pin memory
            if len(self._attempt_counters) >= 10_000:
                self._attempt_counters.clear()
            self._attempt_counters[account, url, kind] = counters
        return counters

    def _child(self, metric: Counter, account: str, url: str, *more: str) -> Counter:
        """The labelled counter for (account, host of url, ...), remembered: this runs several
        times per message and `labels()` costs a lock and a tuple each time."""
        host = _host(url)
        key = (id(metric), account, host, *more)
        child = self._children.get(key)
        if child is None:
            if len(self._children) >= 10_000:
                self._children.clear()
            child = self._children[key] = metric.labels(account, host, *more)
        return child

    async def render(self, storage: Storage) -> bytes:
        """Refresh the store gauges, then the Prometheus text exposition."""
        self._flush_attempts()
        counts = await storage.state_counts(None)
        for state, n in counts.items():
            self.messages.labels(state).set(n)
        self.flow_waiting.set(counts.get("waiting", 0))
        self.queue_depth.clear()
        self.queue_paused.clear()
        for account in await storage.list_accounts():
            for queue in await storage.list_queues(account):
                self.queue_depth.labels(account, queue.name).set(queue.lag)
                self.queue_paused.labels(account, queue.name).set(int(queue.paused))
        return generate_latest(self.registry)
