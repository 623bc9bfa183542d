"""Queues (spec 6, 9.15, 11.5): upsert, pause, delete, and FIFO delivery with parallelism."""

from __future__ import annotations

import threading
import time
from typing import Any

import httpx
import pytest
from qstash import QStash
from qstash.errors import QStashError

from tests.support.http import api as raw_client
from tests.support.receiver import Concurrency, Received, Receiver, Reply
from tests.support.server import RunningServer
from tests.support.waiting import eventually

QUEUE_KEYS = {"name", "parallelism", "createdAt", "updatedAt", "lag", "paused"}


def api(server: RunningServer) -> httpx.Client:
    """The raw HTTP client, with the longer timeout these tests use."""
    return raw_client(server, timeout=30)


# -- upsert, get, list, delete -----------------------------------------------------------------


def test_upsert_get_and_list_show_all_six_keys(client: QStash, server: RunningServer) -> None:
    before = int(time.time() * 1000)
    client.queue.upsert("orders", parallelism=3)
    queue = client.queue.get("orders")
    assert (queue.name, queue.parallelism, queue.lag, queue.paused) == ("orders", 3, 0, False)
    assert before - 1000 <= queue.created_at <= queue.updated_at <= time.time() * 1000 + 1000

    doc = api(server).get("/v2/queues/orders").json()
    assert set(doc) == QUEUE_KEYS
    [listed] = api(server).get("/v2/queues").json()
    assert listed == doc


def test_upsert_replaces_parallelism_and_paused_and_bumps_updated_at(client: QStash) -> None:
    client.queue.upsert("q1", parallelism=1)
    created = client.queue.get("q1")
    time.sleep(0.01)
    client.queue.upsert("q1", parallelism=5, paused=True)
    changed = client.queue.get("q1")
    assert (changed.parallelism, changed.paused) == (5, True)
    assert changed.created_at == created.created_at
    assert changed.updated_at > created.updated_at
    client.queue.upsert("q1", parallelism=5, paused=False)
    assert client.queue.get("q1").paused is False


def test_raw_upsert_defaults_to_parallelism_1_not_paused(server: RunningServer) -> None:
    http = api(server)
    assert http.post("/v2/queues", json={"queueName": "plain"}).status_code == 200
    doc = http.get("/v2/queues/plain").json()
    assert (doc["parallelism"], doc["paused"], doc["lag"]) == (1, False, 0)


def test_list_is_empty_for_a_fresh_account_and_sorted_names(client: QStash) -> None:
    assert client.queue.list() == []
    for name in ("b-queue", "a-queue"):
        client.queue.upsert(name)
    assert sorted(q.name for q in client.queue.list()) == ["a-queue", "b-queue"]


def test_pause_and_resume_toggle_paused_and_are_idempotent(client: QStash) -> None:
    client.queue.upsert("toggle")
    client.queue.pause("toggle")
    client.queue.pause("toggle")
    assert client.queue.get("toggle").paused is True
    client.queue.resume("toggle")
    client.queue.resume("toggle")
    assert client.queue.get("toggle").paused is False


def test_delete_removes_the_queue_at_once_and_missing_ones_delete_with_200(
    client: QStash, server: RunningServer
) -> None:
    client.queue.upsert("gone")
    client.queue.delete("gone")
    assert client.queue.list() == []
    assert api(server).get("/v2/queues/gone").status_code == 404
    client.queue.delete("gone")
    assert api(server).delete("/v2/queues/never-was").status_code == 200


def test_deleting_a_queue_cancels_its_waiting_messages(client: QStash, receiver: Receiver) -> None:
    client.queue.upsert("doomed", paused=True)
    result = client.message.enqueue(queue="doomed", url=receiver.url("/doomed"), body="x")
    client.queue.delete("doomed")
    logs = client.log.list(filter={"message_id": result.message_id}).logs
    assert "CANCELED" in [entry.state.value for entry in logs]
    time.sleep(0.2)
    assert receiver.to("/doomed") == []


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({"queueName": "q", "parallelism": 0}, id="parallelism-0"),
        pytest.param({"queueName": "q", "parallelism": -1}, id="parallelism-negative"),
        pytest.param({"queueName": "q", "parallelism": "2"}, id="parallelism-string"),
        pytest.param({"queueName": "bad name"}, id="invalid-name"),
        pytest.param({"parallelism": 1}, id="missing-name"),
        pytest.param({"queueName": "q", "paused": "yes"}, id="paused-not-bool"),
    ],
)
def test_invalid_upserts_are_400(server: RunningServer, body: dict[str, Any]) -> None:
    response = api(server).post("/v2/queues", json=body)
    assert response.status_code == 400, response.text
    assert api(server).get("/v2/queues").json() == []


def test_parallelism_above_the_maximum_is_412(server: RunningServer) -> None:
    response = api(server).post("/v2/queues", json={"queueName": "huge", "parallelism": 100_000})
    assert response.status_code == 412, response.text


def test_an_account_holds_at_most_1000_queues(server: RunningServer) -> None:
    """Spec 6.1 / 14: creating a queue beyond the maximum count answers 412; existing queues
    can still be changed."""
    http = api(server)
    items = [
        {
            "destination": "http://127.0.0.1:9/x",
            "queue": f"q{i}",
            "headers": {"Upstash-Delay": "1h"},
        }
        for i in range(1000)
    ]
    assert http.post("/v2/batch", json=items).status_code in (200, 201)  # auto-creates 1000
    response = http.post("/v2/queues", json={"queueName": "one-too-many"})
    assert response.status_code == 412, response.text
    assert http.get("/v2/queues/one-too-many").status_code == 404
    assert http.post("/v2/queues", json={"queueName": "q7", "parallelism": 2}).status_code == 200
    assert http.get("/v2/queues/q7").json()["parallelism"] == 2


def test_enqueue_and_batch_cannot_create_queues_past_the_quota(server: RunningServer) -> None:
    """The quota holds however a queue comes into being: a batch that would pass it is refused
    whole (nothing stored), and so is an enqueue into a 1001st queue."""
    http = api(server)

    def item(queue: str) -> dict[str, Any]:
        return {
            "destination": "http://127.0.0.1:9/x",
            "queue": queue,
            "headers": {"Upstash-Delay": "1h"},
        }

    too_many = http.post("/v2/batch", json=[item(f"q{i}") for i in range(1001)])
    assert too_many.status_code == 412, too_many.text
    assert http.get("/v2/queues").json() == []
    assert http.post("/v2/batch", json=[item(f"q{i}") for i in range(1000)]).status_code == 201
    refused = http.post(
        "/v2/enqueue/one-too-many/http://127.0.0.1:9/x", headers={"Upstash-Delay": "1h"}
    )
    assert refused.status_code == 412, refused.text
    assert http.get("/v2/queues/one-too-many").status_code == 404
    # Existing queues still take messages.
    assert http.post("/v2/enqueue/q7/http://127.0.0.1:9/x").status_code == 201


def test_sdk_upsert_with_parallelism_0_raises(client: QStash) -> None:
    with pytest.raises(QStashError, match="400"):
        client.queue.upsert("zero", parallelism=0)


def test_unknown_queue_get_pause_and_resume_are_404(client: QStash, server: RunningServer) -> None:
    http = api(server)
    assert http.get("/v2/queues/nope").status_code == 404
    assert http.post("/v2/queues/nope/pause").status_code == 404
    assert http.post("/v2/queues/nope/resume").status_code == 404
    with pytest.raises(QStashError):
        client.queue.get("nope")
    assert client.queue.list() == []  # pausing did not create it


def test_invalid_queue_name_in_the_path_is_400(server: RunningServer) -> None:
    assert api(server).get("/v2/queues/bad%20name").status_code == 400


# -- enqueue -------------------------------------------------------------------------------


def test_enqueue_creates_the_queue_on_the_fly(client: QStash, receiver: Receiver) -> None:
    result = client.message.enqueue_json(queue="auto", url=receiver.url("/auto"), body={"a": 1})
    [got] = receiver.wait_for(1, "/auto")
    assert got.headers["Upstash-Message-Id"] == result.message_id
    queue = client.queue.get("auto")
    assert (queue.parallelism, queue.paused) == (1, False)
    assert client.message.get(result.message_id).queue == "auto"


def test_raw_enqueue_returns_the_publish_shape(server: RunningServer, receiver: Receiver) -> None:
    url = receiver.url("/raw-enqueue")
    response = api(server).post(f"/v2/enqueue/rawq/{url}", content=b"x")
    assert response.status_code in (200, 201)
    assert response.json()["url"] == url
    receiver.wait_for(1, "/raw-enqueue")


def test_enqueue_with_an_invalid_queue_name_is_400(
    server: RunningServer, receiver: Receiver
) -> None:
    response = api(server).post(f"/v2/enqueue/bad,name/{receiver.url('/x')}", content=b"x")
    assert response.status_code == 400


def test_a_paused_queue_accepts_but_delivers_nothing_until_resumed(
    client: QStash, receiver: Receiver
) -> None:
    client.queue.upsert("held", paused=True)
    ids = [
        client.message.enqueue(queue="held", url=receiver.url("/held"), body=str(i)).message_id
        for i in range(3)
    ]
    assert client.queue.get("held").lag == 3
    time.sleep(0.3)
    assert receiver.to("/held") == []

    client.queue.resume("held")
    got = receiver.wait_for(3, "/held")
    assert [r.message_id for r in got] == ids
    assert [r.body for r in got] == [b"0", b"1", b"2"]
    eventually(lambda: client.queue.get("held").lag == 0)


def test_pausing_through_upsert_holds_messages_too(client: QStash, receiver: Receiver) -> None:
    client.queue.upsert("via-upsert", paused=False)
    client.queue.upsert("via-upsert", paused=True)
    client.message.enqueue(queue="via-upsert", url=receiver.url("/vu"), body="x")
    time.sleep(0.3)
    assert receiver.to("/vu") == []
    client.queue.upsert("via-upsert", paused=False)
    receiver.wait_for(1, "/vu")


def test_lag_counts_messages_not_yet_delivered(client: QStash, receiver: Receiver) -> None:
    release = threading.Event()
    rule = Concurrency(release=release)
    receiver.on("/slow", rule)
    client.queue.upsert("lagging", parallelism=1)
    for i in range(4):
        client.message.enqueue(queue="lagging", url=receiver.url("/slow"), body=str(i))
    rule.wait_started(1)
    assert client.queue.get("lagging").lag == 4  # one in flight, three waiting
    release.set()
    receiver.wait_for(4, "/slow")
    eventually(lambda: client.queue.get("lagging").lag == 0)


# -- FIFO and parallelism --------------------------------------------------------------------


def test_fifo_with_parallelism_1_keeps_publish_order_through_retries(
    client: QStash, server: RunningServer, receiver: Receiver
) -> None:
    """500 messages; every tenth fails its first attempt once and is retried 50 ms later. The
    queue keeps the failed message active through its retry, so arrivals stay in order."""
    count = 500

    def flaky(req: Received) -> Reply:
        first_try = req.headers["Upstash-Retried"] == "0"
        return Reply(500, b"") if first_try and int(req.body) % 10 == 0 else Reply(200, b"")

    rule = Concurrency(reply=flaky)
    receiver.on("/fifo", rule)
    client.queue.upsert("fifo", parallelism=1)
    items = [
        {
            "destination": receiver.url("/fifo"),
            "queue": "fifo",
            "body": str(i),
            "headers": {"Upstash-Retry-Delay": "50"},
        }
        for i in range(count)
    ]
    results = api(server).post("/v2/batch", json=items)
    assert results.status_code in (200, 201)
    assert len(results.json()) == count

    arrivals = receiver.wait_for(count + count // 10, "/fifo", timeout=60)
    first_seen: dict[str, int] = {}
    for req in arrivals:
        first_seen.setdefault(req.message_id, int(req.body))
    assert list(first_seen.values()) == list(range(count))  # first deliveries in publish order
    expected: list[int] = []
    for i in range(count):
        expected.extend([i, i] if i % 10 == 0 else [i])
    assert [int(r.body) for r in arrivals] == expected  # the retry comes before the next one
    assert rule.peak == 1
    eventually(lambda: client.queue.get("fifo").lag == 0)


def test_parallelism_n_never_exceeds_n_concurrent_deliveries(
    client: QStash, server: RunningServer, receiver: Receiver
) -> None:
    rule = Concurrency(0.05)
    receiver.on("/par", rule)
    client.queue.upsert("par3", parallelism=3)
    items = [
        {"destination": receiver.url("/par"), "queue": "par3", "body": str(i)} for i in range(30)
    ]
    api(server).post("/v2/batch", json=items)
    receiver.wait_for(30, "/par", timeout=20)
    assert rule.peak == 3
    # Started in enqueue order (each start is at most parallelism-1 places early).
    bodies = [int(r.body) for r in rule.started]
    assert sorted(bodies) == list(range(30))
    assert all(abs(b - i) < 3 for i, b in enumerate(bodies))


def test_raising_parallelism_lets_more_waiting_messages_start(
    client: QStash, receiver: Receiver
) -> None:
    release = threading.Event()
    rule = Concurrency(release=release)
    receiver.on("/grow", rule)
    client.queue.upsert("grow", parallelism=1)
    for i in range(3):
        client.message.enqueue(queue="grow", url=receiver.url("/grow"), body=str(i))
    rule.wait_started(1)
    time.sleep(0.2)
    assert len(rule.started) == 1
    client.queue.upsert("grow", parallelism=3)
    started = rule.wait_started(3)
    release.set()
    assert started[0].body == b"0"  # 1 and 2 were let in together: either may arrive first
    assert sorted(r.body for r in started) == [b"0", b"1", b"2"]
    assert rule.peak == 3
    receiver.wait_for(3, "/grow")


def test_deleted_queues_free_their_quota_and_do_not_come_back_past_it(
    server: RunningServer,
) -> None:
    http = api(server)
    held = {"headers": {"Upstash-Delay": "1h"}, "destination": "http://127.0.0.1:9/x"}
    assert (
        http.post("/v2/batch", json=[held | {"queue": f"old{i}"} for i in range(1000)]).status_code
        == 201
    )
    for i in range(1000):
        assert http.delete(f"/v2/queues/old{i}").status_code == 200
    assert (
        http.post("/v2/batch", json=[held | {"queue": f"new{i}"} for i in range(1000)]).status_code
        == 201
    )
    # The old names were seen before, but they are gone: re-creating one would be the 1001st.
    again = http.post("/v2/enqueue/old1/http://127.0.0.1:9/x", headers={"Upstash-Delay": "1h"})
    assert again.status_code == 412, again.text
