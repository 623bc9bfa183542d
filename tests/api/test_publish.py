"""Publishing through the official Python SDK delivers signed messages to a real receiver."""

from __future__ import annotations

import time

import pytest
from qstash import AsyncQStash, QStash
from qstash import Receiver as SignatureReceiver

from tests.support.receiver import Receiver
from tests.support.server import DEV_TOKEN, RunningServer


def test_publish_json_is_delivered_signed_and_verifiable(
    client: QStash, receiver: Receiver, verifier: SignatureReceiver
) -> None:
    url = receiver.url("/hook?x=1&y=two")
    result = client.message.publish_json(
        url=url, body={"hello": "world"}, headers={"X-Trace": "t1"}
    )

    [got] = receiver.wait_for(1, "/hook")
    assert got.path == "/hook?x=1&y=two"
    assert got.body == b'{"hello": "world"}'
    assert got.headers["Content-Type"] == "application/json"
    assert got.headers["X-Trace"] == "t1"
    assert got.headers["Upstash-Message-Id"] == result.message_id
    assert got.headers["Upstash-Retried"] == "0"
    assert got.headers["User-Agent"] == "Upstash-QStash"
    verifier.verify(signature=got.headers["Upstash-Signature"], body=got.body.decode(), url=url)


def test_publish_raw_body_with_method_and_empty_body(client: QStash, receiver: Receiver) -> None:
    client.message.publish(url=receiver.url("/put"), body="plain text", method="PUT")
    client.message.publish(url=receiver.url("/empty"))
    [put] = receiver.wait_for(1, "/put")
    [empty] = receiver.wait_for(1, "/empty")
    assert (put.method, put.body) == ("PUT", b"plain text")
    assert (empty.method, empty.body) == ("POST", b"")


async def test_async_client_publishes(server: RunningServer, receiver: Receiver) -> None:
    client = AsyncQStash(DEV_TOKEN, base_url=server.base_url)
    result = await client.message.publish_json(url=receiver.url("/async"), body=[1, 2])
    [got] = receiver.wait_for(1, "/async")
    assert got.headers["Upstash-Message-Id"] == result.message_id


def test_delay_is_never_delivered_early(client: QStash, receiver: Receiver) -> None:
    sent = time.time()
    result = client.message.publish(url=receiver.url("/later"), body="x", delay="2s")
    message = client.message.get(result.message_id)
    assert message.not_before >= int(sent * 1000) + 2000 - 5
    [got] = receiver.wait_for(1, "/later", timeout=6)
    assert got.at * 1000 >= message.not_before


def test_not_before_overrides_delay(client: QStash, receiver: Receiver) -> None:
    not_before = int(time.time()) + 2
    result = client.message.publish(
        url=receiver.url("/nb"), body="x", not_before=not_before, delay="1h"
    )
    assert client.message.get(result.message_id).not_before == not_before * 1000
    [got] = receiver.wait_for(1, "/nb", timeout=6)
    assert got.at >= not_before


def test_batch_returns_one_result_per_item_in_order(client: QStash, receiver: Receiver) -> None:
    results = client.message.batch_json(
        [
            {"url": receiver.url("/b1"), "body": {"n": 1}},
            {"url": receiver.url("/b2"), "body": {"n": 2}, "method": "PATCH"},
        ]
    )
    assert len(results) == 2
    first = receiver.wait_for(1, "/b1")[0]
    second = receiver.wait_for(1, "/b2")[0]
    assert first.headers["Upstash-Message-Id"] == results[0].message_id
    assert (second.method, second.body) == ("PATCH", b'{"n": 2}')


def test_deduplication_id_returns_the_original_message(client: QStash, receiver: Receiver) -> None:
    first = client.message.publish(url=receiver.url("/dedup"), body="a", deduplication_id="k1")
    again = client.message.publish(url=receiver.url("/dedup"), body="b", deduplication_id="k1")
    assert again.deduplicated and again.message_id == first.message_id
    receiver.wait_for(1, "/dedup")
    time.sleep(0.3)
    assert len(receiver.to("/dedup")) == 1


def test_content_based_deduplication(client: QStash, receiver: Receiver) -> None:
    a = client.message.publish(
        url=receiver.url("/cb"), body="same", content_based_deduplication=True
    )
    b = client.message.publish(
        url=receiver.url("/cb"), body="same", content_based_deduplication=True
    )
    c = client.message.publish(
        url=receiver.url("/cb"), body="other", content_based_deduplication=True
    )
    assert b.deduplicated and b.message_id == a.message_id
    assert not c.deduplicated


@pytest.mark.parametrize("retries", [0, 2])
def test_failing_destination_is_retried_then_dead_lettered(
    client: QStash, receiver: Receiver, retries: int
) -> None:
    from tests.support.receiver import Reply

    receiver.on("/down", lambda r: Reply(404, b"404 Not Found"))
    result = client.message.publish(
        url=receiver.url("/down"), body="x", retries=retries, retry_delay="100"
    )
    attempts = receiver.wait_for(retries + 1, "/down")
    assert [a.headers["Upstash-Retried"] for a in attempts] == [str(i) for i in range(retries + 1)]
    for _ in range(100):
        dlq = client.dlq.list(filter={"message_id": result.message_id}).messages
        if dlq:
            break
        time.sleep(0.05)
    [entry] = dlq
    assert entry.response_status == 404
    assert entry.response_body == "404 Not Found"
    assert entry.max_retries == retries
