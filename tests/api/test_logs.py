"""Logs (a.k.a. events): filters, paging, cursors and entry fields (spec 1.8, 9.14, 11.3, 12.7)."""

from __future__ import annotations

import base64
import time
from typing import Any

import pytest
from qstash import QStash
from qstash.log import Log, LogState

from tests.support.http import api
from tests.support.receiver import Receiver, Reply
from tests.support.server import RunningServer
from tests.support.waiting import eventually


def logs_of(client: QStash, **filter: Any) -> list[Log]:
    return client.log.list(filter=filter).logs  # type: ignore[arg-type]


def delivered(client: QStash, receiver: Receiver, path: str, **kw: Any) -> str:
    message_id = client.message.publish(url=receiver.url(path), body="x", **kw).message_id
    eventually(lambda: logs_of(client, message_id=message_id, state=LogState.DELIVERED))
    return message_id


@pytest.fixture
def three(client: QStash, receiver: Receiver) -> dict[str, str]:
    """Two delivered messages and one that keeps failing slowly (in progress)."""
    receiver.on("/fail", lambda r: Reply(500, b"nope"))
    a = delivered(client, receiver, "/a", label="L1")
    b = delivered(client, receiver, "/b", label="L2")
    c = client.message.publish(
        url=receiver.url("/fail"), body="x", retries=2, retry_delay="5000"
    ).message_id
    eventually(lambda: logs_of(client, message_id=c, state=LogState.RETRY))
    return {"a": a, "b": b, "c": c}


def test_filter_by_message_id_shows_its_whole_timeline(
    client: QStash, three: dict[str, str]
) -> None:
    entries = logs_of(client, message_id=three["a"])
    assert {e.message_id for e in entries} == {three["a"]}
    assert [e.state for e in reversed(entries)] == [
        LogState.CREATED, LogState.ACTIVE, LogState.DELIVERED,
    ]  # fmt: skip
    both = logs_of(client, message_ids=[three["a"], three["b"]])
    assert {e.message_id for e in both} == {three["a"], three["b"]}
    assert len(both) == 6


def test_exactly_one_delivered_entry_per_message(client: QStash, three: dict[str, str]) -> None:
    for key in ("a", "b"):
        [entry] = logs_of(client, message_id=three[key], state=LogState.DELIVERED)
        assert entry.message_id == three[key]
    assert logs_of(client, message_id=three["c"], state=LogState.DELIVERED) == []
    all_delivered = logs_of(client, state=LogState.DELIVERED)
    assert sorted(e.message_id for e in all_delivered) == sorted([three["a"], three["b"]])


def test_in_progress_means_active_retry_or_error(
    client: QStash, receiver: Receiver, three: dict[str, str]
) -> None:
    entries = logs_of(client, state=LogState.IN_PROGRESS)
    assert entries
    assert {e.state for e in entries} <= {LogState.ACTIVE, LogState.RETRY, LogState.ERROR}
    mine = logs_of(client, message_id=three["c"], state=LogState.IN_PROGRESS)
    assert [e.state for e in reversed(mine)] == [LogState.ACTIVE, LogState.ERROR, LogState.RETRY]
    error = mine[1]
    assert error.error
    assert error.response_status == 500
    assert base64.b64decode(error.response_body or "") == b"nope"
    assert mine[0].next_delivery_time is not None
    assert mine[0].next_delivery_time >= mine[0].time + 4000


def test_filter_by_url_and_label(client: QStash, receiver: Receiver, three: dict[str, str]) -> None:
    assert {e.message_id for e in logs_of(client, url=receiver.url("/a"))} == {three["a"]}
    assert {e.message_id for e in logs_of(client, label="L2")} == {three["b"]}
    assert all(e.label == "L2" for e in logs_of(client, label="L2"))
    assert logs_of(client, label="none") == []


def test_paging_with_count_reaches_the_end(client: QStash, receiver: Receiver) -> None:
    for _ in range(3):
        delivered(client, receiver, "/p", label="pg")
    pages: list[list[Log]] = []
    cursor = None
    while True:
        page = client.log.list(cursor=cursor, count=4, filter={"label": "pg"})
        pages.append(page.logs)
        cursor = page.cursor
        if cursor is None:
            break
    assert [len(p) for p in pages] == [4, 4, 1]
    every = [e for p in pages for e in p]
    assert len({(e.message_id, e.state) for e in every}) == 9
    times = [e.time for e in every]
    assert times == sorted(times, reverse=True)  # newest first, across pages


def test_a_unix_ms_cursor_never_issued_is_an_upper_bound(
    client: QStash, receiver: Receiver
) -> None:
    before = delivered(client, receiver, "/before")
    now_ms = int(time.time() * 1000)
    time.sleep(0.01)
    after = delivered(client, receiver, "/after")
    page = client.log.list(cursor=str(now_ms))
    assert {e.message_id for e in page.logs} == {before}
    assert all(e.time <= now_ms for e in page.logs)
    assert page.cursor is None
    assert {e.message_id for e in client.log.list().logs} == {before, after}


def test_logs_path_answers_with_logs_and_events_newest_first(
    client: QStash, server: RunningServer, receiver: Receiver
) -> None:
    delivered(client, receiver, "/one")
    delivered(client, receiver, "/two")
    with api(server) as http:
        logs = http.get("/v2/logs").json()
        events = http.get("/v2/events").json()
    assert logs["logs"] == logs["events"] == events["events"]
    assert "cursor" not in logs and "cursor" not in events
    times = [e["time"] for e in logs["logs"]]
    assert times == sorted(times, reverse=True)
    assert logs["logs"][0]["state"] == "DELIVERED"
    assert logs["logs"][-1]["state"] == "CREATED"
    with api(server) as http:
        oldest_first = http.get("/v2/logs", params={"order": "earliestFirst"}).json()["logs"]
    assert oldest_first == list(reversed(logs["logs"]))


def test_log_entries_carry_the_message_configuration(
    client: QStash, server: RunningServer, receiver: Receiver
) -> None:
    expression = "1000 * (1 + retried)"
    message_id = delivered(
        client,
        receiver,
        "/conf",
        retry_delay=expression,
        retries=2,
        headers={"X-H": "h"},
        callback=receiver.url("/cb"),
        callback_headers={"X-Cb": "c"},
    )
    entries = logs_of(client, message_id=message_id)
    for e in entries:
        assert e.retry_delay_expression == expression
        assert e.max_retries == 2
        assert e.headers == {"X-H": ["h"]}
        assert base64.b64decode(e.body_base64 or "") == b"x"
        assert e.callback == receiver.url("/cb")
        assert e.callback_headers == {"X-Cb": ["c"]}
    with api(server) as http:
        raw = http.get("/v2/events", params={"messageId": message_id}).json()["events"]
    for e in raw:
        assert e["retryDelayExpr"] == e["retryDelayExpression"] == expression
        assert None not in e.values()


def test_state_filter_accepts_cancelled_with_two_ls_and_count_is_clamped(
    client: QStash, server: RunningServer, receiver: Receiver
) -> None:
    message_id = client.message.publish(url=receiver.url("/x"), body="x", delay="1h").message_id
    client.message.cancel(message_id)
    with api(server) as http:
        for spelling in ("CANCELLED", "CANCELED", "canceled"):
            answer = http.get("/v2/events", params={"state": spelling, "count": "100000"})
            assert answer.status_code == 200
            [entry] = answer.json()["events"]
            assert (entry["messageId"], entry["state"]) == (message_id, "CANCELED")
        assert http.get("/v2/events", params={"state": "LOST"}).status_code == 400


def test_time_range_filter(client: QStash, receiver: Receiver) -> None:
    first = delivered(client, receiver, "/first")
    middle_ms = int(time.time() * 1000)
    time.sleep(0.01)
    second = delivered(client, receiver, "/second")
    assert {e.message_id for e in logs_of(client, from_time=middle_ms + 1)} == {second}
    assert {e.message_id for e in logs_of(client, to_time=middle_ms)} == {first}


def test_timeline_of_a_message_that_fails_for_good(client: QStash, receiver: Receiver) -> None:
    receiver.on("/broken", lambda r: Reply(502, b"bad gateway"))
    message_id = client.message.publish(
        url=receiver.url("/broken"), body="x", retries=1, retry_delay="100"
    ).message_id
    eventually(lambda: logs_of(client, message_id=message_id, state=LogState.FAILED))
    entries = list(reversed(logs_of(client, message_id=message_id)))
    assert [e.state for e in entries] == [
        LogState.CREATED, LogState.ACTIVE, LogState.ERROR, LogState.RETRY,
        LogState.ACTIVE, LogState.ERROR, LogState.FAILED,
    ]  # fmt: skip
    retry = entries[3]
    assert retry.next_delivery_time is not None and retry.next_delivery_time >= retry.time + 100
    assert entries[-1].error
    assert all(e.response_status == 502 for e in entries if e.state is LogState.ERROR)
