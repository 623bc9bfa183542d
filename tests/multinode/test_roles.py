"""Node roles: `homing serve --role api|worker|all` on one PostgreSQL database.

    one api node, two worker nodes   a publish on the api node wakes the workers at once (NOTIFY),
                                     everything published through the api node is delivered
                                     by the workers, each message once except what a worker
                                     killed with SIGKILL had in flight (sent again by the other
                                     worker once its lease ran out); a per-second cron schedule
                                     fires every tick once, through the kill
    a worker serves only probes      /healthz, /readyz and /metrics; everything else is a JSON 404
    SQLite allows only `all`         `--role worker` (or HOMING_ROLE=api) exits non-zero, saying why

The nodes run with `--lease 3`, so the killed worker's attempts are taken over within seconds
instead of the default 30.
"""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

import httpx
import pytest

from tests.multinode.conftest import SharedSchema
from tests.multinode.support import Node, Nodes, SinkProcess, log, wait_until

pytestmark = pytest.mark.postgres

LEASE_S = 3
COMMON = ["--lease", str(LEASE_S), "--metrics-path", "/metrics"]
MESSAGES = 400
PER_REQUEST = 100
SINK_MS = 1000  # each delivery takes a second: the workers always hold attempts in flight


def now_ms() -> int:
    return int(time.time() * 1000)


def node_id(node: Node) -> str:
    [started] = node.events("engine.started")
    return str(started["node_id"])


def held_by(schema: SharedSchema, owner: str) -> set[str]:
    rows = schema.sql.fetch(
        "SELECT id FROM messages WHERE state = 'active' AND lease_owner = $1", owner
    )
    return {r["id"] for r in rows}


def publish_one_and_time_arrival(api: Node, sink: SinkProcess, path: str) -> int:
    """Milliseconds from the api node's answer to the message's arrival at the sink."""
    with api.client() as c:
        assert c.post(f"/v2/publish/{sink.url(path)}", content=b"wake").status_code == 201
    acked = now_ms()

    def arrived() -> list[int]:
        return [d.start_ms for d in sink.deliveries() if d.path == path]

    assert wait_until(lambda: bool(arrived()), 5, interval=0.01), f"{path} never arrived"
    return arrived()[0] - acked


def check_probes_only(worker: Node, api: Node) -> None:
    for path in ("/healthz", "/readyz", "/metrics"):
        assert httpx.get(worker.base_url + path).status_code == 200, path
        assert httpx.get(api.base_url + path).status_code == 200, path
    with worker.client() as c:
        for method, path in (
            ("POST", "/v2/publish/https://example.com/x"),
            ("GET", "/v2/queues"),
            ("GET", "/v2/schedules"),
            ("GET", "/console"),
            ("GET", "/openapi.json"),
        ):
            answer = c.request(method, path)
            assert answer.status_code == 404, (method, path, answer.text)
            assert answer.json()["error"].startswith("not found"), answer.text
    with api.client() as c:
        assert c.get("/v2/queues").status_code == 200
        assert c.get("/console", follow_redirects=False).status_code != 404


@pytest.mark.timeout(120)
def test_an_api_node_and_two_workers_deliver_everything_and_fire_each_tick_once(
    shared_schema: SharedSchema, nodes: Nodes, sink: SinkProcess
) -> None:
    [api] = nodes.start(shared_schema.url, 1, ["--role", "api", *COMMON])
    workers = nodes.start(shared_schema.url, 2, ["--role", "worker", *COMMON])
    assert api.events("engine.started") == [], "an api node must run no delivery engine"
    victim, survivor = workers
    victim_id = node_id(victim)
    check_probes_only(victim, api)

    with api.client() as c:
        answer = c.post(
            f"/v2/schedules/{sink.url('/tick')}",
            headers={"Upstash-Cron": "* * * * * *", "Upstash-Schedule-Id": "roles-tick"},
        )
        assert answer.status_code == 200, answer.text
    schedule_created = now_ms()

    # Work published on the api node wakes the workers through PostgreSQL NOTIFY: it reaches
    # the receiver within milliseconds, not after their 1-s poll.
    waits = sorted(publish_one_and_time_arrival(api, sink, f"/wake{i}") for i in range(5))
    log(f"roles: publish ack -> arrival at the sink {waits} ms")
    assert waits[2] < 300, f"workers were not woken by a publish on the api node: {waits} ms"

    started = time.monotonic()
    acked: dict[str, int] = {}
    with api.client() as c:
        for b in range(MESSAGES // PER_REQUEST):
            numbers = range(b * PER_REQUEST, (b + 1) * PER_REQUEST)
            items = [{"destination": sink.url(f"/m?ms={SINK_MS}"), "body": str(n)} for n in numbers]
            answer = c.post("/v2/batch", json=items)
            assert answer.status_code == 201, answer.text
            acked.update({r["messageId"]: n for r, n in zip(answer.json(), numbers, strict=True)})
            time.sleep(0.2)

    # Kill the victim while it holds attempts in flight (it claimed some of every batch it saw).
    assert wait_until(lambda: bool(held_by(shared_schema, victim_id)), 5, interval=0.05)
    victim.kill()
    killed_ms = now_ms()
    in_flight = held_by(shared_schema, victim_id)
    log(f"roles: killed {victim.name} ({victim_id}) holding {len(in_flight)} attempts")

    def drained() -> bool:
        got = {d.message_id for d in sink.deliveries()}
        counts = shared_schema.sql.fetch(
            "SELECT count(*) AS n FROM messages WHERE schedule_id IS NULL AND state <> 'delivered'"
        )[0]["n"]
        return set(acked) <= got and counts == 0

    assert wait_until(drained, LEASE_S + 15, interval=0.2), "not every message was delivered"
    drained_s = time.monotonic() - started

    # Let the schedule tick past the kill for a while, then delete it.
    time.sleep(max(0.0, (schedule_created + 8000 - now_ms()) / 1000))
    with api.client() as c:
        assert c.delete("/v2/schedules/roles-tick").status_code == 200
    deleted = now_ms()
    assert wait_until(
        lambda: (
            shared_schema.sql.fetch(
                "SELECT count(*) AS n FROM messages WHERE schedule_id IS NOT NULL "
                "AND state <> 'delivered'"
            )[0]["n"]
            == 0
        ),
        LEASE_S + 10,
    ), "schedule messages still open"

    deliveries = sink.deliveries()
    sends = Counter(d.message_id for d in deliveries if d.path == "/m")
    lost = set(acked) - set(sends)
    duplicates = {mid for mid, n in sends.items() if n > 1}
    delivered_numbers = {int(d.body) for d in deliveries if d.path == "/m"}
    log(
        f"roles: {len(acked)} published through the api node, {sum(sends.values())} deliveries, "
        f"{len(duplicates)} sent twice (the victim held {len(in_flight)}), drained in "
        f"{drained_s:.1f}s"
    )
    assert not lost, f"{len(lost)} acknowledged messages never delivered"
    assert delivered_numbers == set(range(MESSAGES))
    assert duplicates <= in_flight, "a message not in flight on the killed worker was sent twice"
    every = Counter(d.message_id for d in deliveries)
    assert all(every[mid] >= 1 for mid in in_flight), "the killed worker's attempts were lost"

    fires = shared_schema.sql.fetch(
        "SELECT tick_ms, fired_ms FROM schedule_fires WHERE schedule_id = 'roles-tick' "
        "ORDER BY tick_ms"
    )
    ticks = [f["tick_ms"] for f in fires]
    assert len(ticks) == len(set(ticks)), "a tick fired twice"
    gaps = [(a, b) for a, b in itertools.pairwise(ticks) if b - a != 1000]
    assert not gaps, f"ticks missed between {gaps}"
    assert ticks[0] <= schedule_created + 2000 and ticks[-1] >= deleted - 2000, (
        f"fired {ticks[0]}..{ticks[-1]}, lived {schedule_created}..{deleted}"
    )
    assert ticks[-1] > killed_ms + 1000, "the schedule stopped firing when a worker died"
    tick_messages: defaultdict[str, int] = defaultdict(int)
    for d in deliveries:
        if d.path == "/tick":
            assert d.schedule_id == "roles-tick"
            tick_messages[d.message_id] += 1
    assert len(tick_messages) == len(ticks), "each fire delivers exactly one message"
    twice = {mid for mid, n in tick_messages.items() if n > 1}
    assert twice <= in_flight, "a tick was delivered twice"
    log(f"roles: {len(ticks)} ticks fired once each, {len(twice)} tick deliveries repeated")
    assert survivor.alive() and api.alive()


def test_sqlite_allows_only_the_all_role(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HOMING_", "QSTASH_"))}
    base = [
        sys.executable, "-m", "homing", "serve", "--token", "t", "--current-signing-key", "a",
        "--next-signing-key", "b", "--data-dir", str(tmp_path), "--port", "0",
    ]  # fmt: skip
    for extra_args, extra_env in ((["--role", "worker"], {}), ([], {"HOMING_ROLE": "api"})):
        done = subprocess.run(
            base + extra_args,
            capture_output=True,
            text=True,
            timeout=30,
            env={**env, **extra_env},
        )
        assert done.returncode != 0
        role = "worker" if extra_args else "api"
        assert f"role {role!r} needs PostgreSQL" in done.stderr, done.stderr
        assert "use --role all" in done.stderr
    assert not (tmp_path / "homing.db").exists(), "nothing was started"
