"""What one attempt decides (`outcome.decide`): the message's next state, its log entries and
the callbacks it creates; and what is recorded instead when the message was canceled while the
attempt was in flight (`AttemptOutcome.if_canceled`)."""

from __future__ import annotations

import base64
import itertools

import orjson

from homing.delivery import outcome
from homing.models import (
    AttemptOutcome,
    CallbackSpec,
    DeliverySpec,
    LogEvent,
    LogState,
    Message,
    MessageKind,
    MessageState,
    OutcomeKind,
    Response,
)

NOW = 1_700_000_000_000
OK = Response(200, {"Content-Type": ["text/plain"]}, b"fine")
BOOM = Response(500, {"X-Why": ["db"]}, b"boom")
REFUSED = Response(0, error="connection refused")


def message(
    *, attempts: int = 0, kind: MessageKind = MessageKind.MESSAGE, **spec: object
) -> Message:
    return Message(
        id="msg_1",
        account_id="acct",
        url="https://dest.example/hook",
        body=b"hello",
        spec=DeliverySpec(kind=kind, **spec),  # type: ignore[arg-type]
        state=MessageState.ACTIVE,
        created_ms=NOW - 5000,
        not_before_ms=NOW - 5000,
        due_ms=NOW - 10,
        attempts=attempts,
        caller_ip="10.0.0.1",
        queue_name="orders",
        labels=("blue",),
    )


def decide(m: Message, response: Response) -> AttemptOutcome:
    ids = itertools.count(1)
    return outcome.decide(
        m,
        lease_token=7,
        response=response,
        now_ms=NOW,
        new_id=lambda: f"new_{next(ids)}",
        new_dlq_id=lambda t: f"dlq_{t}",
    )


def test_a_2xx_is_delivered_and_logs_its_status() -> None:
    o = decide(message(), OK)
    assert (o.kind, o.effect.state) == (OutcomeKind.DELIVERED, MessageState.DELIVERED)
    assert (o.effect.final_ms, o.effect.due_ms, o.effect.dlq_id) == (NOW, None, None)
    assert o.effect.events == (LogEvent(LogState.DELIVERED, {"responseStatus": 200}),)
    assert o.effect.frees_slot


def test_a_late_cancel_does_not_undo_a_delivery() -> None:
    o = decide(message(), OK)
    assert o.if_canceled == o.effect


def test_a_failure_with_retries_left_is_due_again_after_the_backoff() -> None:
    o = decide(message(max_retries=3, retry_delay="2000"), BOOM)
    assert (o.kind, o.effect.state) == (OutcomeKind.RETRY, MessageState.READY)
    assert o.effect.due_ms == NOW + 2000 == o.retry_at_ms
    assert o.effect.final_ms is None and not o.effect.frees_slot  # a retry keeps its FIFO place
    error, retry = o.effect.events
    assert error == LogEvent(
        LogState.ERROR,
        {
            "error": "status 500",
            "responseStatus": 500,
            "responseHeader": {"X-Why": ["db"]},
            "responseBody": base64.b64encode(b"boom").decode(),
        },
    )
    assert retry == LogEvent(LogState.RETRY, {"nextDeliveryTime": NOW + 2000})


def test_a_transport_error_logs_its_text_without_a_response() -> None:
    o = decide(message(max_retries=1, retry_delay="0"), REFUSED)
    assert o.effect.events[0] == LogEvent(LogState.ERROR, {"error": "connection refused"})


def test_the_last_failure_moves_the_message_to_the_dlq() -> None:
    o = decide(message(attempts=3, max_retries=3), BOOM)
    assert (o.kind, o.effect.state) == (OutcomeKind.FAILED, MessageState.FAILED)
    assert (o.effect.dlq_id, o.effect.dlq_ms, o.effect.final_ms) == (f"dlq_{NOW}", NOW, NOW)
    assert [e.state for e in o.effect.events] == [LogState.ERROR, LogState.FAILED]
    assert o.effect.events[1].info == {"error": "status 500"}


def test_489_with_the_non_retryable_header_fails_at_once() -> None:
    stop = Response(489, {"Upstash-NonRetryable-Error": ["true"]}, b"")
    assert decide(message(max_retries=5), stop).kind is OutcomeKind.FAILED
    assert decide(message(max_retries=5), Response(489)).kind is OutcomeKind.RETRY


def test_a_cancel_during_a_failed_attempt_wins_with_no_retry_dlq_or_callbacks() -> None:
    failure_cb = CallbackSpec(url="https://cb.example/failed")
    for attempts in (0, 3):  # a retry and a final failure alike
        o = decide(message(attempts=attempts, max_retries=3, failure_callback=failure_cb), BOOM)
        canceled = o.if_canceled
        assert canceled.state is MessageState.CANCELED
        assert (canceled.due_ms, canceled.dlq_id, canceled.final_ms) == (None, None, NOW)
        assert canceled.new_messages == ()
        assert canceled.events == (o.effect.events[0], LogEvent(LogState.CANCELED))
        assert canceled.frees_slot


def test_a_callback_follows_every_attempt_of_a_source_message() -> None:
    cb = CallbackSpec(url="https://cb.example/done", headers={"X-A": ["1"]}, delay_s=2)
    for response in (OK, BOOM):
        o = decide(message(max_retries=3, callback=cb), response)
        (callback,) = o.new_messages
        assert callback.url == "https://cb.example/done"
        assert callback.spec.kind is MessageKind.CALLBACK
        assert callback.spec.headers == {"X-A": ["1"], "Content-Type": ["application/json"]}
        assert callback.not_before_ms == NOW + 2000
        assert callback.queue_slot == "orders"  # holds the parent's FIFO slot meanwhile
        body = orjson.loads(callback.body)
        assert body["sourceMessageId"] == "msg_1"
        assert body["status"] == response.status
        assert base64.b64decode(body["sourceBody"]) == b"hello"


def test_a_failure_callback_names_the_dlq_entry() -> None:
    cb = CallbackSpec(url="https://cb.example/failed")
    o = decide(message(attempts=1, max_retries=1, failure_callback=cb), BOOM)
    (failure,) = o.new_messages
    assert failure.spec.kind is MessageKind.FAILURE_CALLBACK
    assert orjson.loads(failure.body)["dlqId"] == o.dlq_id
    assert decide(message(max_retries=1, failure_callback=cb), BOOM).new_messages == ()


def test_callbacks_get_no_callbacks_of_their_own() -> None:
    cb = CallbackSpec(url="https://cb.example/again")
    o = decide(message(kind=MessageKind.CALLBACK, callback=cb, failure_callback=cb), BOOM)
    assert o.new_messages == ()
