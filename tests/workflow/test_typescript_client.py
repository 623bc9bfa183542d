"""The workflow client API and `context.invoke` with the published TypeScript SDK.

The same app as tests/workflow/test_typescript_workflows.py (tests/workflow/ts/app.ts), its own
`homing dev` for this module: a run invokes other workflows and gets their ends back as steps.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.reliability.support import HomingProcess
from tests.support.receiver import Receiver
from tests.workflow.support import (
    THIRD_PARTY_PATH,
    WorkflowApp,
    homing_tail,
    qstash_env,
    ts_app,
)


@pytest.fixture(scope="module")
def app(
    homing: HomingProcess, third_party: Receiver, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[WorkflowApp]:
    tmp = tmp_path_factory.mktemp("app-ts-client")
    env = qstash_env(homing.base_url) | {"THIRD_PARTY_URL": third_party.url(THIRD_PARTY_PATH)}
    with ts_app(tmp, env, diagnostics=lambda: homing_tail(homing)) as found:
        yield found


def test_an_invoked_child_returns_its_value_and_a_failing_child_its_failure(
    app: WorkflowApp,
) -> None:
    run = app.trigger("invoke/invoke-parent", {"n": 21})

    [results] = app.wait_for(
        "the parent's invoke results", lambda: app.events(run, "invoke-results"), timeout=20
    )

    assert results["ok"] == {"body": {"doubled": 42}, "isFailed": False, "isCanceled": False}
    assert results["failed"] == {"isFailed": True, "isCanceled": False}
    app.completed(run)


def dlq(app: WorkflowApp, op: str, **fields: str) -> Any:
    answer = app.http.post("/admin/dlq", json={"op": op, **fields})
    assert answer.status_code == 200, f"dlq {op}: {answer.status_code} {answer.text}"
    return answer.json()


def failed_run(app: WorkflowApp, tag: str) -> tuple[str, dict[str, Any]]:
    """A run of `flaky` that failed at its fragile step, and its workflow DLQ entry."""
    run = app.trigger("flaky", {"tag": tag}, retries=0)
    app.wait_for("the failure function", lambda: app.events(run, "failure-function"))
    listed = app.wait_for(
        "the run's DLQ entry", lambda: dlq(app, "list", runId=run)["messages"], timeout=10
    )
    [entry] = listed
    return run, entry


def test_a_failed_run_resumed_from_the_dlq_continues_after_its_last_good_step(
    app: WorkflowApp,
) -> None:
    run, entry = failed_run(app, "resume-me")
    assert entry["workflowRunId"] == run
    assert entry["workflowUrl"] == app.url("flaky")
    assert json.loads(entry["body"]) == {"tag": "resume-me"}

    resumed = dlq(app, "resume", dlqId=entry["dlqId"])

    new_run = resumed["workflowRunId"]
    assert new_run != run and resumed["workflowCreatedAt"] > 0
    done = app.completed(new_run)
    assert done["result"] == "prepared-resume-me-done"
    assert app.steps(new_run) == ["fragile"]  # "prepare" is not run again
    assert dlq(app, "list", runId=run)["messages"] == []


def test_a_failed_run_restarted_from_the_dlq_runs_from_the_beginning(app: WorkflowApp) -> None:
    _, entry = failed_run(app, "restart-me")

    restarted = dlq(app, "restart", dlqId=entry["dlqId"])

    new_run = restarted["workflowRunId"]
    done = app.completed(new_run)
    assert done["result"] == "prepared-restart-me-done"
    assert app.steps(new_run) == ["prepare", "fragile"]


def test_a_failure_function_that_failed_runs_again_on_request(app: WorkflowApp) -> None:
    run, _ = failed_run(app, "failing-callback")

    def callback_failed() -> list[dict[str, Any]]:
        [entry] = dlq(app, "list", runId=run)["messages"]
        info = entry.get("failureCallbackInfo", {})
        return [entry] if info.get("state") == "CALLBACK_FAIL" else []

    [entry] = app.wait_for("the failure callback to fail", callback_failed)
    again = dlq(app, "callback", dlqId=entry["dlqId"])

    assert again["workflowRunId"] == run
    app.wait_for(
        "the failure function, twice", lambda: app.events(run, "failure-function"), count=2
    )


def test_client_logs_show_each_run_with_its_steps_and_state(app: WorkflowApp) -> None:
    run = app.trigger("sequential", {"n": 4})
    app.completed(run)

    answer = app.http.post("/admin/logs", json={"runId": run})

    assert answer.status_code == 200, answer.text
    [logged] = answer.json()["runs"]
    assert logged["workflowRunId"] == run
    assert logged["workflowState"] == "RUN_SUCCESS"
    assert logged["workflowUrl"] == app.url("sequential")
    assert logged["workflowRunCompletedAt"] >= logged["workflowRunCreatedAt"]
    names = [s["stepName"] for group in logged["steps"] for s in group["steps"]]
    assert names == ["init", "add-one", "double", "describe"]
    [init] = logged["steps"][0]["steps"][:1]
    assert init["stepType"] == "Initial" and json.loads(init["out"]) == {"n": 4}
    assert all(s["state"] == "STEP_SUCCESS" for g in logged["steps"] for s in g["steps"])


def test_client_logs_show_who_invoked_a_child_run(app: WorkflowApp) -> None:
    run = app.trigger("invoke/invoke-parent", {"n": 1})
    app.completed(run, timeout=20)

    logged = app.http.post("/admin/logs", json={"runId": run}).json()["runs"][0]

    invokes = [s for g in logged["steps"] for s in g["steps"] if s["stepType"] == "Invoke"]
    assert [s["stepName"] for s in invokes] == ["call-child", "call-failing"]
    assert json.loads(invokes[1]["out"]) == {"isFailed": True, "isCanceled": False}
