"""`context.invoke`, the workflow logs and the workflow DLQ over HTTP, with the request shapes of
the JS SDK (`@upstash/workflow` 1.3.3): a real Homing, a real receiver as the workflow app."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.support.http import api
from tests.support.receiver import Received, Receiver, Reply
from tests.support.server import RunningServer
from tests.support.waiting import eventually
from tests.support.workflows import publish_step, step_headers
from tests.support.workflows import start_run as start

WORKFLOW_REPLY = Reply(200, b'{"ok":true}', {"Upstash-Workflow-Sdk-Version": "1"})
INVOKE_STEP = {"stepId": 1, "stepName": "call-child", "stepType": "Invoke", "concurrent": 1}


@pytest.fixture
def http(server: RunningServer) -> Iterator[httpx.Client]:
    with api(server) as client:
        yield client


def step_list(req: Received) -> list[dict[str, str]]:
    listed: list[dict[str, str]] = json.loads(req.body)
    return listed


def last_step(req: Received) -> dict[str, Any]:
    step: dict[str, Any] = json.loads(base64.b64decode(step_list(req)[-1]["body"]))
    return step


def invoke(
    http: httpx.Client, parent: str, parent_url: str, child: str, child_url: str, **more: str
) -> httpx.Response:
    """The invoke publish the JS SDK sends from run `parent` to start `child`."""
    body = {
        "body": '{"n":21}',
        "headers": {
            **{k: [v] for k, v in step_headers(parent, parent_url, init=False).items()},
            "Authorization": ["Bearer the-callers-token"],
        },
        "workflowRunId": parent,
        "workflowRunCreatedAt": 1_800_000_000_000,
        "workflowUrl": parent_url,
        "step": INVOKE_STEP,
    }
    headers = step_headers(child, child_url, init=True, **{"upstash-workflow-invoke": "true"})
    headers |= more
    return http.post(
        "/v2/batch",
        json=[{"destination": child_url, "headers": headers, "body": json.dumps(body)}],
    )


@pytest.mark.parametrize(
    ("end", "out"),
    [
        ("cancel=false", {"body": '{"doubled":42}', "isFailed": False, "isCanceled": False}),
        ("cancel=true", {"isFailed": False, "isCanceled": True}),
    ],
)
def test_an_invoked_child_run_returns_its_end_to_the_parent_as_its_invoke_step(
    http: httpx.Client, receiver: Receiver, end: str, out: dict[str, Any]
) -> None:
    receiver.on("/parent", lambda _: WORKFLOW_REPLY)
    receiver.on("/child", lambda _: WORKFLOW_REPLY)
    parent_url, child_url = receiver.url("/parent"), receiver.url("/child")
    start(http, "wfr_parent", parent_url, '{"n":21}')
    receiver.wait_for(1, "/parent")

    answer = invoke(http, "wfr_parent", parent_url, "wfr_child", child_url)

    assert answer.status_code == 201, answer.text
    [child] = receiver.wait_for(1, "/child")
    assert base64.b64decode(step_list(child)[0]["body"]) == b'{"n":21}'  # the body's `body`
    assert child.headers["Upstash-Workflow-RunId"] == "wfr_child"
    ended = http.request("DELETE", f"/v2/workflows/runs/wfr_child?{end}", content=b'{"doubled":42}')
    assert ended.status_code == 200, ended.text
    [_, result] = receiver.wait_for(2, "/parent")
    assert result.headers["Upstash-Workflow-RunId"] == "wfr_parent"
    assert "Authorization" not in result.headers
    step = last_step(result)
    assert {k: step[k] for k in INVOKE_STEP} == INVOKE_STEP
    assert json.loads(step["out"]) == out
    [logged] = http.get("/v2/workflows/logs", params={"workflowRunId": "wfr_child"}).json()["runs"]
    assert logged["invoker"] == {
        "workflowRunId": "wfr_parent",
        "workflowUrl": parent_url,
        "workflowRunCreatedAt": 1_800_000_000_000,
    }
    metrics = http.get("/metrics").text
    assert 'homing_workflow_invokes_total{event="started"} 1.0' in metrics
    assert 'homing_workflow_invokes_total{event="returned"} 1.0' in metrics


def test_an_invoke_chain_100_deep_is_refused_and_a_malformed_invoke_too(
    http: httpx.Client, receiver: Receiver
) -> None:
    parent_url, child_url = receiver.url("/parent"), receiver.url("/child")
    deep = {"upstash-forward-upstash-workflow-invoke-count": "100"}

    too_deep = invoke(http, "wfr_p", parent_url, "wfr_c", child_url, **deep)

    assert too_deep.status_code == 412 and "depth" in too_deep.json()["error"]
    ok = invoke(http, "wfr_p", parent_url, "wfr_c", child_url, **{**deep, **{
        "upstash-forward-upstash-workflow-invoke-count": "99"}})  # fmt: skip
    assert ok.status_code == 201, ok.text
    headers = step_headers("wfr_c2", child_url, init=True, **{"upstash-workflow-invoke": "true"})
    malformed = http.post(
        "/v2/batch", json=[{"destination": child_url, "headers": headers, "body": "[1]"}]
    )
    assert malformed.status_code == 412, malformed.text


def fail_run(http: httpx.Client, receiver: Receiver, run_id: str, url: str) -> str:
    """Start a run whose second step fails for good; returns its workflow DLQ id."""
    start(http, run_id, url, '{"order":7}', **{"upstash-retries": "0"})
    receiver.wait_for(1, "/wf")
    publish_step(
        http,
        run_id,
        url,
        {"stepId": 1, "stepName": "one", "stepType": "Run", "out": '"a"', "concurrent": 1},
    )

    def listed() -> list[dict[str, Any]] | None:
        found: list[dict[str, Any]] = http.get(
            "/v2/dlq", params={"source": "workflow", "workflowRunId": run_id}
        ).json()["messages"]
        return found or None

    [entry] = eventually(listed)
    dlq_id: str = entry["dlqId"]
    return dlq_id


def test_a_failed_run_is_in_the_workflow_dlq_and_resumes_under_a_new_run_id(
    http: httpx.Client, receiver: Receiver
) -> None:
    seen: list[Received] = []

    def app(req: Received) -> Reply:
        seen.append(req)
        return WORKFLOW_REPLY if len(seen) != 2 else Reply(500, b'{"message":"boom"}')

    receiver.on("/wf", app)
    url = receiver.url("/wf")
    dlq_id = fail_run(http, receiver, "wfr_broken", url)

    entry = http.get(f"/v2/workflows/dlq/{dlq_id}").json()
    assert (entry["workflowRunId"], entry["workflowUrl"]) == ("wfr_broken", url)
    assert entry["body"] == '{"order":7}'  # the run's initial payload
    assert entry["responseStatus"] == 500 and entry["responseBody"] == '{"message":"boom"}'
    assert isinstance(entry["workflowCreatedAt"], int)
    assert http.get("/v2/dlq").json()["messages"][0]["dlqId"] == dlq_id  # a QStash entry too

    def ended() -> dict[str, Any] | None:
        # The run's end is recorded just after the failed step's outcome, not with it.
        [run] = http.get("/v2/workflows/events", params={"workflowRunId": "wfr_broken"}).json()[
            "runs"
        ]
        return run if run["workflowState"] == "RUN_FAILED" else None

    logged = eventually(ended)
    assert logged["dlqId"] == dlq_id
    assert [g["type"] for g in logged["steps"]] == ["sequential", "next"]
    [failed] = logged["steps"][-1]["steps"]
    assert (failed["state"], failed["retries"]) == ("STEP_FAILED", 0)
    [error] = failed["errors"]
    assert (error["status"], error["body"]) == (500, '{"message":"boom"}')

    resumed = http.post("/v2/workflows/dlq/resume", params={"dlqIds": dlq_id})

    assert resumed.status_code == 200, resumed.text
    [new_run] = resumed.json()["workflowRuns"]
    assert new_run["workflowRunId"].startswith("wfr_") and new_run["workflowRunId"] != "wfr_broken"
    [*_, again] = receiver.wait_for(3, "/wf")
    assert again.headers["Upstash-Workflow-RunId"] == new_run["workflowRunId"]
    assert again.headers["Upstash-Workflow-CreatedAt"] == str(new_run["workflowCreatedAt"])
    listed = step_list(again)
    assert [json.loads(base64.b64decode(e["body"])).get("stepName") for e in listed[1:]] == ["one"]
    assert base64.b64decode(listed[0]["body"]) == b'{"order":7}'
    assert http.get(f"/v2/workflows/dlq/{dlq_id}").status_code == 404
    again_resumed = http.post(f"/v2/workflows/dlq/resume/{dlq_id}")
    assert again_resumed.status_code == 404


def test_restart_and_delete_of_workflow_dlq_entries(http: httpx.Client, receiver: Receiver) -> None:
    calls: list[Received] = []

    def app(req: Received) -> Reply:
        calls.append(req)
        ok = len(step_list(req)) == 1
        return WORKFLOW_REPLY if ok else Reply(500, b"no")

    receiver.on("/wf", app)
    url = receiver.url("/wf")
    first = fail_run(http, receiver, "wfr_r1", url)
    second = fail_run(http, receiver, "wfr_r2", url)

    restarted = http.post(f"/v2/workflows/dlq/restart/{first}")

    assert restarted.status_code == 200, restarted.text
    new_id = restarted.json()["workflowRunId"]
    init = eventually(
        lambda: next((c for c in calls if c.headers["Upstash-Workflow-RunId"] == new_id), None)
    )
    assert [base64.b64decode(e["body"]) for e in step_list(init)] == [b'{"order":7}']
    assert http.delete("/v2/workflows/dlq", params={"dlqIds": "nope"}).json() == {"deleted": 0}
    assert http.delete(f"/v2/workflows/dlq/{second}").json() == {"deleted": 1}
    assert http.delete(f"/v2/workflows/dlq/{second}").status_code == 404
    assert http.get("/v2/dlq", params={"source": "workflow"}).json()["messages"] == []
    assert http.post("/v2/workflows/dlq/callback/unknown").status_code == 404
    assert http.get("/v2/dlq", params={"source": "elsewhere"}).status_code == 400


def test_workflow_logs_page_through_runs_newest_first_with_filters(
    http: httpx.Client, receiver: Receiver
) -> None:
    receiver.on("/wf", lambda _: WORKFLOW_REPLY)
    url = receiver.url("/wf")
    for run_id in ("wfr_l1", "wfr_l2", "wfr_l3"):
        start(http, run_id, url, f'"{run_id}"')
    http.request("DELETE", "/v2/workflows/runs/wfr_l2?cancel=false", content=b'"all done"')

    page = http.get("/v2/workflows/events", params={"groupBy": "workflowRunId", "count": 2})

    assert page.status_code == 200, page.text
    first = page.json()
    assert [r["workflowRunId"] for r in first["runs"]] == ["wfr_l3", "wfr_l2"]
    rest = http.get("/v2/workflows/events", params={"cursor": first["cursor"]}).json()
    assert [r["workflowRunId"] for r in rest["runs"]] == ["wfr_l1"] and "cursor" not in rest
    [done] = http.get("/v2/workflows/logs", params={"state": "RUN_SUCCESS"}).json()["runs"]
    assert done["workflowRunId"] == "wfr_l2" and done["workflowRunResponse"] == '"all done"'
    [init] = done["steps"][0]["steps"]
    assert (init["stepType"], init["out"], init["state"]) == ("Initial", '"wfr_l2"', "STEP_SUCCESS")
    assert http.get("/v2/workflows/logs", params={"workflowUrl": url[:-1]}).json()["runs"] == []
    assert len(http.get("/v2/workflows/logs", params={"count": 500}).json()["runs"]) == 3
    assert http.get("/v2/workflows/logs", params={"state": "NOPE"}).status_code == 400


def test_a_failed_failure_callback_is_shown_and_sent_again_once_on_request(
    http: httpx.Client, receiver: Receiver
) -> None:
    receiver.on("/wf", lambda _: Reply(500, b"step broke"))
    answers = iter([Reply(500, b"callback broke"), Reply(200, b"ok")])
    receiver.on("/failure", lambda _: next(answers))
    url = receiver.url("/wf")
    start(
        http,
        "wfr_cb",
        url,
        '{"order":7}',
        **{
            "upstash-retries": "0",
            "upstash-failure-callback": receiver.url("/failure"),
            "upstash-failure-callback-retries": "0",
        },
    )

    def callback_failed() -> dict[str, Any] | None:
        found = http.get("/v2/workflows/dlq", params={"workflowRunId": "wfr_cb"}).json()
        entries: list[dict[str, Any]] = found["messages"]
        info = entries[0].get("failureCallbackInfo", {}) if entries else {}
        return entries[0] if info.get("state") == "CALLBACK_FAIL" else None

    entry = eventually(callback_failed)
    assert entry["failureCallback"] == receiver.url("/failure")
    assert entry["failureCallbackInfo"]["responseStatus"] == 500
    assert entry["failureCallbackInfo"]["responseBody"] == "callback broke"

    again = http.post(f"/v2/workflows/dlq/callback/{entry['dlqId']}")

    assert again.status_code == 200, again.text
    assert again.json()["workflowRunId"] == "wfr_cb"
    [_, second] = receiver.wait_for(2, "/failure")
    assert json.loads(second.body)["workflowRunId"] == "wfr_cb"

    def delivered() -> str | None:
        info = http.get(f"/v2/workflows/dlq/{entry['dlqId']}").json()["failureCallbackInfo"]
        return info["state"] if info["state"] == "CALLBACK_SUCCESS" else None

    eventually(delivered)
    [logged] = http.get("/v2/workflows/logs", params={"workflowRunId": "wfr_cb"}).json()["runs"]
    function = logged["failureFunction"]
    assert (function["state"], function["url"]) == ("CALLBACK_SUCCESS", receiver.url("/failure"))
    assert (function["failStatus"], function["failResponse"]) == (500, "step broke")
    assert (function["dlqId"], function["responseStatus"]) == (entry["dlqId"], 200)
    refused = http.post(f"/v2/workflows/dlq/callback/{entry['dlqId']}")
    assert refused.status_code == 400 and "CALLBACK_SUCCESS" in refused.json()["error"]
