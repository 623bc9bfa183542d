"""Upstash Workflow runs over HTTP, driven the way the SDKs drive them (the request shapes of
`@upstash/workflow` and `upstash-workflow`), delivered to a real local receiver that answers as
a workflow endpoint does.

What the SDKs parse is asserted byte for byte: the step list of each step delivery, the run
headers, the call-result callback and the failure-function body.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from qstash import Receiver as SignatureReceiver

from tests.support.http import api
from tests.support.receiver import Received, Receiver, Reply
from tests.support.server import RunningServer
from tests.support.waiting import eventually
from tests.support.workflows import FEATURES_JS, publish_step, step_headers
from tests.support.workflows import start_run as start

WORKFLOW_REPLY = Reply(200, b'{"ok":true}', {"Upstash-Workflow-Sdk-Version": "1"})


@pytest.fixture
def http(server: RunningServer) -> Iterator[httpx.Client]:
    with api(server) as client:
        yield client


def b64(data: bytes | str) -> str:
    return base64.b64encode(data.encode() if isinstance(data, str) else data).decode()


def step_list(req: Received) -> list[dict[str, str]]:
    listed: list[dict[str, str]] = json.loads(req.body)
    return listed


def test_a_run_is_delivered_step_by_step_with_its_step_list_and_run_headers(
    http: httpx.Client, receiver: Receiver, verifier: SignatureReceiver
) -> None:
    receiver.on("/wf", lambda _: WORKFLOW_REPLY)
    url = receiver.url("/wf")
    init_id = start(
        http,
        "wfr_seq",
        url,
        '{"n":1}',
        **{
            "upstash-forward-ci-test-route": "seq",
            "upstash-forward-host": "app.example",  # forwarded by the SDKs; dropped
            "upstash-forward-upstash-signature": "stale",
        },
    )

    [first] = receiver.wait_for(1, "/wf")
    assert step_list(first) == [{"messageId": init_id, "body": b64('{"n":1}'), "callType": "step"}]
    assert first.headers["Upstash-Workflow-RunId"] == "wfr_seq"
    assert first.headers["Upstash-Workflow-CreatedAt"].isdigit()
    assert first.headers["Ci-Test-Route"] == "seq"
    assert first.headers["Upstash-Workflow-Sdk-Version"] == "1"  # its own forwarded copy
    assert "Upstash-Workflow-Init" not in first.headers
    assert "Upstash-Feature-Set" not in first.headers
    verifier.verify(signature=first.headers["Upstash-Signature"], body=first.body.decode(), url=url)

    step1 = {"stepId": 1, "stepName": "one", "stepType": "Run", "out": '"a"', "concurrent": 1}
    answer = publish_step(http, "wfr_seq", url, step1)
    assert answer.status_code == 201, answer.text
    [_, second] = receiver.wait_for(2, "/wf")
    listed = step_list(second)
    assert [e["messageId"] for e in listed] == [init_id, second.message_id]
    assert base64.b64decode(listed[1]["body"]) == json.dumps(step1).encode()
    assert second.headers["Ci-Test-Route"] == "seq"  # the run headers, re-attached
    assert (
        second.headers["Upstash-Workflow-CreatedAt"] == first.headers["Upstash-Workflow-CreatedAt"]
    )

    # The full list, as LazyFetch reads it.
    fetched = http.get("/v2/workflows/runs/wfr_seq")
    assert fetched.status_code == 200 and fetched.json() == listed

    assert (
        http.request(
            "DELETE", "/v2/workflows/runs/wfr_seq?cancel=false", content=b'"done"'
        ).status_code
        == 200
    )
    # A redelivered last step ends the run again: still a success.
    assert http.delete("/v2/workflows/runs/wfr_seq?cancel=false").status_code == 200
    assert publish_step(http, "wfr_seq", url, dict(step1, stepId=2)).status_code == 400
    assert http.get("/v2/workflows/runs/wfr_seq").status_code == 404
    assert http.delete("/v2/workflows/runs/wfr_unknown?cancel=false").status_code == 404


def test_a_second_init_of_an_active_run_is_deduplicated(
    http: httpx.Client, receiver: Receiver
) -> None:
    url = receiver.url("/wf")
    headers = step_headers("wfr_dup", url, init=True, **{"upstash-delay": "1h"})
    item = {"destination": url, "headers": headers, "body": "x"}
    first = http.post("/v2/batch", json=[item]).json()[0]
    again = http.post("/v2/batch", json=[item])
    assert again.json()[0] == {"messageId": first["messageId"], "url": url, "deduplicated": True}


def test_a_repeated_step_result_is_accepted_once(http: httpx.Client, receiver: Receiver) -> None:
    receiver.on("/wf", lambda _: WORKFLOW_REPLY)
    url = receiver.url("/wf")
    start(http, "wfr_rep", url, "p")
    receiver.wait_for(1, "/wf")
    step = {"stepId": 1, "stepName": "s", "stepType": "Run", "out": "1", "concurrent": 1}
    first = publish_step(http, "wfr_rep", url, step).json()[0]
    again = publish_step(http, "wfr_rep", url, step).json()[0]
    assert again == {"messageId": first["messageId"], "url": url, "deduplicated": True}
    assert len(http.get("/v2/workflows/runs/wfr_rep").json()) == 2


def test_a_step_that_fails_for_good_fails_the_run_and_calls_the_failure_function_once(
    http: httpx.Client, receiver: Receiver
) -> None:
    error = b'{"error":"Error","message":"boom","stack":"at step"}'
    receiver.on("/wf", lambda _: Reply(500, error, {"Content-Type": "application/json"}))
    receiver.on("/failure", lambda _: Reply(200, b"{}"))
    url = receiver.url("/wf")
    start(
        http,
        "wfr_fail",
        url,
        '{"order":7}',
        **{
            "upstash-retries": "0",
            "upstash-forward-authentication": "secret",
            "upstash-failure-callback": receiver.url("/failure"),
            "upstash-failure-callback-forward-upstash-workflow-is-failure": "true",
            "upstash-failure-callback-forward-upstash-workflow-failure-callback": "true",
            "upstash-failure-callback-forward-authentication": "secret",
            "upstash-failure-callback-workflow-runid": "wfr_fail",
            "upstash-failure-callback-workflow-init": "false",
            "upstash-failure-callback-workflow-url": url,
            "upstash-failure-callback-workflow-calltype": "failureCall",
            "upstash-failure-callback-feature-set": FEATURES_JS,
            "upstash-failure-callback-retries": "0",
        },
    )

    [failure] = receiver.wait_for(1, "/failure")
    doc = json.loads(failure.body)
    assert doc["status"] == 500
    assert base64.b64decode(doc["body"]) == error
    assert doc["header"]["Content-Type"] == ["application/json"]
    assert (doc["workflowRunId"], doc["url"]) == ("wfr_fail", url)
    assert isinstance(doc["workflowCreatedAt"], int)
    assert base64.b64decode(doc["sourceBody"]) == b'{"order":7}'
    assert failure.headers["Upstash-Workflow-RunId"] == "wfr_fail"
    assert failure.headers["Upstash-Workflow-Is-Failure"] == "true"
    assert failure.headers["Upstash-Workflow-Failure-Callback"] == "true"
    assert failure.headers["Authentication"] == "secret"
    assert "Upstash-Workflow-Sdk-Version" not in failure.headers
    assert "Upstash-Workflow-Runid" not in {
        k for k in failure.headers if k != "Upstash-Workflow-RunId"
    }
    # The run failed: its steps are refused, and the run end reports it.
    assert publish_step(http, "wfr_fail", url, {"stepId": 1}).status_code == 400
    assert http.delete("/v2/workflows/runs/wfr_fail?cancel=false").status_code == 400
    assert len(receiver.to("/failure")) == 1


def test_an_init_delivered_to_a_non_workflow_endpoint_fails_the_run(
    http: httpx.Client, receiver: Receiver, server: RunningServer
) -> None:
    receiver.on("/plain", lambda _: Reply(200, b"hello"))
    url = receiver.url("/plain")
    init_id = start(http, "wfr_plain", url, "x")
    receiver.wait_for(1, "/plain")

    def failed() -> list[dict[str, Any]] | None:
        logs: list[dict[str, Any]] = http.get("/v2/logs", params={"messageId": init_id}).json()[
            "events"
        ]
        return logs if logs[0]["state"] == "FAILED" else None

    logs = eventually(failed)
    [error] = [e for e in logs if e["state"] == "ERROR"]
    assert error["error"] == (
        "detected a non-workflow destination for trigger/invoke. "
        "make sure you are sending the request to the correct endpoint"
    )
    assert base64.b64decode(error["responseBody"]) == b"hello"
    assert logs[0]["workflowRunId"] == "wfr_plain"
    assert len(receiver.to("/plain")) == 1  # no retry
    assert publish_step(http, "wfr_plain", url, {"stepId": 1}).status_code == 400


def test_a_call_reaches_the_third_party_and_its_result_comes_back_to_the_workflow(
    http: httpx.Client, receiver: Receiver
) -> None:
    receiver.on("/wf", lambda _: WORKFLOW_REPLY)
    receiver.on("/api", lambda _: Reply(401, b"denied", {"Fail-Header-Foo": "bar"}))
    url = receiver.url("/wf")
    start(http, "wfr_call", url, "in", **{"upstash-forward-ci-test-route": "call"})
    receiver.wait_for(1, "/wf")
    call_headers = {
        "upstash-workflow-init": "false",
        "upstash-workflow-runid": "wfr_call",
        "upstash-workflow-url": url,
        "upstash-workflow-calltype": "toCallback",
        "upstash-feature-set": "WF_NoDelete,InitialBody",
        "upstash-workflow-sdk-version": "1",
        "upstash-method": "PATCH",
        "upstash-retries": "0",
        "upstash-timeout": "30",
        "content-type": "text/plain",
        "upstash-forward-my-header": "mine",
        "upstash-callback": url,
        "upstash-callback-workflow-runid": "wfr_call",
        "upstash-callback-workflow-calltype": "fromCallback",
        "upstash-callback-workflow-init": "false",
        "upstash-callback-workflow-url": url,
        "upstash-callback-feature-set": FEATURES_JS,
        "upstash-callback-forward-upstash-workflow-callback": "true",
        "upstash-callback-forward-upstash-workflow-stepid": "1",
        "upstash-callback-forward-upstash-workflow-stepname": "call it",
        "upstash-callback-forward-upstash-workflow-steptype": "Call",
        "upstash-callback-forward-upstash-workflow-concurrent": "1",
        "upstash-callback-forward-upstash-workflow-contenttype": "text/plain",
    }
    item = {"destination": receiver.url("/api"), "headers": call_headers, "body": "call body"}
    assert http.post("/v2/batch", json=[item]).status_code == 201

    [call] = receiver.wait_for(1, "/api")
    assert (call.method, call.body, call.headers["My-Header"]) == ("PATCH", b"call body", "mine")
    assert "Upstash-Workflow-Sdk-Version" not in call.headers
    [_, result] = receiver.wait_for(2, "/wf")
    doc = json.loads(result.body)
    assert (doc["status"], base64.b64decode(doc["body"])) == (401, b"denied")
    assert doc["header"]["Fail-Header-Foo"] == ["bar"]
    assert (doc["retried"], doc["maxRetries"]) == (0, 0)
    assert result.headers["Upstash-Workflow-RunId"] == "wfr_call"
    assert result.headers["Upstash-Workflow-Callback"] == "true"
    assert result.headers["Upstash-Workflow-Stepname"] == "call it"
    assert result.headers["Ci-Test-Route"] == "call"
    assert "Upstash-Workflow-Sdk-Version" not in result.headers
    # The call's failure did not fail the run.
    assert publish_step(http, "wfr_call", url, {"stepId": 1}).status_code == 201


def test_cancel_stops_a_sleeping_run_and_bulk_cancel_counts_what_it_ended(
    http: httpx.Client, receiver: Receiver, server: RunningServer
) -> None:
    receiver.on("/wf", lambda _: WORKFLOW_REPLY)
    url = receiver.url("/wf")
    for run_id in ("wfr_a", "wfr_b", "wfr_c"):
        start(http, run_id, url, "p")
    receiver.wait_for(3, "/wf")
    sleep = {"stepId": 1, "stepName": "zz", "stepType": "SleepFor", "sleepFor": 3600}
    assert publish_step(http, "wfr_a", url, sleep, **{"upstash-delay": "3600s"}).status_code == 201

    assert http.delete("/v2/workflows/runs/wfr_a?cancel=true").status_code == 200
    assert http.delete("/v2/workflows/runs/wfr_a?cancel=true").status_code == 200
    assert publish_step(http, "wfr_a", url, {"stepId": 2}).status_code == 400
    cancelled = http.delete(
        "/v2/workflows/runs", params=[("workflowRunIds", "wfr_b"), ("workflowRunIds", "wfr_x")]
    )
    assert cancelled.json() == {"cancelled": 1}
    legacy = http.request("DELETE", "/v2/workflows/runs", json={"workflowUrl": receiver.url("/")})
    assert legacy.json() == {"cancelled": 1}  # wfr_c; the others were already canceled
    assert http.delete("/v2/workflows/runs", params={"count": 100}).json() == {"cancelled": 0}


def test_features_homing_lacks_are_named_in_the_answer(http: httpx.Client) -> None:
    for method, path in (("POST", "/v2/trigger/http://127.0.0.1:9/"),):
        answer = http.request(method, path)
        assert answer.status_code == 501, (path, answer.text)
        assert "not supported by Homing yet" in answer.json()["error"]


def test_a_limit_broken_inside_a_run_is_a_412(http: httpx.Client, receiver: Receiver) -> None:
    url = receiver.url("/wf")
    start(http, "wfr_limit", url, "p", **{"upstash-delay": "1h"})
    answer = publish_step(http, "wfr_limit", url, {"stepId": 1}, **{"upstash-retries": "1000000"})
    assert answer.status_code == 412, answer.text
    plain = http.post(f"/v2/publish/{url}", headers={"Upstash-Retries": "1000000"})
    assert plain.status_code == 400


def test_a_batch_item_body_that_is_not_a_string_is_delivered_as_its_json_text(
    http: httpx.Client, receiver: Receiver
) -> None:
    # The JS SDK puts a context.call body in the batch item as the user gave it.
    item = {"destination": receiver.url("/third"), "body": {"word": "hello", "n": [1, 2]}}
    assert http.post("/v2/batch", json=[item]).status_code == 201
    [got] = receiver.wait_for(1, "/third")
    assert got.body == b'{"word":"hello","n":[1,2]}'


def test_the_trigger_configuration_applies_to_later_steps_and_a_failing_step_fails_the_run(
    http: httpx.Client, receiver: Receiver, server: RunningServer
) -> None:
    deliveries: list[Received] = []

    def workflow(req: Received) -> Reply:
        deliveries.append(req)
        return WORKFLOW_REPLY if len(deliveries) == 1 else Reply(500, b'{"message":"late"}')

    receiver.on("/wf", workflow)
    receiver.on("/failure", lambda _: Reply(200, b"{}"))
    url = receiver.url("/wf")
    start(
        http,
        "wfr_cfg",
        url,
        "p",
        **{
            "upstash-retries": "0",
            "upstash-failure-callback": receiver.url("/failure"),
            "upstash-failure-callback-forward-upstash-workflow-is-failure": "true",
        },
    )
    receiver.wait_for(1, "/wf")
    step = {"stepId": 1, "stepName": "s", "stepType": "Run", "out": "1", "concurrent": 1}
    assert publish_step(http, "wfr_cfg", url, step).status_code == 201  # no retries of its own

    [failure] = receiver.wait_for(1, "/failure")
    doc = json.loads(failure.body)
    assert (doc["workflowRunId"], doc["maxRetries"], doc["status"]) == ("wfr_cfg", 0, 500)
    assert len(receiver.to("/wf")) == 2  # the run's 0 retries applied to the step

    metrics = http.get("/metrics").text
    assert 'homing_workflow_runs_total{event="started"} 1.0' in metrics
    assert 'homing_workflow_runs_total{event="failed"} 1.0' in metrics
    assert "homing_workflow_steps_delivered_total 1.0" in metrics


def test_parallel_steps_each_see_the_list_up_to_themselves(
    http: httpx.Client, receiver: Receiver
) -> None:
    receiver.on("/wf", lambda _: WORKFLOW_REPLY)
    url = receiver.url("/wf")
    init_id = start(http, "wfr_par", url, "p")
    receiver.wait_for(1, "/wf")
    plans = [
        {"stepId": 0, "stepName": f"b{i}", "stepType": "Run", "concurrent": 2, "targetStep": i}
        for i in (1, 2)
    ]
    items = [
        {
            "destination": url,
            "headers": step_headers("wfr_par", url, init=False),
            "body": json.dumps(p),
        }
        for p in plans
    ]
    ids = [r["messageId"] for r in http.post("/v2/batch", json=items).json()]

    got = {r.message_id: step_list(r) for r in receiver.wait_for(3, "/wf")[1:]}
    assert [e["messageId"] for e in got[ids[0]]] == [init_id, ids[0]]
    assert [e["messageId"] for e in got[ids[1]]] == [init_id, ids[0], ids[1]]


def test_a_call_to_a_forbidden_address_fails_the_run_visibly_with_a_412(
    start_server: Any, receiver: Receiver
) -> None:
    server = start_server(allow_private_destinations=False)
    with api(server) as http:
        url = "https://app.example/wf"
        headers = {
            **step_headers("wfr_ssrf", url, init=False),
            "upstash-workflow-calltype": "toCallback",
        }
        answer = http.post(
            "/v2/batch", json=[{"destination": "http://127.0.0.1:9/admin", "headers": headers}]
        )
        # A 400 would make the JS SDK stop the run quietly, as if it had been canceled.
        assert answer.status_code == 412, answer.text
        assert "127.0.0.1" in answer.json()["error"] or "not allowed" in answer.json()["error"]
