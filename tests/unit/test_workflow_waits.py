"""The rules of workflow waits (`homing.workflow.waits`): what a wait request says, and the
wait-result step the SDK parses (`LazyWaitForEventStep`, `LazyWaitForWebhookStep`)."""

from __future__ import annotations

import base64
import json

import pytest

from homing.errors import InvalidRequest
from homing.models import Waiter
from homing.workflow import waits

STEP = {"stepId": 3, "stepType": "Wait", "stepName": "approval", "concurrent": 1}


def waiter(step: dict[str, object] | None = None) -> Waiter:
    return Waiter(
        id="w1",
        account_id="acct",
        run_id="wfr_1",
        event_id="order-1",
        step_key="s:3",
        url="https://app/wf",
        deadline_ms=1_700_000_012_345,
        headers={"Upstash-Workflow-RunId": ["wfr_1"]},
        timeout_url="https://app/wf",
        timeout_headers={"Upstash-Workflow-Runid": ["wfr_1"]},
        step=json.dumps(step or STEP).encode(),
        timeout="10d",
        created_ms=1,
    )


@pytest.mark.parametrize(
    ("text", "ms"),
    [("10d", 864_000_000), ("90s", 90_000), ("2m", 120_000), ("1h", 3_600_000), ("1500ms", 1_500),
     (30, 30_000), ("7", 7_000), ("1w", 604_800_000)],
)  # fmt: skip
def test_a_timeout_is_a_duration_or_seconds(text: object, ms: int) -> None:
    assert waits.parse_duration(text) == ms


@pytest.mark.parametrize("text", ["soon", "", "-1s", "0s", "2y", True, None, [1], "400d"])
def test_a_timeout_that_is_no_duration_or_out_of_range_is_refused(text: object) -> None:
    with pytest.raises(InvalidRequest):
        waits.parse_duration(text)


def test_a_notified_result_carries_the_event_data_in_base64() -> None:
    body = json.loads(waits.result_body(waiter(), data=b'{"ok":true}'))
    assert body == {
        **STEP,
        "waitEventId": "order-1",
        "timeout": "10d",
        "out": base64.b64encode(b'{"ok":true}').decode(),
        "waitTimeout": False,
    }


def test_a_timed_out_result_has_no_out_at_all() -> None:
    body = json.loads(waits.result_body(waiter(dict(STEP, out="stale")), data=None))
    assert "out" not in body  # `""` would make a WaitForWebhook step throw
    assert body["waitTimeout"] is True


def test_an_empty_event_is_still_an_out_string() -> None:
    assert json.loads(waits.result_body(waiter(), data=b""))["out"] == ""


def test_a_wait_request_names_its_run_step_and_timeout() -> None:
    body = {
        "url": "https://app/wf",
        "timeout": "5m",
        "timeoutUrl": "https://app/wf?t",
        "timeoutHeaders": {"Upstash-Workflow-Runid": ["wfr_9"], "X": "one"},
        "step": dict(STEP, targetStep=0),
    }
    request = waits.parse_wait(json.dumps(body).encode(), {})
    assert (request.run_id, request.timeout, request.timeout_ms) == ("wfr_9", "5m", 300_000)
    assert request.step_key == "s:3" and request.timeout_url == "https://app/wf?t"
    assert request.timeout_headers["X"] == ["one"]


@pytest.mark.parametrize(
    "body",
    [b"", b"[]", b"{", b'{"url":"u","step":{"stepId":1}}', b'{"url":"u","step":{}}',
     b'{"step":{"stepId":1},"timeoutHeaders":{"Upstash-Workflow-Runid":["r"]}}',
     b'{"url":"u","step":{"stepId":1},"timeoutHeaders":{"Upstash-Workflow-Runid":[1]}}'],
)  # fmt: skip
def test_a_wait_request_missing_its_parts_is_refused(body: bytes) -> None:
    with pytest.raises(InvalidRequest):
        waits.parse_wait(body, {})


def test_the_stored_headers_keep_the_publish_headers_but_never_the_token() -> None:
    kept = waits.kept_headers(
        [("Authorization", "Bearer t"), ("Upstash-Workflow-RunId", "wfr_1"), ("Host", "h"),
         ("Content-Type", "application/json"), ("Upstash-Forward-X", "1")]
    )  # fmt: skip
    assert kept == {
        "Upstash-Workflow-RunId": ["wfr_1"],
        "Content-Type": ["application/json"],
        "Upstash-Forward-X": ["1"],
    }
    assert waits.publish_headers(kept)[0] == ("Upstash-Workflow-RunId", "wfr_1")


def test_a_waiter_shows_its_deadline_in_seconds() -> None:
    assert waits.view(waiter())["deadline"] == 1_700_000_012


def test_two_segments_are_only_a_candidate_run_scoped_notify() -> None:
    assert waits.run_scoped("wfr_1/order-1") == ("wfr_1", "order-1")
    assert waits.run_scoped("a/b/c") == ("a", "b/c")
    assert waits.run_scoped("order-1") is None
    assert waits.run_scoped("/x") is None


def test_a_webhook_call_becomes_event_json_the_sdk_rebuilds_a_request_from() -> None:
    event = json.loads(
        waits.webhook_event(
            method="PUT",
            headers=[("X-A", "1"), ("X-A", "2")],
            body=b"hi",
            proto="https",
            host="q.example:8443",
            url="/v2/workflows/hooks/u/r/e?x=1",
        )
    )
    assert event == {
        "method": "PUT",
        "header": {"X-A": ["1", "2"]},
        "body": "aGk=",
        "proto": "https",
        "host": "q.example:8443",
        "url": "/v2/workflows/hooks/u/r/e?x=1",
    }
    assert waits.canonical_header("x-test-header") == "X-Test-Header"
