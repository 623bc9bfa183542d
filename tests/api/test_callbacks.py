"""Callbacks, failure callbacks, and how a destination's answer steers retries.

Spec 9.2, 9.3, 9.7, 9.8.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable

import pytest
from qstash import QStash
from qstash import Receiver as SignatureReceiver

from tests.support.receiver import Received, Receiver, Reply
from tests.support.waiting import eventually


def b64(text: str) -> bytes:
    return base64.b64decode(text, validate=True)  # standard alphabet, padded


def failing_then_ok(failures: int, fail: Reply, ok: Reply) -> Callable[[Received], Reply]:
    seen = {"n": 0}

    def rule(req: Received) -> Reply:
        seen["n"] += 1
        return fail if seen["n"] <= failures else ok

    return rule


def states(client: QStash, message_id: str) -> list[str]:
    logs = client.log.list(filter={"message_id": message_id}).logs
    return [entry.state.value for entry in reversed(logs)]


def test_a_callback_follows_every_attempt_with_the_attempts_outcome(
    client: QStash, receiver: Receiver, verifier: SignatureReceiver
) -> None:
    receiver.on(
        "/work",
        failing_then_ok(2, Reply(500, b"boom"), Reply(200, b"done", {"X-Reply": "r"})),
    )
    url = receiver.url("/work?job=1")
    cb_url = receiver.url("/cb?from=work")
    result = client.message.publish_json(
        url=url,
        body={"a": 1},
        method="PUT",
        headers={"X-Src": "s"},
        callback=cb_url,
        retries=2,
        retry_delay="100",
    )
    callbacks = receiver.wait_for(3, "/cb", timeout=8)
    docs = sorted((json.loads(c.body) for c in callbacks), key=lambda d: d["retried"])

    assert [d["retried"] for d in docs] == [0, 1, 2]
    assert [d["status"] for d in docs] == [500, 500, 200]
    assert [b64(d["body"]) for d in docs] == [b"boom", b"boom", b"done"]
    assert docs[2]["header"]["X-Reply"] == ["r"]
    for d in docs:
        assert d["maxRetries"] == 2
        assert d["sourceMessageId"] == result.message_id
        assert d["url"] == url
        assert d["method"] == "PUT"
        assert d["sourceHeader"] == {"Content-Type": ["application/json"], "X-Src": ["s"]}
        assert b64(d["sourceBody"]) == b'{"a": 1}'
        assert d["callerIP"] == "127.0.0.1"
        assert isinstance(d["notBefore"], int) and isinstance(d["createdAt"], int)
        assert "dlqId" not in d
    for c in callbacks:
        assert c.method == "POST"
        assert c.path == "/cb?from=work"
        assert c.headers["Content-Type"] == "application/json"
        assert c.headers["Upstash-Message-Id"] not in ("", result.message_id)
        assert c.headers["Upstash-Retried"] == "0"
        verifier.verify(signature=c.headers["Upstash-Signature"], body=c.body.decode(), url=cb_url)
    assert len({c.message_id for c in callbacks}) == 3  # each callback is its own message
    time.sleep(0.2)
    assert len(receiver.to("/cb")) == 3  # callbacks get no callbacks of their own


def test_failure_callback_comes_once_after_the_last_attempt_and_names_the_dlq_entry(
    client: QStash, receiver: Receiver, verifier: SignatureReceiver
) -> None:
    receiver.on("/down", lambda r: Reply(503, b"down"))
    fcb_url = receiver.url("/fcb")
    ok = client.message.publish(url=receiver.url("/fine"), body="x", failure_callback=fcb_url)
    result = client.message.publish(
        url=receiver.url("/down"),
        body="payload",
        retries=1,
        retry_delay="100",
        callback=receiver.url("/cb"),
        failure_callback=fcb_url,
    )
    [failure] = receiver.wait_for(1, "/fcb")
    doc = json.loads(failure.body)
    [entry] = eventually(lambda: client.dlq.list(filter={"message_id": result.message_id}).messages)

    assert doc["dlqId"] == entry.dlq_id
    assert doc["sourceMessageId"] == result.message_id
    assert doc["retried"] == doc["maxRetries"] == 1
    assert (doc["status"], b64(doc["body"])) == (503, b"down")
    assert b64(doc["sourceBody"]) == b"payload"
    verifier.verify(
        signature=failure.headers["Upstash-Signature"], body=failure.body.decode(), url=fcb_url
    )
    receiver.wait_for(2, "/cb")  # the plain callback still follows both attempts
    receiver.wait_for(1, "/fine")
    time.sleep(0.3)
    assert len(receiver.to("/fcb")) == 1  # not for the delivered message, not twice
    assert states(client, ok.message_id)[-1] == "DELIVERED"


def test_callback_headers_are_forwarded_to_callbacks_only(
    client: QStash, receiver: Receiver
) -> None:
    receiver.on("/down", lambda r: Reply(500, b"x"))
    client.message.publish(
        url=receiver.url("/down"),
        body="x",
        retries=0,
        headers={"X-Dest": "d"},
        callback=receiver.url("/cb"),
        callback_headers={
            "X-Cb-Token": "t1",  # Python style: Upstash-Callback-X-Cb-Token
            "Upstash-Callback-Forward-X-Raw": "r1",  # documented style
            "Method": "PUT",  # Upstash-Callback-Method: configuration, not a header
        },
        failure_callback=receiver.url("/fcb"),
        failure_callback_headers={
            "X-Fcb-Token": "f1",
            "Upstash-Failure-Callback-Forward-X-Fraw": "f2",
        },
    )
    [dest] = receiver.wait_for(1, "/down")
    [cb] = receiver.wait_for(1, "/cb")
    [fcb] = receiver.wait_for(1, "/fcb")

    assert cb.method == "PUT"
    assert (cb.headers.get("X-Cb-Token"), cb.headers.get("X-Raw")) == ("t1", "r1")
    assert "Method" not in cb.headers
    assert (fcb.headers.get("X-Fcb-Token"), fcb.headers.get("X-Fraw")) == ("f1", "f2")
    assert fcb.method == "POST"
    assert dest.headers.get("X-Dest") == "d"
    for leaked in ("X-Cb-Token", "X-Raw", "X-Fcb-Token", "X-Fraw"):
        assert leaked not in dest.headers
    assert "X-Dest" not in cb.headers and "X-Fcb-Token" not in cb.headers
    assert "X-Cb-Token" not in fcb.headers


def test_non_retryable_error_goes_straight_to_the_dlq(client: QStash, receiver: Receiver) -> None:
    receiver.on("/stop", lambda r: Reply(489, b"bad job", {"Upstash-NonRetryable-Error": "true"}))
    result = client.message.publish(
        url=receiver.url("/stop"), body="x", retries=3, retry_delay="100"
    )
    [entry] = eventually(lambda: client.dlq.list(filter={"message_id": result.message_id}).messages)
    assert (entry.response_status, entry.response_body) == (489, "bad job")
    assert states(client, result.message_id) == ["CREATED", "ACTIVE", "ERROR", "FAILED"]
    time.sleep(0.3)
    assert len(receiver.to("/stop")) == 1


def test_489_without_the_non_retryable_header_is_retried(
    client: QStash, receiver: Receiver
) -> None:
    receiver.on("/plain489", lambda r: Reply(489, b"x"))
    client.message.publish(url=receiver.url("/plain489"), body="x", retries=1, retry_delay="100")
    receiver.wait_for(2, "/plain489")


@pytest.mark.parametrize("retry_delay", [None, "20000"], ids=["default-backoff", "expression"])
def test_retry_after_hint_decides_when_the_retry_comes(
    client: QStash, receiver: Receiver, retry_delay: str | None
) -> None:
    receiver.on("/busy", failing_then_ok(1, Reply(503, b"busy", {"Retry-After": "1"}), Reply()))
    client.message.publish(url=receiver.url("/busy"), body="x", retries=1, retry_delay=retry_delay)
    first, second = receiver.wait_for(2, "/busy", timeout=6)
    # one second, not the 12 s default backoff or the 20 s of the expression
    assert 0.95 <= second.at - first.at < 5
    assert second.headers["Upstash-Retried"] == "1"


def test_callback_after_no_answer_at_all_has_status_0(client: QStash, receiver: Receiver) -> None:
    from tests.support.server import free_port

    closed = f"http://127.0.0.1:{free_port()}/gone"  # nothing listens there
    result = client.message.publish(url=closed, body="x", retries=0, callback=receiver.url("/cb"))
    [cb] = receiver.wait_for(1, "/cb")
    doc = json.loads(cb.body)
    assert (doc["status"], doc["body"], doc["retried"]) == (0, "", 0)
    assert doc["sourceMessageId"] == result.message_id
    [entry] = eventually(lambda: client.dlq.list(filter={"message_id": result.message_id}).messages)
    assert entry.response_status == 0


def test_callbacks_of_url_group_messages_name_the_group_and_endpoint(
    client: QStash, receiver: Receiver
) -> None:
    client.url_group.upsert_endpoints(
        url_group="team", endpoints=[{"url": receiver.url("/ep1"), "name": "first"}]
    )
    [result] = client.message.publish(url_group="team", body="x", callback=receiver.url("/cb"))  # type: ignore[misc]
    [cb] = receiver.wait_for(1, "/cb")
    doc = json.loads(cb.body)
    assert doc["sourceMessageId"] == result.message_id
    assert (doc["topicName"], doc["endpointName"], doc["url"]) == (
        "team", "first", receiver.url("/ep1"),
    )  # fmt: skip
