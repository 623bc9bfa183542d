"""The dead-letter queue: list, get, delete, bulk delete and retry (spec 9.9, 11.2, 12.1-12.6)."""

from __future__ import annotations

import time
from typing import Any

import pytest
from qstash import QStash
from qstash.errors import QStashError

from tests.support.http import api
from tests.support.receiver import Received, Receiver, Reply
from tests.support.server import RunningServer
from tests.support.waiting import eventually


class Switch:
    """A destination that fails until it is switched on."""

    def __init__(self) -> None:
        self.up = False

    def __call__(self, req: Received) -> Reply:
        return Reply(200, b"ok") if self.up else Reply(404, b"404 Not Found")


@pytest.fixture
def down(receiver: Receiver) -> Switch:
    switch = Switch()
    receiver.on("/down", switch)
    return switch


def dead(client: QStash, receiver: Receiver, count: int = 1, **kw: Any) -> list[str]:
    """Publish `count` messages that fail at once; return their DLQ ids once all are there."""
    ids = [
        client.message.publish(url=receiver.url("/down"), body=f"m{i}", retries=0, **kw).message_id
        for i in range(count)
    ]

    def all_dead() -> list[str] | None:
        found = {m.message_id: m.dlq_id for m in client.dlq.list().messages}
        return [found[i] for i in ids] if all(i in found for i in ids) else None

    dlq_ids: list[str] = eventually(all_dead)
    return dlq_ids


def in_dlq(client: QStash) -> set[str]:
    return {m.dlq_id for m in client.dlq.list().messages}


def test_a_dead_message_can_be_read_and_deleted_once(
    client: QStash, receiver: Receiver, down: Switch
) -> None:
    result = client.message.publish(
        url=receiver.url("/down?q=1"),
        body="payload",
        headers={"X-H": "h"},
        retries=0,
        label="lbl",
    )
    [listed] = eventually(
        lambda: client.dlq.list(filter={"message_id": result.message_id}).messages
    )
    entry = client.dlq.get(listed.dlq_id)

    assert entry.dlq_id == listed.dlq_id
    assert entry.message_id == result.message_id
    assert entry.url == receiver.url("/down?q=1")
    assert (entry.body, entry.headers) == ("payload", {"X-H": ["h"]})
    assert (entry.response_status, entry.response_body) == (404, "404 Not Found")
    assert entry.response_headers and "Content-Length" in entry.response_headers
    assert (entry.max_retries, entry.label, entry.method) == (0, "lbl", "POST")

    client.dlq.delete(entry.dlq_id)
    with pytest.raises(QStashError, match="404"):
        client.dlq.delete(entry.dlq_id)
    with pytest.raises(QStashError, match="404"):
        client.dlq.get(entry.dlq_id)
    assert client.dlq.list().messages == []


def test_list_filters_and_pages_to_the_end(
    client: QStash, server: RunningServer, receiver: Receiver, down: Switch
) -> None:
    mine = set(dead(client, receiver, 5, label="page"))
    other = dead(client, receiver, 1, label="other")
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        page = client.dlq.list(cursor=cursor, count=2, filter={"label": "page"})
        seen += [m.dlq_id for m in page.messages]
        pages += 1
        cursor = page.cursor
        if cursor is None:
            break
    assert pages == 3
    assert sorted(seen) == sorted(mine)
    by_status = client.dlq.list(filter={"response_status": 404, "url": receiver.url("/down")})
    assert len(by_status.messages) == 6
    assert client.dlq.list(filter={"response_status": 500}).messages == []
    assert [m.dlq_id for m in client.dlq.list(filter={"label": "other"}).messages] == other
    with api(server) as http:
        earliest = [m["dlqId"] for m in http.get("/v2/dlq").json()["messages"]]
        latest = [m["dlqId"] for m in http.get("/v2/dlq?order=latestFirst").json()["messages"]]
    assert latest == list(reversed(earliest))


def test_delete_many_with_a_json_body(client: QStash, receiver: Receiver, down: Switch) -> None:
    a, b, c = dead(client, receiver, 3)
    assert client.dlq.delete_many([a, b, "1-0"]) == 2
    assert in_dlq(client) == {c}
    assert client.dlq.delete_many([]) == 0
    assert in_dlq(client) == {c}


def test_bare_bulk_delete_empties_the_dlq(
    client: QStash, server: RunningServer, receiver: Receiver, down: Switch
) -> None:
    dead(client, receiver, 3)
    with api(server) as http:
        assert http.delete("/v2/dlq").json() == {"deleted": 3}
    assert client.dlq.list().messages == []


def test_query_style_bulk_delete_by_ids(
    client: QStash, server: RunningServer, receiver: Receiver, down: Switch
) -> None:
    a, b, c = dead(client, receiver, 3)
    with api(server) as http:
        answer = http.delete("/v2/dlq", params=[("dlqIds", a), ("dlqIds", b)])
    assert answer.status_code == 200
    assert answer.json() == {"deleted": 2}
    assert in_dlq(client) == {c}


def test_an_empty_id_or_filter_in_a_bulk_query_selects_nothing(
    client: QStash, server: RunningServer, receiver: Receiver, down: Switch
) -> None:
    entries = set(dead(client, receiver, 2, label="x"))
    down.up = True
    with api(server) as http:
        for query in ("dlqIds=", "label=", "url=&count=5"):
            assert http.delete(f"/v2/dlq?{query}").json() == {"deleted": 0}, query
            assert http.post(f"/v2/dlq/retry?{query}").json() == {"responses": []}, query
    assert in_dlq(client) == entries


def test_query_style_bulk_delete_by_filter_pages_with_a_cursor(
    client: QStash, server: RunningServer, receiver: Receiver, down: Switch
) -> None:
    dead(client, receiver, 5, label="bulk")
    [kept] = dead(client, receiver, 1, label="keep")
    answers = []
    with api(server) as http:
        params: dict[str, str] = {"label": "bulk", "count": "2"}
        while True:
            answer = http.delete("/v2/dlq", params=params).json()
            answers.append(answer)
            if "cursor" not in answer:
                break
            params["cursor"] = answer["cursor"]
        no_match = http.delete("/v2/dlq", params={"label": "nothing-has-this"}).json()
    assert [a["deleted"] for a in answers] == [2, 2, 1]
    assert no_match == {"deleted": 0}
    assert in_dlq(client) == {kept}


def test_bulk_calls_refuse_unknown_parameters_and_list_refuses_host_and_path(
    client: QStash, server: RunningServer, receiver: Receiver, down: Switch
) -> None:
    [entry] = dead(client, receiver, 1, label="x")
    with api(server) as http:
        for answer in (
            http.delete("/v2/dlq", params={"labeel": "x"}),
            http.post("/v2/dlq/retry", params={"labeel": "x"}),
            http.get("/v2/dlq", params={"host": "127.0.0.1"}),
            http.get("/v2/dlq", params={"path": "/down"}),
        ):
            assert answer.status_code == 400
            assert "error" in answer.json()
    assert in_dlq(client) == {entry}


def test_retry_one_creates_a_new_message_that_is_delivered(
    client: QStash, server: RunningServer, receiver: Receiver, down: Switch
) -> None:
    original = client.message.publish(
        url=receiver.url("/down"), body="again", headers={"X-H": "h"}, retries=0
    )
    [listed] = eventually(
        lambda: client.dlq.list(filter={"message_id": original.message_id}).messages
    )
    down.up = True
    with api(server) as http:
        answer = http.post(f"/v2/dlq/retry/{listed.dlq_id}")
        assert answer.status_code == 201
        new_id = answer.json()["messageId"]
        assert http.post(f"/v2/dlq/retry/{listed.dlq_id}").status_code == 404  # gone now
        assert http.post("/v2/dlq/retry/1-0").status_code == 404
    assert new_id != original.message_id
    _, retried = receiver.wait_for(2, "/down")
    assert retried.message_id == new_id
    assert (retried.body, retried.headers["X-H"]) == (b"again", "h")
    assert retried.headers["Upstash-Retried"] == "0"
    assert client.dlq.list().messages == []


def test_bulk_retry_by_filter_pages_and_delivers_every_entry(
    client: QStash, server: RunningServer, receiver: Receiver, down: Switch
) -> None:
    dead(client, receiver, 3, label="again")
    [kept] = dead(client, receiver, 1, label="stay")
    down.up = True
    answers = []
    with api(server) as http:
        params = {"label": "again", "count": "2"}
        while True:
            answer = http.post("/v2/dlq/retry", params=params)
            assert answer.status_code == 201
            answers.append(answer.json())
            if "cursor" not in answers[-1]:
                break
            params["cursor"] = answers[-1]["cursor"]
    assert [len(a["responses"]) for a in answers] == [2, 1]
    new_ids = {r["messageId"] for a in answers for r in a["responses"]}
    delivered = receiver.wait_for(4 + 3, "/down")[4:]  # 4 first attempts, then the 3 retries
    assert {r.message_id for r in delivered} == new_ids
    assert in_dlq(client) == {kept}


def test_bulk_retry_by_ids_with_an_override_header(
    client: QStash, server: RunningServer, receiver: Receiver, down: Switch
) -> None:
    original = client.message.publish(
        url=receiver.url("/down"), body="x", retries=1, retry_delay="100"
    )
    [first] = eventually(
        lambda: client.dlq.list(filter={"message_id": original.message_id}).messages
    )
    assert first.max_retries == 1
    with api(server) as http:
        answer = http.post(
            "/v2/dlq/retry", params={"dlqIds": first.dlq_id}, headers={"Upstash-Retries": "0"}
        ).json()
    [item] = answer["responses"]
    assert "cursor" not in answer
    assert client.message.get(item["messageId"]).max_retries == 0
    [second] = eventually(
        lambda: client.dlq.list(filter={"message_id": item["messageId"]}).messages
    )
    assert second.max_retries == 0
    assert second.dlq_id != first.dlq_id
    time.sleep(0.3)
    assert len(receiver.to("/down")) == 3  # two attempts before, exactly one after the retry


def test_retry_sends_the_original_values_and_is_not_swallowed_by_deduplication(
    client: QStash, server: RunningServer, receiver: Receiver, down: Switch
) -> None:
    original = client.message.publish(
        url=receiver.url("/down"),
        body="secret body",
        headers={"Authorization": "Bearer abc"},
        redact={"body": True, "header": True},
        deduplication_id="once",
        retries=0,
    )
    [entry] = eventually(
        lambda: client.dlq.list(filter={"message_id": original.message_id}).messages
    )
    assert entry.body is not None and entry.body.startswith("REDACTED:")
    assert entry.headers is not None and entry.headers["Authorization"][0].startswith("REDACTED:")
    down.up = True
    with api(server) as http:
        answer = http.post(f"/v2/dlq/retry/{entry.dlq_id}").json()
    assert "deduplicated" not in answer
    _, retried = receiver.wait_for(2, "/down")
    assert retried.message_id == answer["messageId"]
    assert (retried.body, retried.headers["Authorization"]) == (b"secret body", "Bearer abc")


def test_a_binary_answer_is_kept_as_base64(client: QStash, receiver: Receiver) -> None:
    receiver.on("/binary", lambda r: Reply(500, b"\xff\xfe\x00"))
    result = client.message.publish(url=receiver.url("/binary"), body="x", retries=0)
    [entry] = eventually(lambda: client.dlq.list(filter={"message_id": result.message_id}).messages)
    assert entry.response_status == 500
    assert entry.response_body is None
    assert entry.response_body_base64 == "//4A"
