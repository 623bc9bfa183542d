"""Three Homing nodes (`homing serve` subprocesses) on one PostgreSQL database.

    kill chaos      messages published round-robin through the nodes while one node after the
                    other is SIGKILLed and restarted: nothing acknowledged is lost, every
                    duplicate delivery is a message the killed node had in flight, and it is
                    redelivered within the lease (30 s) plus a few seconds
    schedules       twenty every-second schedules: each tick fires exactly once, on one node
    FIFO queue      a parallelism-1 queue fed through all three nodes keeps the order
    database crash  the PostgreSQL server is stopped hard and started again under load (a
                    throwaway cluster of the test's own): the nodes reconnect by themselves and
                    every acknowledged publish is delivered

Tiers (figures are printed; `-s` shows them as they come):

    pytest tests/multinode -s                 fast tier, ~2.5-3 min: 10,000 messages and 3 kills,
                                              schedules for 30 s, 200 FIFO messages, one crash
    HOMING_SOAK=1 pytest tests/multinode -s   adds the soak tier, ~7 min: 40,000 messages and 12
                                              kills, schedules for 120 s with 5 kills, 1,500 FIFO
                                              messages, four 10-s database crashes

The shared server is HOMING_TEST_POSTGRES_URL (a fresh schema per test); the crash test makes
its own cluster with initdb/pg_ctl. Node stderr (JSON lines) and stdout (the banner) are kept
in the test's tmp_path as nodeN.log / nodeN.out.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from tests.multinode.conftest import SharedSchema
from tests.multinode.support import (
    LEASE_S,
    SOAK,
    Node,
    Nodes,
    SinkProcess,
    Sql,
    ThrowawayCluster,
    log,
    percentile,
    wait_until,
)

pytestmark = pytest.mark.postgres

# How late a message in flight on a killed node may be delivered again, past the kill: its
# lease (taken or renewed before the kill) runs out at most LEASE_S later; then a reaper
# (every 2 s on each node) releases it and a node claims and sends it.
REDELIVERY_SLACK_S = 6.0


def now_ms() -> int:
    return int(time.time() * 1000)


# -- kill chaos ----------------------------------------------------------------------------


@dataclass(frozen=True)
class ChaosPlan:
    messages: int
    publish_s: float  # publishing is spread over this long, so kills hit deliveries in flight
    kills: int
    first_kill_s: float
    kill_every_s: float
    # The receiver holds each request this long, so every node always has attempts in flight
    # (a node mostly claims the batches published through it: it wakes itself at once).
    sink_ms: int = 1000
    per_request: int = 100


# A kill takes about 6 s: SIGKILL, two reads of the claims 2.5 s apart, restart (~3 s).
FAST_CHAOS = ChaosPlan(messages=10_000, publish_s=20, kills=3, first_kill_s=2, kill_every_s=6)
SOAK_CHAOS = ChaosPlan(messages=40_000, publish_s=80, kills=12, first_kill_s=2, kill_every_s=6.5)


class BatchPublisher(threading.Thread):
    """Publishes `total` numbered messages in /v2/batch requests of `per_request`, round-robin
    over the nodes, paced over `duration_s`. A request that fails (node down, 5xx) is sent again
    to the next node: its messages may then exist twice under different ids (the first copy was
    committed but its answer lost), which is not a duplicate delivery."""

    def __init__(
        self, nodes: list[Node], url: str, total: int, per_request: int, duration_s: float
    ) -> None:
        super().__init__(daemon=True)
        self.nodes = nodes
        self.url = url
        self.total = total
        self.per_request = per_request
        self.duration_s = duration_s
        self.acked: dict[str, int] = {}  # message id -> number
        self.failures: Counter[str] = Counter()
        self.refused: list[str] = []  # answers that are neither 201 nor 5xx
        self.given_up: list[int] = []  # batches no node took
        self.elapsed_s = 0.0

    def run(self) -> None:
        clients = [n.client(timeout=15) for n in self.nodes]
        started = time.monotonic()
        count = -(-self.total // self.per_request)
        try:
            for b in range(count):
                pause = started + b * self.duration_s / count - time.monotonic()
                if pause > 0:
                    time.sleep(pause)
                numbers = range(b * self.per_request, min(self.total, (b + 1) * self.per_request))
                items = [{"destination": self.url, "body": str(n)} for n in numbers]
                if not self._send(b, clients, items, list(numbers)):
                    self.given_up.append(b)
        finally:
            for c in clients:
                c.close()
            self.elapsed_s = time.monotonic() - started

    def _send(
        self, b: int, clients: list[httpx.Client], items: list[dict[str, str]], numbers: list[int]
    ) -> bool:
        deadline = time.monotonic() + 60
        attempt = 0
        while time.monotonic() < deadline:
            i = (b + attempt) % len(self.nodes)
            attempt += 1
            try:
                answer = clients[i].post("/v2/batch", json=items)
            except httpx.TransportError as exc:
                self.failures[type(exc).__name__] += 1
                time.sleep(0.05)
                continue
            if answer.status_code == 201:
                for number, result in zip(numbers, answer.json(), strict=True):
                    self.acked[result["messageId"]] = number
                return True
            if answer.status_code < 500:
                self.refused.append(f"{answer.status_code} {answer.text[:200]}")
                return False
            self.failures[f"http {answer.status_code}"] += 1
            time.sleep(0.05)
        return False


@dataclass
class Kill:
    victim: str
    at_ms: int
    at_s: float  # seconds into the run
    owner: str | None = None  # the killed process's node id (lease_owner)
    in_flight: dict[str, int] = field(default_factory=dict)  # message id -> its lease_until
    stuck: set[str] = field(default_factory=set)  # still claimed by it 2.5 s after the kill
    restart_s: float = 0.0


def active_rows(sql: Sql) -> dict[str, dict[str, Any]]:
    rows = sql.fetch(
        "SELECT id, lease_owner, lease_token, lease_until FROM messages WHERE state = 'active'"
    )
    return {r["id"]: r for r in rows}


def attribute_kill(
    kill: Kill, at_kill: dict[str, Any], later: dict[str, Any], earlier: list[Kill]
) -> None:
    """Find the killed process's node id: node ids are random per process and not exposed, but
    the killed node's claims stay exactly as they were (same lease token, lease taken or renewed
    before the kill), while the live nodes finish theirs within milliseconds. Claims of nodes
    killed earlier stay frozen too, until their leases run out: they are known already."""
    dead = {k.owner for k in earlier}
    held = Counter(row["lease_owner"] for row in at_kill.values() if row["lease_owner"] not in dead)
    frozen = Counter(
        row["lease_owner"]
        for mid, row in at_kill.items()
        if mid in later
        and row["lease_owner"] not in dead
        and later[mid]["lease_token"] == row["lease_token"]
        and row["lease_until"] <= kill.at_ms + LEASE_S * 1000
    )
    if not frozen:
        return  # the killed node had nothing in flight
    # A live node may have an attempt or two that took long; the dead one holds all of its own.
    all_frozen = [owner for owner, n in frozen.items() if n == held[owner]]
    candidates = all_frozen if len(all_frozen) == 1 else list(frozen)
    assert len(candidates) == 1, f"cannot tell which node id was killed: {frozen} of {held}"
    [kill.owner] = candidates
    # Claims the killed node committed just before dying may appear only in the later read.
    for rows in (at_kill, later):
        for mid, row in rows.items():
            if row["lease_owner"] == kill.owner:
                kill.in_flight[mid] = row["lease_until"]
    kill.stuck = {mid for mid, row in later.items() if row["lease_owner"] == kill.owner}


def run_kill_chaos(plan: ChaosPlan, schema: SharedSchema, nodes: Nodes, sink: SinkProcess) -> None:
    sql = schema.sql
    ns = nodes.start(schema.url, 3)
    started = time.monotonic()
    publisher = BatchPublisher(
        ns, sink.url(f"/chaos?ms={plan.sink_ms}"), plan.messages, plan.per_request, plan.publish_s
    )
    publisher.start()

    kills: list[Kill] = []
    for k in range(plan.kills):
        pause = started + plan.first_kill_s + k * plan.kill_every_s - time.monotonic()
        if pause > 0:
            time.sleep(pause)
        victim = ns[k % len(ns)]
        kill = Kill(victim.name, now_ms(), round(time.monotonic() - started, 1))
        victim.kill()
        at_kill = active_rows(sql)
        time.sleep(2.5)
        later = active_rows(sql)
        kill.restart_s = victim.start()
        attribute_kill(kill, at_kill, later, kills)
        kills.append(kill)
        log(
            f"kill {k + 1}: {victim.name} at +{kill.at_s:.1f}s, node id "
            f"{kill.owner}, {len(kill.in_flight)} in flight, restarted in {kill.restart_s:.1f}s"
        )

    publisher.join(plan.publish_s + 120)
    assert not publisher.is_alive(), "the publisher did not finish"
    assert publisher.refused == [], f"publishes refused: {publisher.refused[:5]}"
    assert publisher.given_up == [], f"no node took batches {publisher.given_up}"
    acked = publisher.acked
    published_s = time.monotonic() - started

    def drained() -> bool:
        got = {d.message_id for d in sink.deliveries()}
        counts = sql.state_counts()
        return set(acked) <= got and not (counts.keys() - {"delivered"})

    drain_budget = max(0.0, kills[-1].at_ms / 1000 - time.time()) + LEASE_S + 30
    drained_ok = wait_until(drained, drain_budget, interval=0.5)
    total_s = time.monotonic() - started
    deliveries = sink.deliveries()
    counts = sql.state_counts()

    by_id: dict[str, list[int]] = defaultdict(list)
    for d in deliveries:
        by_id[d.message_id].append(d.start_ms)
    lost = set(acked) - set(by_id)
    duplicates = {mid: sorted(times) for mid, times in by_id.items() if len(times) > 1}
    unacked = set(by_id) - set(acked)  # batches whose answer was lost and were sent again
    numbers = {int(d.body) for d in deliveries}

    # Every duplicate is a message in flight on a killed node.
    unexplained = [mid for mid in duplicates if not any(mid in k.in_flight for k in kills)]
    # What a killed node still held is sent again by another node once the lease ran out (never
    # before: fencing) and within the lease plus a few seconds of the kill. A request the killed
    # node wrote just before dying may reach the sink a few ms after the kill: a second
    # attempt is the first delivery a second or more after the kill.
    early: list[str] = []
    late: list[str] = []
    past_lease_s: list[float] = []
    after_kill_s: list[float] = []
    chained = 0
    for i, kill in enumerate(kills):
        for mid in kill.stuck:
            again = [t for t in by_id.get(mid, []) if t >= kill.at_ms + 1000]
            then = next((k for k in kills[i + 1 :] if mid in k.in_flight), None)
            if then is not None and (not again or again[0] > then.at_ms):
                # Released when the lease ran out, claimed by a node that was killed in turn
                # before it sent the message: judged at that later kill.
                chained += 1
                continue
            if not again:
                late.append(f"{mid}: never sent again after the kill at {kill.at_ms}")
                continue
            lease_until = kill.in_flight[mid]
            past_lease_s.append((again[0] - lease_until) / 1000)
            after_kill_s.append((again[0] - kill.at_ms) / 1000)
            if again[0] < lease_until - 100:
                early.append(f"{mid}: sent at {again[0]}, lease until {lease_until}")
            if again[0] - kill.at_ms > (LEASE_S + REDELIVERY_SLACK_S) * 1000:
                seen = [k.at_ms for k in kills if mid in k.in_flight]
                late.append(
                    f"{mid}: sent {again[0] - kill.at_ms} ms after the kill; in flight at {seen}"
                )

    in_flight_total = sum(len(k.in_flight) for k in kills)
    redelivered_dups = sum(1 for mid in duplicates if any(mid in k.stuck for k in kills))
    log(
        f"kill chaos: {len(acked)} acknowledged ({plan.messages} numbered) through 3 nodes in "
        f"{publisher.elapsed_s:.1f}s; {len(kills)} SIGKILLs; publish failures retried "
        f"elsewhere: {dict(publisher.failures)}"
    )
    log(
        f"  deliveries {len(deliveries)}, distinct ids {len(by_id)}, lost {len(lost)}, "
        f"duplicate ids {len(duplicates)} (all in flight on a killed node: "
        f"{not unexplained}), unacknowledged copies {len(unacked)}, states {counts}"
    )
    log(
        f"  in flight on the killed nodes: {[len(k.in_flight) for k in kills]} (total "
        f"{in_flight_total}, {redelivered_dups} of them had reached the sink before the kill); "
        f"sent again {percentile(after_kill_s, 50):.1f}s (p50) / "
        f"{max(after_kill_s, default=0):.1f}s (max) after the kill, "
        f"{percentile(past_lease_s, 50):.2f}s / "
        f"{max(past_lease_s, default=0):.2f}s after the lease ran out (lease {LEASE_S:.0f}s); "
        f"{chained} caught by a second kill before they were sent again"
    )
    log(
        f"  publish phase {published_s:.1f}s, drained {total_s:.1f}s after the start; "
        f"{len(deliveries) / total_s:.0f} deliveries/s overall"
    )
    assert drained_ok, f"not drained: lost {len(lost)}, states {counts}"
    assert not lost, f"{len(lost)} acknowledged messages never delivered: {sorted(lost)[:5]}"
    assert numbers == set(range(plan.messages)), "some numbered messages were never delivered"
    assert not unexplained, f"duplicates not in flight on a killed node: {unexplained[:5]}"
    assert not early, f"sent again before the killed node's lease ran out: {early[:5]}"
    assert not late, f"not sent again within lease + {REDELIVERY_SLACK_S}s: {late[:5]}"
    assert sum(1 for k in kills if k.in_flight) >= 2, "the kills hit nothing in flight"
    assert all(n.alive() for n in ns), "a node died by itself"


@pytest.mark.timeout(240)
def test_kill_chaos_loses_nothing_and_duplicates_only_what_was_in_flight(
    shared_schema: SharedSchema, nodes: Nodes, sink: SinkProcess
) -> None:
    run_kill_chaos(FAST_CHAOS, shared_schema, nodes, sink)


@pytest.mark.soak
@pytest.mark.timeout(900)
@pytest.mark.skipif(not SOAK, reason="soak tier: set HOMING_SOAK=1")
def test_soak_kill_chaos(shared_schema: SharedSchema, nodes: Nodes, sink: SinkProcess) -> None:
    run_kill_chaos(SOAK_CHAOS, shared_schema, nodes, sink)


# -- schedules -----------------------------------------------------------------------------

SCHEDULES = 20


def run_schedules(
    schema: SharedSchema, nodes: Nodes, sink: SinkProcess, duration_s: float, kill_every_s: float
) -> None:
    sql = schema.sql
    ns = nodes.start(schema.url, 3)
    created: dict[str, int] = {}
    for i in range(SCHEDULES):
        with ns[i % 3].client() as c:
            answer = c.post(
                f"/v2/schedules/{sink.url(f'/sched/{i}')}",
                headers={"Upstash-Cron": "* * * * * *", "Upstash-Schedule-Id": f"mn-{i}"},
                content=f"schedule {i}".encode(),
            )
        assert answer.status_code in (200, 201), answer.text
        created[f"mn-{i}"] = now_ms()
    started = time.monotonic()
    kills = 0
    while time.monotonic() - started < duration_s:
        if kill_every_s and time.monotonic() - started >= (kills + 1) * kill_every_s:
            victim = ns[kills % 3]
            victim.kill()
            time.sleep(1)
            victim.start()
            kills += 1
            log(f"schedules: killed and restarted {victim.name}")
        time.sleep(0.2)
    deleted_ms = now_ms()
    for i in range(SCHEDULES):
        with ns[i % 3].client() as c:
            assert c.delete(f"/v2/schedules/mn-{i}").status_code == 200

    def settled() -> bool:
        open_ = sql.fetch(
            "SELECT count(*) AS n FROM messages "
            "WHERE schedule_id IS NOT NULL AND state <> 'delivered'"
        )[0]["n"]
        return open_ == 0

    assert wait_until(settled, LEASE_S + 20 if kills else 20), "schedule messages still open"
    time.sleep(0.5)
    fires = sql.fetch("SELECT schedule_id, tick_ms, fired_ms FROM schedule_fires")
    messages = sql.fetch(
        "SELECT id, schedule_id, created_ms FROM messages WHERE schedule_id IS NOT NULL"
    )
    deliveries = [d for d in sink.deliveries() if d.path.startswith("/sched/")]

    ticks: dict[str, list[int]] = defaultdict(list)
    tick_of_fire: dict[tuple[str, int], int] = {}
    for f in fires:
        ticks[f["schedule_id"]].append(f["tick_ms"])
        tick_of_fire[(f["schedule_id"], f["fired_ms"])] = f["tick_ms"]
    tick_of_message: dict[str, tuple[str, int]] = {}
    unmatched = []
    for m in messages:
        tick = tick_of_fire.get((m["schedule_id"], m["created_ms"]))
        if tick is None:
            unmatched.append(m["id"])
        else:
            tick_of_message[m["id"]] = (m["schedule_id"], tick)

    missing: list[tuple[str, int]] = []
    short: list[str] = []
    for sid, first_ms in created.items():
        got = sorted(ticks[sid])
        assert got, f"{sid} never fired"
        missing += [(sid, t) for a, b in itertools.pairwise(got) for t in range(a + 1000, b, 1000)]
        if got[0] > first_ms + 2000 or got[-1] < deleted_ms - 2000:
            short.append(f"{sid}: fired {got[0]}..{got[-1]}, lived {first_ms}..{deleted_ms}")

    delivered_per_tick: dict[tuple[str, int], set[str]] = defaultdict(set)
    sends: Counter[str] = Counter()
    wrong_header = []
    for d in deliveries:
        sends[d.message_id] += 1
        key = tick_of_message.get(d.message_id)
        if key is None:
            unmatched.append(d.message_id)
            continue
        delivered_per_tick[key].add(d.message_id)
        if d.schedule_id != key[0] or d.path != f"/sched/{key[0][3:]}":
            wrong_header.append(d.message_id)
    expected = {(f["schedule_id"], f["tick_ms"]) for f in fires}
    undelivered = sorted(expected - delivered_per_tick.keys())
    twice = {k: v for k, v in delivered_per_tick.items() if len(v) > 1}
    redelivered = sum(1 for n in sends.values() if n > 1)
    lag = [f["fired_ms"] - f["tick_ms"] for f in fires]
    d_lag = [d.start_ms - tick_of_message[d.message_id][1] for d in deliveries
             if d.message_id in tick_of_message]  # fmt: skip
    per_node_span = {sid: (min(t), max(t)) for sid, t in ticks.items()}
    logged = {n.name: n.events("schedule.fired") for n in ns}
    logged_ticks = Counter((r["schedule_id"], r["tick_ms"]) for rs in logged.values() for r in rs)
    log(
        f"schedules: {SCHEDULES} x '* * * * * *' for {duration_s:.0f}s on 3 nodes "
        f"({kills} kills): {len(fires)} fires, {len(deliveries)} deliveries; missing ticks "
        f"{len(missing)}, ticks with 2+ messages {len(twice)}, fires never delivered "
        f"{len(undelivered)}, redelivered message ids {redelivered}"
    )
    log(
        f"  fire lag after the tick: p50 {percentile(lag, 50)} ms, p99 {percentile(lag, 99)} "
        f"ms, max {max(lag)} ms; delivery after the tick: p50 {percentile(d_lag, 50)} ms, "
        f"max {max(d_lag, default=0)} ms; ticks per schedule "
        f"{min(len(t) for t in ticks.values())}..{max(len(t) for t in ticks.values())}; "
        f"fires logged per node { ({name: len(rs) for name, rs in logged.items()}) }"
    )
    assert len(per_node_span) == SCHEDULES
    assert not unmatched, f"messages without a fire: {unmatched[:5]}"
    assert len(messages) == len(fires), "one message per fire"
    assert not missing, f"{len(missing)} ticks never fired: {missing[:10]}"
    assert not short, f"schedules fired too late or stopped early: {short[:5]}"
    assert not twice, f"ticks fired more than once: {list(twice.items())[:5]}"
    assert not undelivered, f"fires never delivered: {undelivered[:5]}"
    assert not wrong_header, f"wrong Upstash-Schedule-Id or path: {wrong_header[:5]}"
    if not kills:
        assert redelivered == 0, "a scheduled message was delivered twice without any kill"
        # Each fire was made (and logged) by exactly one node.
        assert logged_ticks == Counter(expected), "fires logged by the nodes != recorded fires"
    assert all(n.alive() for n in ns), "a node died by itself"


@pytest.mark.timeout(180)
def test_twenty_every_second_schedules_fire_each_tick_exactly_once(
    shared_schema: SharedSchema, nodes: Nodes, sink: SinkProcess
) -> None:
    run_schedules(shared_schema, nodes, sink, duration_s=30, kill_every_s=0)


@pytest.mark.soak
@pytest.mark.timeout(600)
@pytest.mark.skipif(not SOAK, reason="soak tier: set HOMING_SOAK=1")
def test_soak_schedules_with_kills(
    shared_schema: SharedSchema, nodes: Nodes, sink: SinkProcess
) -> None:
    run_schedules(shared_schema, nodes, sink, duration_s=120, kill_every_s=20)


# -- a FIFO queue fed through every node ---------------------------------------------------


def run_fifo(schema: SharedSchema, nodes: Nodes, sink: SinkProcess, count: int) -> None:
    ns = nodes.start(schema.url, 3)
    clients = [n.client() for n in ns]
    try:
        created = clients[0].post("/v2/queues", json={"queueName": "mn-fifo", "parallelism": 1})
        assert created.status_code == 200, created.text
        url = sink.url("/fifo?ms=10")
        started = time.monotonic()
        for i in range(count):  # each enqueue acknowledged before the next is sent
            answer = clients[i % 3].post(f"/v2/enqueue/mn-fifo/{url}", content=str(i).encode())
            assert answer.status_code == 201, answer.text
        enqueued_s = time.monotonic() - started
    finally:
        for c in clients:
            c.close()

    def fifo() -> list[Any]:
        return [d for d in sink.deliveries() if d.path == "/fifo"]

    assert wait_until(lambda: len(fifo()) >= count, 60 + count * 0.1), len(fifo())
    time.sleep(0.5)
    got = fifo()
    total_s = time.monotonic() - started
    order = [int(d.body) for d in got]
    inversions = [(a, b) for a, b in itertools.pairwise(order) if b < a]
    overlaps = sum(1 for a, b in itertools.pairwise(got) if b.start_ms < a.end_ms)
    gaps = [b.start_ms - a.end_ms for a, b in itertools.pairwise(got)]
    log(
        f"FIFO queue (parallelism 1): {count} enqueued round-robin through 3 nodes in "
        f"{enqueued_s:.1f}s, delivered in {total_s:.1f}s; inversions {len(inversions)}, "
        f"overlapping deliveries {overlaps}, most in flight at once "
        f"{sink.max_concurrent.get('/fifo')}, gap between deliveries p50 "
        f"{percentile(gaps, 50)} ms, max {max(gaps, default=0)} ms"
    )
    assert not inversions, f"order inversions: {inversions[:10]}"
    assert order == list(range(count)), "every message exactly once, in order"
    assert overlaps == 0 and sink.max_concurrent.get("/fifo") == 1


@pytest.mark.timeout(120)
def test_a_parallelism_one_queue_fed_through_three_nodes_keeps_the_order(
    shared_schema: SharedSchema, nodes: Nodes, sink: SinkProcess
) -> None:
    run_fifo(shared_schema, nodes, sink, count=200)


@pytest.mark.soak
@pytest.mark.timeout(600)
@pytest.mark.skipif(not SOAK, reason="soak tier: set HOMING_SOAK=1")
def test_soak_fifo(shared_schema: SharedSchema, nodes: Nodes, sink: SinkProcess) -> None:
    run_fifo(shared_schema, nodes, sink, count=1500)


# -- the database crashes under load -------------------------------------------------------


@dataclass
class Attempt:
    sent: float  # time.time()
    done: float
    node: str
    outcome: str  # "201", "503", "ConnectError", ...
    ids: list[str]


class SteadyPublisher(threading.Thread):
    """Small batches round-robin over the nodes, back to back, until stopped; every request and
    its outcome is kept. Numbers the messages."""

    def __init__(self, nodes: list[Node], url: str, per_request: int = 10) -> None:
        super().__init__(daemon=True)
        self.nodes = nodes
        self.url = url
        self.per_request = per_request
        self.stop_event = threading.Event()
        self.attempts: list[Attempt] = []

    def run(self) -> None:
        clients = [n.client(timeout=20) for n in self.nodes]
        number = 0
        try:
            while not self.stop_event.is_set():
                i = len(self.attempts) % len(self.nodes)
                items = [
                    {"destination": self.url, "body": str(number + k)}
                    for k in range(self.per_request)
                ]
                number += self.per_request
                sent = time.time()
                ids: list[str] = []
                try:
                    answer = clients[i].post("/v2/batch", json=items)
                    outcome = str(answer.status_code)
                    if answer.status_code == 201:
                        ids = [r["messageId"] for r in answer.json()]
                except httpx.TransportError as exc:
                    outcome = type(exc).__name__
                self.attempts.append(Attempt(sent, time.time(), self.nodes[i].name, outcome, ids))
                time.sleep(0.05)
        finally:
            for c in clients:
                c.close()


def run_database_crash(
    cluster: ThrowawayCluster, nodes: Nodes, sink: SinkProcess, *, outage_s: float, rounds: int
) -> None:
    sql = Sql(cluster.url)
    ns = nodes.start(cluster.url, 3)
    # The receiver holds each request 300 ms: attempts are in flight when the database dies, and
    # their outcomes cannot be recorded (they are sent again once their leases run out).
    publisher = SteadyPublisher(ns, sink.url("/crash?ms=300"))
    publisher.start()
    outages: list[tuple[float, float, float]] = []  # (down, up, every node ready again)
    reconnect_s: list[float] = []
    try:
        time.sleep(4)
        for _ in range(rounds):
            before = sql.state_counts()
            down = time.time()
            cluster.stop_immediate()
            time.sleep(1)
            # A load balancer must see the nodes as not ready while the database is away.
            assert not any(n.ready() for n in ns), "a node reports ready without its database"
            time.sleep(outage_s - 1)
            cluster.start()
            up = time.time()
            assert wait_until(lambda: all(n.ready() for n in ns), 60, interval=0.1), [
                n.log_tail(10) for n in ns
            ]
            ready = time.time()
            reconnect_s.append(ready - up)
            outages.append((down, up, ready))
            log(
                f"database crash: stopped hard with {before} messages; down {up - down:.1f}s, "
                f"every node ready {ready - up:.1f}s after the restart"
            )
            time.sleep(5)
    finally:
        publisher.stop_event.set()
        publisher.join(60)
    attempts = publisher.attempts
    acked = {mid for a in attempts for mid in a.ids}

    def all_delivered() -> bool:
        # Attempts whose outcome the crash kept from being recorded stay active until their
        # leases run out, and are then sent again: wait for that too.
        got = {d.message_id for d in sink.deliveries()}
        return acked <= got and not (sql.state_counts().keys() - {"delivered"})

    delivered_ok = wait_until(all_delivered, LEASE_S + 30, interval=0.5)
    deliveries = sink.deliveries()
    got = Counter(d.message_id for d in deliveries)
    lost = acked - got.keys()
    counts = sql.state_counts()

    def phase(a: Attempt) -> str:
        for down, _up, ready in outages:
            if a.done >= down and a.sent <= ready + 1:
                return "outage"
        return "steady"

    by_phase: dict[str, Counter[str]] = defaultdict(Counter)
    for a in attempts:
        by_phase[phase(a)][a.outcome] += 1
    after = [a for a in attempts if a.sent > outages[-1][2] + 1]
    nodes_after = {a.node for a in after if a.outcome == "201"}
    slowest = max((a.done - a.sent for a in attempts), default=0.0)
    log(
        f"database crash x{rounds}: {len(attempts)} batch requests, {len(acked)} messages "
        f"acknowledged, {len(deliveries)} deliveries, lost {len(lost)}, redelivered "
        f"{sum(1 for n in got.values() if n > 1)}; outcomes {dict(by_phase)}; slowest request "
        f"{slowest:.1f}s; nodes ready again after {[f'{s:.1f}s' for s in reconnect_s]}; "
        f"states {counts}"
    )
    assert not lost, f"{len(lost)} acknowledged messages lost: {sorted(lost)[:5]}"
    assert delivered_ok, f"messages still open after the leases ran out: {counts}"
    assert set(by_phase["steady"]) <= {"201"}, f"failures outside an outage: {by_phase['steady']}"
    bad = {o for o in by_phase["outage"] if not (o == "201" or o.startswith("5"))}
    assert not bad, f"publishes during the outage failed with more than a 5xx: {bad}"
    assert nodes_after == {n.name for n in ns}, f"after the outage only {nodes_after} accepted"
    assert all(n.alive() for n in ns), "a node exited"


@pytest.mark.timeout(180)
def test_nodes_ride_out_a_database_crash_and_lose_nothing_acknowledged(
    throwaway_cluster: ThrowawayCluster, nodes: Nodes, sink: SinkProcess
) -> None:
    run_database_crash(throwaway_cluster, nodes, sink, outage_s=5, rounds=1)


@pytest.mark.soak
@pytest.mark.timeout(600)
@pytest.mark.skipif(not SOAK, reason="soak tier: set HOMING_SOAK=1")
def test_soak_database_crashes(
    throwaway_cluster: ThrowawayCluster, nodes: Nodes, sink: SinkProcess
) -> None:
    run_database_crash(throwaway_cluster, nodes, sink, outage_s=10, rounds=4)


# -- logs ----------------------------------------------------------------------------------

UVICORN_TEXT_LOGS = (
    "product bug: with --log-format json (the `serve` default) uvicorn's own lines "
    "('INFO:     Started server process [..]', 'Waiting for application startup.', ...) reach "
    "stderr as plain text. homing/logs.py configure_logging() routes the uvicorn loggers "
    "through the JSON handler, but homing/server.py serve() then builds uvicorn.Config without "
    "log_config=None, and uvicorn's Config.__init__ applies its LOGGING_CONFIG (dictConfig), "
    "re-installing its own text handlers. Fix: uvicorn.Config(..., log_config=None)."
)


@pytest.mark.timeout(60)
def test_a_node_logs_json_lines_only(shared_schema: SharedSchema, nodes: Nodes) -> None:
    [node] = nodes.start(shared_schema.url, 1)
    node.stop()
    lines = [line for line in node.log_lines() if line.strip()]
    not_json = []
    for line in lines:
        try:
            json.loads(line)
        except ValueError:
            not_json.append(line)
    log(f"node stderr: {len(lines)} lines, {len(not_json)} not JSON: {not_json[:3]}")
    assert lines and not not_json, f"stderr lines that are not JSON: {not_json[:5]}"
