"""Two Homing nodes whose connections to PostgreSQL go through a fault-injecting proxy.

Under a steady load of publishes (delivered to a local sink), a burst of 128 publishes at once
as each fault begins, and an every-second cron schedule, the proxy injects each fault in turn:

    reset      every connection to the database is reset at once
    stall      no byte moves between the nodes and the database for N s
    drop-new   for N s every new connection is reset as soon as it opens
    outage     every connection is reset and the database refuses new ones for N s

and the test holds the nodes to what an operator needs:

* every publish is answered within a bound, with 201 or a 503 JSON error: never a hang past
  the client's timeout, never a 500; 503 only while a fault lasts or the node recovers;
* every acknowledged message is delivered once the fault is over; a message delivered twice
  is one whose first attempt's outcome could not be recorded, sent again only after its lease
  ran out (counted and explained per fault);
* each cron tick fires at most once (ticks missed while the database was away are skipped by
  design: the scheduler fires the latest missed tick once, never a burst);
* `/readyz` always answers within 1 s: 503 while the database is stalled or cut off, 200
  again after; the LISTEN connection reconnects by itself;
* the nodes recover without a restart; nothing is logged as an unhandled error, and a client
  that disconnects mid-request is logged as such.

Tiers: in CI each fault once, with faults of 3 s (about 55 s); with HOMING_SOAK=1 each fault five
times, with faults of 8-14 s. Figures per fault are printed (`-s`).
"""

from __future__ import annotations

import asyncio
import itertools
import socket
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest

from homing.storage.postgres.pool import STALL_CHECK_S
from tests.conftest import dev_settings
from tests.multinode.conftest import SharedSchema
from tests.multinode.support import (
    LEASE_S,
    SOAK,
    SOAK_REASON,
    Node,
    Nodes,
    SinkProcess,
    log,
    percentile,
    wait_until,
)
from tests.support.faultproxy import FaultProxy
from tests.support.http import api, nowhere
from tests.support.receiver import Receiver
from tests.support.server import RunningServer
from tests.support.waiting import eventually

pytestmark = pytest.mark.postgres

# The statement timeout stays at its default (30 s): a database that stops answering must be
# noticed long before, by the pool's watchdog. A short acquire timeout, so that requests
# queued for a connection give up quickly too.
ACQUIRE_TIMEOUT_S = 1.0
NODE_FLAGS = ("--database-acquire-timeout", str(ACQUIRE_TIMEOUT_S))
CLIENT_TIMEOUT_S = 10.0  # the publishers' own timeout: no answer may come later than this
# How long one database call may wait on a silent server: its wait for a connection, then
# STALL_CHECK_S of silence, the watchdog's check (as long again) and the watchdog's tick.
CALL_BOUND_S = ACQUIRE_TIMEOUT_S + 2.25 * STALL_CHECK_S
# A publish makes two calls (the token check and the insert); one second more for the rest.
ANSWER_BOUND_S = 2 * CALL_BOUND_S + 1
READY_BOUND_S = 1.0
RECOVERY_BOUND_S = 15.0
SETTLE_S = 2.0  # steady load between the recovery from one fault and the next fault
BURST_PER_NODE = 64  # publishes sent at once to each node as each fault begins

CI_PLAN = [("reset", 0.0), ("stall", 3.0), ("drop-new", 3.0), ("outage", 3.0)]
SOAK_DURATIONS = (8.0, 11.0, 14.0, 9.0, 12.0)
SOAK_PLAN = [
    (kind, 0.0 if kind == "reset" else SOAK_DURATIONS[(r + k) % len(SOAK_DURATIONS)])
    for r in range(5)
    for k, kind in enumerate(("reset", "stall", "drop-new", "outage"))
]


@dataclass
class Answer:
    sent: float  # time.time()
    done: float
    node: str
    outcome: str  # "201", "503", ... or the transport error's name
    json_error: bool  # a non-2xx answer had a JSON body with an "error"
    message_id: str | None


@dataclass
class Probe:
    sent: float
    seconds: float
    node: str
    outcome: str  # "200", "503" or the transport error's name


def has_json_error(r: httpx.Response) -> bool:
    """The answer is a JSON object with an "error" text, as every Homing error is."""
    try:
        doc = r.json()
    except ValueError:
        return False
    return isinstance(doc, dict) and isinstance(doc.get("error"), str)


class Publisher(threading.Thread):
    """Publishes one message after the other through one node until stopped."""

    def __init__(self, node: Node, url: str, name: str, stop: threading.Event) -> None:
        super().__init__(daemon=True)
        self.node = node
        self.url = url
        self.label = name
        self.stop_event = stop
        self.answers: list[Answer] = []

    def run(self) -> None:
        with self.node.client(timeout=CLIENT_TIMEOUT_S) as client:
            for n in itertools.count():
                if self.stop_event.is_set():
                    return
                sent = time.time()
                try:
                    r = client.post(f"/v2/publish/{self.url}", content=f"{self.label}-{n}")
                except httpx.TransportError as exc:
                    self.answers.append(
                        Answer(sent, time.time(), self.node.name, type(exc).__name__, False, None)
                    )
                    time.sleep(0.05)
                    continue
                done = time.time()
                json_error = False
                message_id = None
                if r.status_code == 201:
                    message_id = r.json()["messageId"]
                else:
                    json_error = has_json_error(r)
                self.answers.append(
                    Answer(sent, done, self.node.name, str(r.status_code), json_error, message_id)
                )
                time.sleep(0.01 if r.status_code == 201 else 0.05)


class Burst(threading.Thread):
    """`per_node` publishes at once through every node (as a busy app's requests in flight
    when the fault begins), each answer kept."""

    def __init__(self, nodes: list[Node], url: str, per_node: int, label: str) -> None:
        super().__init__(daemon=True)
        self.nodes = nodes
        self.url = url
        self.per_node = per_node
        self.label = label
        self.answers: list[Answer] = []

    def run(self) -> None:
        asyncio.run(self._all())

    async def _all(self) -> None:
        async def one(client: httpx.AsyncClient, node: Node, n: int) -> None:
            sent = time.time()
            try:
                r = await client.post(f"/v2/publish/{self.url}", content=f"{self.label}-{n}")
            except httpx.TransportError as exc:
                outcome = Answer(sent, time.time(), node.name, type(exc).__name__, False, None)
            else:
                ok = r.status_code == 201
                outcome = Answer(
                    sent,
                    time.time(),
                    node.name,
                    str(r.status_code),
                    not ok and has_json_error(r),
                    r.json()["messageId"] if ok else None,
                )
            self.answers.append(outcome)

        clients = [
            httpx.AsyncClient(base_url=n.base_url, headers=n.creds.auth, timeout=CLIENT_TIMEOUT_S)
            for n in self.nodes
        ]
        try:
            await asyncio.gather(
                *(one(c, node, i) for c, node in zip(clients, self.nodes, strict=True)
                  for i in range(self.per_node))
            )  # fmt: skip
        finally:
            for c in clients:
                await c.aclose()


class ReadyProber(threading.Thread):
    """GET /readyz on every node, five times a second, until stopped."""

    def __init__(self, nodes: list[Node], stop: threading.Event) -> None:
        super().__init__(daemon=True)
        self.nodes = nodes
        self.stop_event = stop
        self.probes: list[Probe] = []

    def run(self) -> None:
        with httpx.Client(timeout=5) as client:
            while not self.stop_event.is_set():
                for node in self.nodes:
                    sent = time.time()
                    started = time.monotonic()
                    try:
                        outcome = str(client.get(node.base_url + "/readyz").status_code)
                    except httpx.TransportError as exc:
                        outcome = type(exc).__name__
                    self.probes.append(Probe(sent, time.monotonic() - started, node.name, outcome))
                time.sleep(0.2)


@dataclass
class Fault:
    kind: str
    seconds: float
    start: float  # time.time()
    end: float = 0.0  # when the proxy let traffic through again
    recovered: float = 0.0  # every node ready and acknowledging publishes again
    phase_end: float = 0.0  # the next fault's start (or the end of the load)
    listen_before: dict[str, int] = field(default_factory=dict)
    listen_after: dict[str, int] = field(default_factory=dict)

    @property
    def recovery_s(self) -> float:
        return self.recovered - self.end

    def __str__(self) -> str:
        return f"{self.kind} {self.seconds:g}s"


def through(proxy: FaultProxy, url: str) -> str:
    """`url` with its host and port replaced by the proxy's."""
    parts = urlsplit(url)
    user = parts.netloc.rsplit("@", 1)[0] + "@" if "@" in parts.netloc else ""
    return urlunsplit(parts._replace(netloc=f"{user}127.0.0.1:{proxy.port}"))


@pytest.fixture
def proxy(shared_schema: SharedSchema) -> Iterator[FaultProxy]:
    parts = urlsplit(shared_schema.url)
    found = FaultProxy((parts.hostname or "127.0.0.1", parts.port or 5432)).start()
    try:
        yield found
    finally:
        found.close()


def disconnect_mid_body(node: Node) -> None:
    """A client that sends half of a publish's body and goes away."""
    with socket.create_connection(("127.0.0.1", node.port), timeout=5) as sock:
        head = (
            f"POST /v2/publish/http://127.0.0.1:9/gone HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Authorization: Bearer {node.creds.token}\r\nContent-Length: 1000\r\n\r\n"
        )
        sock.sendall(head.encode() + b"x" * 10)
        time.sleep(0.3)


def listen_count(node: Node) -> int:
    return len(node.events("storage.listen"))


def run_faults(
    plan: list[tuple[str, float]],
    schema: SharedSchema,
    nodes: Nodes,
    sink: SinkProcess,
    proxy: FaultProxy,
) -> None:
    sql = schema.sql
    ns = nodes.start(through(proxy, schema.url), 2, NODE_FLAGS)
    stop = threading.Event()
    with ns[0].client() as c:
        created = c.post(
            f"/v2/schedules/{sink.url('/cron')}",
            headers={"Upstash-Cron": "* * * * * *", "Upstash-Schedule-Id": "faults-cron"},
            content=b"tick",
        )
    assert created.status_code in (200, 201), created.text
    publishers = [
        Publisher(node, sink.url("/load"), f"{node.name}.{i}", stop)
        for node in ns
        for i in range(4)
    ]
    prober = ReadyProber(ns, stop)
    for thread in [*publishers, prober]:
        thread.start()
    started = time.time()
    faults: list[Fault] = []
    bursts: list[Burst] = []

    def recovered_since(t: float) -> bool:
        ready = {p.node for p in list(prober.probes) if p.sent > t and p.outcome == "200"}
        acked = {a.node for p in publishers for a in list(p.answers) if a.sent > t and a.message_id}
        return ready == acked == {n.name for n in ns}

    try:
        time.sleep(SETTLE_S)
        for kind, seconds in plan:
            fault = Fault(kind, seconds, time.time())
            fault.listen_before = {n.name: listen_count(n) for n in ns}
            proxy.inject(kind, seconds)
            burst = Burst(ns, sink.url("/load"), BURST_PER_NODE, f"burst{len(faults)}")
            burst.start()
            bursts.append(burst)
            time.sleep(seconds)
            fault.end = time.time()
            assert wait_until(lambda f=fault: recovered_since(f.end), RECOVERY_BOUND_S, 0.05), (
                f"not recovered {RECOVERY_BOUND_S}s after the {fault}: "
                + "\n".join(n.log_tail(15) for n in ns)
            )
            fault.recovered = time.time()
            faults.append(fault)
            time.sleep(SETTLE_S)
            fault.listen_after = {n.name: listen_count(n) for n in ns}
            log(f"{fault}: every node ready and publishing again {fault.recovery_s:.2f}s after")
        disconnect_mid_body(ns[0])
    finally:
        stop.set()
        for thread in [*publishers, prober, *bursts]:
            thread.join(CLIENT_TIMEOUT_S + 5)
    load_end = time.time()
    for f, nxt in itertools.pairwise(faults):
        f.phase_end = nxt.start
    faults[-1].phase_end = load_end
    with ns[1].client() as c:
        assert c.delete("/v2/schedules/faults-cron").status_code == 200

    answers = sorted((a for p in [*publishers, *bursts] for a in p.answers), key=lambda a: a.sent)
    acked = {a.message_id: a for a in answers if a.message_id}

    # Outcomes a fault kept from being recorded are applied late (or their messages are sent
    # again once the lease runs out): wait for every acknowledged message and every open row.
    def drained() -> bool:
        got = {d.message_id for d in sink.deliveries()}
        open_rows = sql.fetch("SELECT count(*) AS n FROM messages WHERE state <> 'delivered'")
        return acked.keys() <= got and open_rows[0]["n"] == 0

    drained_ok = wait_until(drained, LEASE_S + 15, 0.5)
    drained_s = time.time() - load_end
    deliveries = sink.deliveries()
    by_id: dict[str, list[int]] = defaultdict(list)
    for d in deliveries:
        by_id[d.message_id].append(d.start_ms)
    lost = acked.keys() - by_id.keys()

    # A second delivery is explained only by a lease that ran out: the first attempt's outcome
    # could not be recorded, and its lease (taken at the claim, renewed while the node is busy)
    # expired. The claim precedes the first delivery by at most the longest fault.
    longest_s = max(s for _, s in plan)
    duplicates = {mid: sorted(t) for mid, t in by_id.items() if len(t) > 1}
    unexplained = {
        mid: t
        for mid, t in duplicates.items()
        if any(b - a < (LEASE_S - longest_s - 1) * 1000 for a, b in itertools.pairwise(t))
    }

    # -- figures per fault -------------------------------------------------------------------
    problems: list[str] = []
    for f in faults:
        phase = [a for a in answers if f.start <= a.sent < f.phase_end]
        outcomes = Counter(a.outcome for a in phase)
        phase_acked = [a.message_id for a in phase if a.message_id]
        delivered = sum(1 for mid in phase_acked if mid in by_id)
        dups = [mid for mid in phase_acked if mid in duplicates]
        slow = max((a.done - a.sent for a in phase), default=0.0)
        refused = [a for a in phase if a.outcome == "503"]
        refused_slow = max((a.done - a.sent for a in refused), default=0.0)
        probes = [p for p in prober.probes if f.start <= p.sent < f.phase_end]
        during = [p for p in probes if f.start + 1.0 <= p.sent <= f.end]
        ready_outcomes = Counter(p.outcome for p in probes)
        gaps = [(b - a) / 1000 for mid in dups for a, b in itertools.pairwise(duplicates[mid])]
        listened = {n: f.listen_after[n] - f.listen_before[n] for n in f.listen_after}
        log(
            f"{f}: published {len(phase)}, acknowledged {len(phase_acked)}, delivered "
            f"{delivered}, outcomes {dict(outcomes)}; slowest answer {slow:.2f}s (503s: "
            f"{refused_slow:.2f}s); duplicates {len(dups)}"
            + (
                f" (sent again {min(gaps):.1f}-{max(gaps):.1f}s after the first attempt: "
                "its outcome was not recorded, its lease ran out)"
                if gaps
                else ""
            )
            + f"; recovery {f.recovery_s:.2f}s; /readyz {dict(ready_outcomes)}, slowest "
            f"{max((p.seconds for p in probes), default=0):.2f}s; LISTEN re-established "
            f"{listened}"
        )
        if f.kind in ("stall", "outage"):
            for n in ns:
                seen = {p.outcome for p in during if p.node == n.name}
                if "503" not in seen:
                    problems.append(f"{f}: {n.name} /readyz said {seen} during the fault")
        if f.kind in ("reset", "outage") and not all(v >= 1 for v in listened.values()):
            problems.append(f"{f}: LISTEN not re-established on every node: {listened}")
        # (A request sent just before the next fault may be answered 503 by that fault.)
        late_503 = [a for a in refused if a.sent > f.recovered + 1.0 and a.done < f.phase_end]
        if late_503:
            problems.append(f"{f}: {len(late_503)} publishes answered 503 after the recovery")

    # -- the cron schedule -------------------------------------------------------------------
    fires = sql.fetch("SELECT tick_ms, fired_ms FROM schedule_fires WHERE schedule_id = $1",
                      "faults-cron")  # fmt: skip
    cron_messages = sql.fetch(
        "SELECT id, created_ms FROM messages WHERE schedule_id = $1", "faults-cron"
    )
    ticks = sorted(f["tick_ms"] for f in fires)
    missed = [t for a, b in itertools.pairwise(ticks) for t in range(a + 1000, b, 1000)]
    missed_in_faults = [
        t
        for t in missed
        if any(f.start * 1000 - 1500 <= t <= f.recovered * 1000 + 1500 for f in faults)
    ]
    cron_deliveries = Counter(d.message_id for d in deliveries if d.path == "/cron")
    tick_of = {(f["fired_ms"]): f["tick_ms"] for f in fires}
    per_tick = Counter(tick_of.get(m["created_ms"]) for m in cron_messages)
    twice = {t: n for t, n in per_tick.items() if n > 1}
    log(
        f"cron every second: {len(fires)} ticks fired, {len(cron_messages)} messages, "
        f"{sum(cron_deliveries.values())} deliveries ({len(cron_deliveries)} distinct); ticks "
        f"skipped {len(missed)} ({len(missed_in_faults)} while a fault lasted), ticks fired "
        f"twice {len(twice)}"
    )

    # -- the nodes' logs ---------------------------------------------------------------------
    unhandled = [
        line
        for n in ns
        for line in n.log_lines()
        if "unhandled error" in line or "Exception in ASGI application" in line
    ]
    disconnects = [r for n in ns for r in n.events("request.client_disconnected")]
    all_probes = list(prober.probes)
    slow_probes = [p for p in all_probes if p.seconds > READY_BOUND_S]
    bad = Counter(a.outcome for a in answers if a.outcome not in ("201", "503"))
    not_json = [a for a in answers if a.outcome == "503" and not a.json_error]
    too_slow = [a for a in answers if a.done - a.sent > ANSWER_BOUND_S]
    outside = [
        a
        for a in answers
        if a.outcome != "201"
        and not any(f.start <= a.done and a.sent <= f.recovered + 1.0 for f in faults)
    ]
    log(
        f"overall: {len(answers)} publishes ({len(acked)} acknowledged) in "
        f"{load_end - started:.0f}s, answer p50 "
        f"{percentile([a.done - a.sent for a in answers], 50) * 1000:.0f} ms; "
        f"{len(deliveries)} deliveries, lost {len(lost)}, duplicates {len(duplicates)} "
        f"(unexplained {len(unexplained)}); drained {drained_s:.1f}s after the load stopped; "
        f"/readyz {len(all_probes)} probes, slowest "
        f"{max(p.seconds for p in all_probes):.2f}s; proxy {proxy.stats.accepted} connections, "
        f"{proxy.stats.reset} reset, {proxy.stats.dropped} dropped"
    )
    assert not bad, f"publishes answered with neither 201 nor 503: {dict(bad)}"
    assert not not_json, f"{len(not_json)} 503 answers without a JSON error"
    assert not too_slow, (
        f"{len(too_slow)} publishes took over {ANSWER_BOUND_S}s, the slowest "
        f"{max(a.done - a.sent for a in too_slow):.1f}s"
    )
    assert not outside, f"failures outside the faults: {Counter(a.outcome for a in outside)}"
    assert not slow_probes, f"/readyz slower than {READY_BOUND_S}s: {slow_probes[:5]}"
    assert not problems, "\n".join(problems)
    assert drained_ok and not lost, f"{len(lost)} acknowledged messages never delivered"
    assert not unexplained, f"duplicates not explained by a lease expiry: {unexplained}"
    assert not twice, f"cron ticks fired more than once: {twice}"
    assert ticks and ticks[-1] > faults[-1].recovered * 1000, "cron stopped after the faults"
    assert not unhandled, f"unhandled errors logged: {unhandled[:3]}"
    assert disconnects, "the client that disconnected mid-body was not logged as such"
    assert all(n.alive() and n.starts == 1 for n in ns), "a node died or was restarted"


def _ready(server: RunningServer) -> tuple[int, dict[str, str], float]:
    started = time.monotonic()
    r = httpx.get(server.base_url + "/readyz", timeout=5)
    return r.status_code, r.json().get("problems", {}), time.monotonic() - started


def _serve(tmp_path: Path, url: str, **overrides: float) -> RunningServer:
    return RunningServer(dev_settings(tmp_path, database_url=url, **overrides)).start()


@pytest.mark.timeout(60)
def test_a_stalled_or_cut_off_database_is_a_prompt_503_and_an_unready_node(
    shared_schema: SharedSchema, proxy: FaultProxy, receiver: Receiver, tmp_path: Path
) -> None:
    """One node in-process (default statement timeout, 0.5 s acquire timeout): what each request
    and probe sees during a fault."""
    server = _serve(tmp_path, through(proxy, shared_schema.url), database_acquire_timeout_s=0.5)
    bound_s = 0.5 + 2.25 * STALL_CHECK_S + 0.5  # one call on a silent server, and the rest
    try:
        with api(server) as client:

            def publish(path: str) -> tuple[httpx.Response, float]:
                started = time.monotonic()
                r = client.post(f"/v2/publish/{receiver.url(path)}", content=b"x")
                return r, time.monotonic() - started

            # Each message is delivered before the next fault: one claimed just as the fault
            # begins may have been committed by the database with the answer lost, and then
            # waits for its lease (30 s) to run out.
            assert publish("/before")[0].status_code == 201
            receiver.wait_for(1, "/before", timeout=10)
            assert _ready(server)[0] == 200
            for n, kind in enumerate(("stall", "outage"), 1):
                proxy.inject(kind, 3.0)
                answer, took = publish("/during")
                assert answer.status_code == 503, answer.text
                assert "PostgreSQL is unavailable" in answer.json()["error"]
                assert took < bound_s, f"{kind}: a publish took {took:.2f}s"
                status, problems, took = _ready(server)
                assert status == 503 and "storage" in problems, (kind, problems)
                assert took < READY_BOUND_S, f"{kind}: /readyz took {took:.2f}s"
                if kind == "outage":  # the LISTEN connection was reset: named as a problem
                    eventually(lambda: "storage.listen" in _ready(server)[1], 2.0)
                eventually(lambda: _ready(server)[0] == 200, 10.0)
                assert publish("/after")[0].status_code == 201
                receiver.wait_for(n, "/after", timeout=10)
    finally:
        server.stop()


@pytest.mark.timeout(60)
def test_a_statement_blocked_by_a_lock_ends_at_the_statement_timeout(
    shared_schema: SharedSchema, tmp_path: Path
) -> None:
    """Slow is not stalled: a statement waiting on a lock is left alone until the statement
    timeout (the watchdog sees the server answer), then answered 503; the node stays ready."""
    server = _serve(tmp_path, shared_schema.url, database_statement_timeout_s=2.5)
    try:
        with api(server) as client:
            assert client.post(f"/v2/publish/{nowhere('/x')}", content=b"x").status_code == 201

            async def hold_the_tokens_table(seconds: float) -> None:
                import asyncpg  # type: ignore[import-untyped]

                conn = await asyncpg.connect(shared_schema.url)
                try:
                    async with conn.transaction():
                        await conn.execute("LOCK TABLE tokens IN ACCESS EXCLUSIVE MODE")
                        await asyncio.sleep(seconds)
                finally:
                    await conn.close()

            holder = threading.Thread(
                target=lambda: asyncio.run(hold_the_tokens_table(5.0)), daemon=True
            )
            holder.start()
            time.sleep(0.3)
            started = time.monotonic()
            answer = client.post(f"/v2/publish/{nowhere('/x')}", content=b"x")
            took = time.monotonic() - started
            assert _ready(server)[0] == 200
            holder.join(10)
        assert answer.status_code == 503
        assert "statement timeout" in answer.json()["error"], answer.text
        assert 2.4 < took < 4.0, f"answered after {took:.2f}s"
    finally:
        server.stop()


@pytest.mark.timeout(150)
def test_nodes_stay_bounded_and_recover_from_database_connection_faults(
    shared_schema: SharedSchema, nodes: Nodes, sink: SinkProcess, proxy: FaultProxy
) -> None:
    run_faults(CI_PLAN, shared_schema, nodes, sink, proxy)


@pytest.mark.soak
@pytest.mark.timeout(1200)
@pytest.mark.skipif(not SOAK, reason=SOAK_REASON)
def test_soak_database_connection_faults(
    shared_schema: SharedSchema, nodes: Nodes, sink: SinkProcess, proxy: FaultProxy
) -> None:
    run_faults(SOAK_PLAN, shared_schema, nodes, sink, proxy)
