"""Getting and cancelling messages through the official SDK and raw HTTP.

Spec 5.4-5.6, 9.10, 9.13, 11.1.
"""

from __future__ import annotations

import base64
import time
from typing import Any

import pytest
from qstash import QStash
from qstash.errors import QStashError

from homing.delivery.engine import CLAIM_AHEAD_MS
from tests.support.http import api
from tests.support.receiver import Receiver, Reply
from tests.support.server import DEV_TOKEN, RunningServer
from tests.support.waiting import eventually


def states(client: QStash, message_id: str) -> list[str]:
    """The message's log states, oldest first."""
    logs = client.log.list(filter={"message_id": message_id}).logs
    return [entry.state.value for entry in reversed(logs)]


def later(client: QStash, receiver: Receiver, path: str = "/later", **kw: Any) -> str:
    """A message that waits an hour: still cancellable while the test runs."""
    return client.message.publish(url=receiver.url(path), body="x", delay="1h", **kw).message_id


# -- get ------------------------------------------------------------------------------------


def test_get_message_shows_everything_the_publisher_configured(
    client: QStash, receiver: Receiver
) -> None:
    url = receiver.url("/configured?x=1")
    sent_ms = int(time.time() * 1000)
    result = client.message.publish(
        url=url,
        body='{"a": 1}',
        content_type="application/json",
        method="PUT",
        headers={"test-header": "v1", "X-OTHER": "o"},
        callback=receiver.url("/cb"),
        failure_callback=receiver.url("/fcb"),
        callback_headers={"cb-token": "c1"},
        failure_callback_headers={"fcb-token": "f1"},
        retries=2,
        retry_delay="1000 * (1 + retried)",
        delay="1h",
        label="billing",
    )
    m = client.message.get(result.message_id)

    assert m.message_id == result.message_id
    assert m.url == url
    assert m.method == "PUT"
    assert m.headers == {
        "Content-Type": ["application/json"],
        "Test-Header": ["v1"],
        "X-Other": ["o"],
    }
    assert (m.body, m.body_base64) == ('{"a": 1}', None)
    assert m.max_retries == 2
    assert m.retry_delay_expression == "1000 * (1 + retried)"
    assert sent_ms - 5 <= m.created_at <= int(time.time() * 1000) + 5
    assert m.not_before == m.created_at + 3_600_000
    assert (m.callback, m.failure_callback) == (receiver.url("/cb"), receiver.url("/fcb"))
    assert m.callback_headers == {"Cb-Token": ["c1"]}
    assert m.failure_callback_headers == {"Fcb-Token": ["f1"]}
    assert m.caller_ip == "127.0.0.1"
    assert m.label == "billing"
    assert m.flow_control is None
    assert (m.url_group, m.endpoint, m.queue, m.schedule_id) == (None, None, None, None)


def test_message_json_omits_unset_fields_and_lists_all_labels(
    server: RunningServer, receiver: Receiver
) -> None:
    with api(server) as http:
        published = http.post(
            f"/v2/publish/{receiver.url('/labels')}",
            content=b"hi",
            headers={"Upstash-Label": "a, b", "Upstash-Delay": "1h"},
        )
        assert published.status_code == 201
        doc = http.get(f"/v2/messages/{published.json()['messageId']}").json()
    assert doc["label"] == "a"
    assert doc["labels"] == ["a", "b"]
    assert doc["callerIP"] == doc["callerIp"] == "127.0.0.1"
    assert doc["maxRetries"] == 3  # the default
    assert doc["method"] == "POST"
    assert None not in doc.values()
    for unset in (
        "header", "bodyBase64", "retryDelayExpression", "callback", "failureCallback",
        "callbackHeader", "flowControlKey", "parallelism", "rate", "period", "topicName",
        "queueName", "scheduleId",
    ):  # fmt: skip
        assert unset not in doc


def test_binary_body_is_returned_as_base64_and_empty_body_is_omitted(
    client: QStash, receiver: Receiver
) -> None:
    binary = b"\xff\xfe\x00\x01binary"
    with_binary = client.message.publish(url=receiver.url("/bin"), body=binary, delay="1h")
    empty = client.message.publish(url=receiver.url("/empty"), delay="1h")

    m = client.message.get(with_binary.message_id)
    assert m.body is None
    assert base64.b64decode(m.body_base64 or "") == binary
    e = client.message.get(empty.message_id)
    assert (e.body, e.body_base64) == (None, None)


@pytest.mark.parametrize(
    ("flow", "expected"),
    [
        ({"key": "fc-a", "rate": 23, "period": "1h30m3s"}, (None, 23, 5403)),
        ({"key": "fc-b", "parallelism": 5}, (5, None, 1)),
        ({"key": "fc-c", "rate": 1}, (None, 1, 1)),
        ({"key": "fc-d", "rate": 2, "period": "1d"}, (None, 2, 86400)),
        ({"key": "fc-e", "parallelism": 3, "rate": 10, "period": 60}, (3, 10, 60)),
    ],
)
def test_flow_control_settings_are_shown_on_the_message(
    client: QStash,
    server: RunningServer,
    receiver: Receiver,
    flow: Any,
    expected: tuple[int | None, int | None, int],
) -> None:
    message_id = later(client, receiver, flow_control=flow)
    m = client.message.get(message_id)
    assert m.flow_control is not None
    assert m.flow_control.key == flow["key"]
    assert (m.flow_control.parallelism, m.flow_control.rate, m.flow_control.period) == expected
    with api(server) as http:
        doc = http.get(f"/v2/messages/{message_id}").json()
    parallelism, rate, _ = expected
    assert ("parallelism" in doc) == (parallelism is not None)
    assert ("rate" in doc) == (rate is not None)


def test_redacted_fields_are_hidden_in_the_api_but_delivered_intact(
    client: QStash, receiver: Receiver
) -> None:
    import hashlib

    def hidden(value: bytes) -> str:
        return "REDACTED:" + hashlib.sha256(value).hexdigest()

    result = client.message.publish(
        url=receiver.url("/secret"),
        body="card 4242",
        headers={"Authorization": "Bearer abc", "X-Plain": "p"},
        redact={"body": True, "header": ["Authorization"]},
    )
    m = client.message.get(result.message_id)
    assert m.body == hidden(b"card 4242")
    assert m.headers == {"Authorization": [hidden(b"Bearer abc")], "X-Plain": ["p"]}
    [got] = receiver.wait_for(1, "/secret")
    assert got.body == b"card 4242"
    assert got.headers["Authorization"] == "Bearer abc"
    [created] = [e for e in client.log.list(filter={"message_id": result.message_id}).logs
                 if e.state.value == "CREATED"]  # fmt: skip
    assert base64.b64decode(created.body_base64 or "") == hidden(b"card 4242").encode()
    assert created.headers == {"Authorization": [hidden(b"Bearer abc")], "X-Plain": ["p"]}


def test_get_unknown_message_is_404(client: QStash) -> None:
    with pytest.raises(QStashError, match="404"):
        client.message.get("msg_doesNotExist")


# -- cancel one -----------------------------------------------------------------------------


def test_cancelled_delayed_message_is_never_delivered(
    client: QStash, server: RunningServer, receiver: Receiver
) -> None:
    result = client.message.publish(url=receiver.url("/soon"), body="x", delay=1)
    with api(server) as http:
        answer = http.delete(f"/v2/messages/{result.message_id}")
    assert answer.status_code == 200
    assert answer.json() == {"cancelled": 1}
    assert states(client, result.message_id) == ["CREATED", "CANCEL_REQUESTED", "CANCELED"]
    time.sleep(1.3)  # past the moment it would have been due
    assert receiver.to("/soon") == []


def test_cancelled_message_waiting_for_a_retry_gets_no_more_attempts(
    client: QStash, receiver: Receiver
) -> None:
    receiver.on("/flaky", lambda r: Reply(500, b"try later"))
    result = client.message.publish(
        url=receiver.url("/flaky"), body="x", retries=3, retry_delay="800"
    )
    receiver.wait_for(1, "/flaky")
    eventually(lambda: "RETRY" in states(client, result.message_id))
    client.message.cancel(result.message_id)
    assert states(client, result.message_id)[-2:] == ["CANCEL_REQUESTED", "CANCELED"]
    time.sleep(1.1)
    assert len(receiver.to("/flaky")) == 1
    assert client.dlq.list(filter={"message_id": result.message_id}).messages == []


def test_cancel_during_an_attempt_stops_retries_after_it(
    client: QStash, server: RunningServer, receiver: Receiver
) -> None:
    receiver.on("/slow", lambda r: Reply(500, b"no", delay_s=0.6))
    result = client.message.publish(
        url=receiver.url("/slow"), body="x", retries=3, retry_delay="100"
    )
    receiver.wait_for(1, "/slow")  # the attempt is running now
    client.message.cancel(result.message_id)
    with api(server) as http:  # a cancel already requested is not accepted twice
        assert http.delete(f"/v2/messages/{result.message_id}").status_code == 404
    eventually(lambda: states(client, result.message_id)[-1] == "CANCELED")
    assert states(client, result.message_id) == [
        "CREATED", "ACTIVE", "CANCEL_REQUESTED", "ERROR", "CANCELED",
    ]  # fmt: skip
    time.sleep(0.4)
    assert len(receiver.to("/slow")) == 1


def test_cancel_too_late_to_stop_a_successful_attempt(client: QStash, receiver: Receiver) -> None:
    receiver.on("/slow-ok", lambda r: Reply(200, b"ok", delay_s=0.4))
    result = client.message.publish(url=receiver.url("/slow-ok"), body="x")
    receiver.wait_for(1, "/slow-ok")
    client.message.cancel(result.message_id)
    eventually(lambda: states(client, result.message_id)[-1] == "DELIVERED")
    timeline = ["CREATED", "ACTIVE", "CANCEL_REQUESTED", "DELIVERED"]
    assert states(client, result.message_id) == timeline


def test_cancel_of_unknown_or_finished_message_is_404(client: QStash, receiver: Receiver) -> None:
    with pytest.raises(QStashError, match="404"):
        client.message.cancel("msg_doesNotExist")
    done = client.message.publish(url=receiver.url("/done"), body="x")
    receiver.wait_for(1, "/done")
    eventually(lambda: "DELIVERED" in states(client, done.message_id))
    with pytest.raises(QStashError, match="404"):
        client.message.cancel(done.message_id)
    cancelled = later(client, receiver)
    client.message.cancel(cancelled)
    with pytest.raises(QStashError, match="404"):
        client.message.cancel(cancelled)


# -- cancel many ----------------------------------------------------------------------------


def test_cancel_many_cancels_exactly_the_named_messages(client: QStash, receiver: Receiver) -> None:
    a, b, c = (later(client, receiver) for _ in range(3))
    assert client.message.cancel_many([a, b, "msg_unknown"]) == 2
    assert states(client, a)[-1] == states(client, b)[-1] == "CANCELED"
    assert states(client, c) == ["CREATED"]
    assert client.message.cancel_many([a]) == 0  # already final


def test_cancel_all_cancels_every_pending_message(client: QStash, receiver: Receiver) -> None:
    pending = [later(client, receiver) for _ in range(3)]
    done = client.message.publish(url=receiver.url("/done"), body="x")
    receiver.wait_for(1, "/done")
    eventually(lambda: "DELIVERED" in states(client, done.message_id))
    assert client.message.cancel_all() == 3
    assert all(states(client, m)[-1] == "CANCELED" for m in pending)
    assert states(client, done.message_id)[-1] == "DELIVERED"
    assert client.message.cancel_all() == 0


def test_empty_message_ids_array_cancels_nothing(
    client: QStash, server: RunningServer, receiver: Receiver
) -> None:
    kept = later(client, receiver)
    assert client.message.cancel_many([]) == 0
    with api(server) as http:
        answer = http.request("DELETE", "/v2/messages", json={"messageIds": []})
    assert answer.json() == {"cancelled": 0}
    assert states(client, kept) == ["CREATED"]


def test_an_empty_id_or_filter_in_the_query_cancels_nothing(
    client: QStash, server: RunningServer, receiver: Receiver
) -> None:
    kept = [later(client, receiver, label="red") for _ in range(2)]
    with api(server) as http:
        for query in ("messageIds=", "label=", "messageIds=&messageIds=", "url="):
            assert http.delete(f"/v2/messages?{query}").json() == {"cancelled": 0}, query
        assert http.request("DELETE", "/v2/messages", json={"queueName": ""}).json() == {
            "cancelled": 0
        }
    assert [states(client, m) for m in kept] == [["CREATED"], ["CREATED"]]


def test_query_style_cancel_by_ids(
    client: QStash, server: RunningServer, receiver: Receiver
) -> None:
    a, b, c = (later(client, receiver) for _ in range(3))
    with api(server) as http:
        # `messageIds` wins over any filter given with it
        answer = http.delete(
            "/v2/messages", params=[("messageIds", a), ("messageIds", b), ("label", "nope")]
        )
    assert answer.status_code == 200
    assert answer.json() == {"cancelled": 2}
    assert [states(client, m)[-1] for m in (a, b, c)] == ["CANCELED", "CANCELED", "CREATED"]


def test_query_style_cancel_by_filters_and_count(
    client: QStash, server: RunningServer, receiver: Receiver
) -> None:
    red = [later(client, receiver, "/red", label="red") for _ in range(3)]
    blue = later(client, receiver, "/blue", label="blue")
    other_url = later(client, receiver, "/elsewhere", label="red")
    with api(server) as http:
        first = http.delete(
            "/v2/messages", params={"label": "red", "url": receiver.url("/red"), "count": "2"}
        )
        assert first.json() == {"cancelled": 2}
        rest = http.delete("/v2/messages", params={"label": "red", "path": "/red"})
        assert rest.json() == {"cancelled": 1}
        none_left = http.delete("/v2/messages", params={"label": "red", "path": "/red"})
        assert none_left.json() == {"cancelled": 0}
    assert all(states(client, m)[-1] == "CANCELED" for m in red)
    assert states(client, blue) == ["CREATED"]
    assert states(client, other_url) == ["CREATED"]


def test_query_style_cancel_refuses_unknown_parameters(
    client: QStash, server: RunningServer, receiver: Receiver
) -> None:
    kept = later(client, receiver, label="red")
    with api(server) as http:
        answer = http.delete("/v2/messages", params={"labeel": "red"})
    assert answer.status_code == 400
    assert "error" in answer.json()
    assert states(client, kept) == ["CREATED"]


def test_another_account_can_neither_see_nor_cancel_a_message(
    client: QStash, server: RunningServer, receiver: Receiver
) -> None:
    from homing.config import DEV_USERS

    other = QStash(DEV_USERS[1][0], base_url=server.base_url)
    mine = later(client, receiver)
    with pytest.raises(QStashError, match="404"):
        other.message.get(mine)
    with pytest.raises(QStashError, match="404"):
        other.message.cancel(mine)
    assert other.message.cancel_many([mine]) == 0
    assert other.message.cancel_all() == 0
    assert other.log.list().logs == []
    assert states(client, mine) == ["CREATED"]


# -- claimed ahead of its due time (the engine claims up to CLAIM_AHEAD_MS early) -----------


def test_a_message_claimed_ahead_is_sent_when_due_and_not_if_canceled_first(
    manual_server: RunningServer, receiver: Receiver
) -> None:
    client = QStash(DEV_TOKEN, base_url=manual_server.base_url)
    kept = client.message.publish(url=receiver.url("/kept"), body="x", delay="1s").message_id
    dropped = client.message.publish(url=receiver.url("/dropped"), body="x", delay="1s")

    # Inside the window: both are claimed (ACTIVE), neither is sent yet.
    manual_server.advance(1000 - CLAIM_AHEAD_MS // 2)
    eventually(lambda: states(client, kept)[-1] == "ACTIVE")
    eventually(lambda: states(client, dropped.message_id)[-1] == "ACTIVE")
    client.message.cancel(dropped.message_id)
    time.sleep(0.2)
    assert receiver.to("/kept") == [] and receiver.to("/dropped") == []

    # Due: the one still wanted goes out; the canceled one never does.
    manual_server.advance(CLAIM_AHEAD_MS)
    receiver.wait_for(1, "/kept")
    eventually(lambda: states(client, dropped.message_id)[-1] == "CANCELED")
    assert states(client, dropped.message_id) == [
        "CREATED", "ACTIVE", "CANCEL_REQUESTED", "CANCELED",
    ]  # fmt: skip
    time.sleep(0.2)
    assert receiver.to("/dropped") == []
