"""A store written by the previous release opens with this one, and everything in it is intact
and deliverable (tests/upgrade/fixtures/README.md says what the fixtures hold and how they were
made).

The server runs on a manual clock set to one hour after the fixture was made: the retries the old
release scheduled are due, nothing is past its retention, and the test moves time on to fire the
schedule and the delayed message, without sleeping.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from qstash import QStash
from qstash import Receiver as SignatureReceiver

from homing.cli import main
from homing.clock import ManualClock
from tests.conftest import ServerFactory
from tests.support.cli import run_homing
from tests.support.receiver import Received, Receiver
from tests.support.server import (
    DEV_CURRENT_KEY,
    DEV_NEXT_KEY,
    DEV_TOKEN,
    RunningServer,
    postgres_on_test_clock,
)
from tests.upgrade.conftest import OldStore, fixed_port_receiver

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS


@pytest.fixture
def receiver_of_fixtures(old_store: OldStore) -> Iterator[Receiver]:
    receiver = fixed_port_receiver(old_store.manifest["receiver_port"])
    yield receiver
    receiver.close()


@dataclasses.dataclass
class Upgraded:
    store: OldStore
    server: RunningServer
    clock: ManualClock
    client: QStash  # the dev account, which made everything but the token's message
    receiver: Receiver

    @property
    def m(self) -> dict[str, Any]:
        return self.store.manifest

    def advance(self, ms: int) -> None:
        self.server.advance(ms)


@pytest.fixture
def upgraded(
    old_store: OldStore, receiver_of_fixtures: Receiver, start_server: ServerFactory
) -> Upgraded:
    # Given a store of the previous release, migrated by this one's `homing migrate` (run in
    # this process: tests/upgrade/test_migrate.py runs it as a command)
    with pytest.raises(SystemExit) as migrated:
        main(["migrate", "--database", old_store.url], environ={})
    assert migrated.value.code == 0
    # When this release serves it
    clock = ManualClock(start_ms=old_store.manifest["made_at_ms"] + HOUR_MS)
    if old_store.backend == "postgres":
        server = start_server(clock=clock, storage=postgres_on_test_clock(old_store.url, clock))
    else:
        server = start_server(clock=clock, database_url=old_store.url)
    client = QStash(DEV_TOKEN, base_url=server.base_url)
    return Upgraded(old_store, server, clock, client, receiver_of_fixtures)


def body_of(req: Received) -> str:
    return req.body.decode()


def test_messages_waiting_for_a_retry_are_delivered_signed(upgraded: Upgraded) -> None:
    m, client, receiver = upgraded.m, upgraded.client, upgraded.receiver
    for i, message_id in enumerate(m["pending"], start=1):
        message = client.message.get(message_id)
        assert (message.url, message.body, message.max_retries) == (
            f"http://127.0.0.1:{m['receiver_port']}/pending/{i}", f"pending {i}", 3,
        )  # fmt: skip
    verifier = SignatureReceiver(DEV_CURRENT_KEY, DEV_NEXT_KEY)
    for i, message_id in enumerate(m["pending"], start=1):
        [got] = receiver.wait_for(1, f"/pending/{i}")
        assert got.message_id == message_id and body_of(got) == f"pending {i}"
        assert got.headers["Upstash-Retried"] == "1"  # the old release's attempt counts
        verifier.verify(signature=got.headers["Upstash-Signature"], body=body_of(got))


def test_the_token_made_by_the_old_cli_still_works_with_its_own_keys(upgraded: Upgraded) -> None:
    m, server = upgraded.m, upgraded.server
    token = m["token"]["token"]
    with httpx.Client(
        base_url=server.base_url, headers={"Authorization": f"Bearer {token}"}
    ) as http:
        keys = http.get("/v2/keys")
        assert keys.status_code == 200
        mine = http.get(f"/v2/messages/{m['by_token']}")
        assert mine.status_code == 200 and mine.json()["body"] == "by token"
    # the dev account does not see the token's account's message
    with httpx.Client(
        base_url=server.base_url, headers={"Authorization": f"Bearer {DEV_TOKEN}"}
    ) as http:
        assert http.get(f"/v2/messages/{m['by_token']}").status_code == 404
    [got] = upgraded.receiver.wait_for(1, "/token")
    assert got.message_id == m["by_token"]
    verifier = SignatureReceiver(keys.json()["current"], keys.json()["next"])
    verifier.verify(signature=got.headers["Upstash-Signature"], body=body_of(got))
    listed = run_homing("tokens", "list", "--database", upgraded.store.url)
    assert listed.returncode == 0 and "upgrade-account" in listed.stdout, listed.stderr


def test_the_paused_queue_keeps_its_messages_and_delivers_them_in_order(
    upgraded: Upgraded,
) -> None:
    m, client, receiver = upgraded.m, upgraded.client, upgraded.receiver
    queue = client.queue.get(m["queue"]["name"])
    assert (queue.parallelism, queue.paused, queue.lag) == (1, True, 3)
    assert receiver.to("/queue/1") == []
    client.queue.resume(m["queue"]["name"])
    for i in (1, 2, 3):
        receiver.wait_for(1, f"/queue/{i}")
    got = [r for r in receiver.requests if r.path.startswith("/queue/")]
    assert [r.message_id for r in got] == m["queue"]["messages"]
    assert [body_of(r) for r in got] == ["queued 1", "queued 2", "queued 3"]


def test_the_url_group_keeps_its_endpoints_and_fans_out(upgraded: Upgraded) -> None:
    m, client, receiver = upgraded.m, upgraded.client, upgraded.receiver
    group = client.url_group.get(m["url_group"]["name"])
    assert {e.name: e.url for e in group.endpoints} == m["url_group"]["endpoints"]
    client.message.publish(url_group=m["url_group"]["name"], body="fan out")
    for name in ("a", "b"):
        [got] = receiver.wait_for(1, f"/group/{name}")
        assert body_of(got) == "fan out"


def test_the_schedule_is_intact_and_fires(upgraded: Upgraded) -> None:
    m, client, receiver = upgraded.m, upgraded.client, upgraded.receiver
    schedule = client.schedule.get(m["schedule"]["id"])
    assert (schedule.cron, schedule.destination, schedule.body, schedule.paused) == (
        m["schedule"]["cron"], m["schedule"]["destination"], "tick", False,
    )  # fmt: skip
    upgraded.advance(60_000)  # the next minute's tick
    got = receiver.wait_for(1, "/schedule")
    assert all(body_of(r) == "tick" for r in got)
    assert all(r.headers["Upstash-Schedule-Id"] == m["schedule"]["id"] for r in got)


def test_dlq_entries_are_intact_and_can_be_retried(upgraded: Upgraded) -> None:
    m, client, receiver = upgraded.m, upgraded.client, upgraded.receiver
    listed = {e.dlq_id: e for e in client.dlq.list().messages}
    assert set(listed) == set(m["dlq"].values())
    for message_id, dlq_id in m["dlq"].items():
        entry = client.dlq.get(dlq_id)
        assert entry.message_id == message_id and entry.body in ("dead 1", "dead 2")
        assert entry.url.endswith(entry.body.replace("dead ", "/dlq/"))
    first = next(d for d in m["dlq"].values() if listed[d].body == "dead 1")
    with httpx.Client(
        base_url=upgraded.server.base_url, headers={"Authorization": f"Bearer {DEV_TOKEN}"}
    ) as http:
        assert http.post(f"/v2/dlq/retry/{first}").is_success
    [got] = receiver.wait_for(1, "/dlq/1")
    assert body_of(got) == "dead 1"
    assert {e.dlq_id for e in client.dlq.list().messages} == set(m["dlq"].values()) - {first}


def test_the_delayed_message_waits_for_its_time_then_is_delivered(upgraded: Upgraded) -> None:
    m, client, receiver = upgraded.m, upgraded.client, upgraded.receiver
    message = client.message.get(m["delayed"])
    due_ms = message.not_before
    assert m["made_at_ms"] + 30 * DAY_MS - 60_000 < due_ms <= m["made_at_ms"] + 30 * DAY_MS + 60_000
    receiver.wait_for(2, None)  # what was due is out (the retries) ...
    assert receiver.to("/delayed") == []  # ... but not this one
    upgraded.advance(due_ms - upgraded.clock.now_ms() + 1_000)
    [got] = receiver.wait_for(1, "/delayed")
    assert got.message_id == m["delayed"] and body_of(got) == "delayed"
