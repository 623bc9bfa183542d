"""Runs of the published Python SDK (`upstash-workflow` 2.0.0, which has no workflow client)
resumed and restarted from the workflow DLQ through Homing's REST API."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from qstash import QStash

from tests.reliability.support import HomingProcess
from tests.support.receiver import Receiver
from tests.support.server import DEV_TOKEN
from tests.workflow.support import THIRD_PARTY_PATH, WorkflowApp, homing_tail, py_app, qstash_env


@pytest.fixture(scope="module")
def app(
    homing: HomingProcess, third_party: Receiver, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[WorkflowApp]:
    tmp = tmp_path_factory.mktemp("app-py-client")
    env = qstash_env(homing.base_url) | {"THIRD_PARTY_URL": third_party.url(THIRD_PARTY_PATH)}
    with py_app(tmp, env, diagnostics=lambda: homing_tail(homing)) as found:
        yield found


@pytest.fixture(scope="module")
def qstash(homing: HomingProcess) -> QStash:
    return QStash(DEV_TOKEN, base_url=homing.base_url)


@pytest.fixture(scope="module")
def rest(homing: HomingProcess) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"Bearer {DEV_TOKEN}"}
    with httpx.Client(base_url=homing.base_url, headers=headers, timeout=10) as client:
        yield client


def failed_entry(app: WorkflowApp, qstash: QStash, rest: httpx.Client) -> tuple[str, str]:
    """Start a `flaky` run that fails at its fragile step; returns its tag (`publish_run`
    gives each payload its own) and its workflow DLQ id."""
    run = app.publish_run(qstash, "flaky", {})
    [invoked] = app.events(run, "invoked")[:1]
    app.wait_for("the failure function", lambda: app.events(run, "failure-function"))

    def listed() -> list[dict[str, Any]]:
        params = {"source": "workflow", "workflowRunId": run}
        found: list[dict[str, Any]] = rest.get("/v2/dlq", params=params).json()["messages"]
        return found

    [entry] = app.wait_for("the run's DLQ entry", listed)
    assert entry["workflowUrl"] == app.url("flaky")
    return invoked["tag"], entry["dlqId"]


def completed(app: WorkflowApp, run: str) -> tuple[list[str], Any]:
    [done] = app.wait_for(f"completion of {run}", lambda: app.events(run, "completed"))
    return app.steps(run), done["result"]


def test_a_failed_python_run_resumes_after_its_last_good_step(
    app: WorkflowApp, qstash: QStash, rest: httpx.Client
) -> None:
    tag, dlq_id = failed_entry(app, qstash, rest)

    answer = rest.post("/v2/workflows/dlq/resume", params={"dlqIds": dlq_id})

    assert answer.status_code == 200, answer.text
    [resumed] = answer.json()["workflowRuns"]
    steps, result = completed(app, resumed["workflowRunId"])
    assert (steps, result) == (["fragile"], f"prepared-{tag}-done")


def test_a_failed_python_run_restarts_from_its_initial_payload(
    app: WorkflowApp, qstash: QStash, rest: httpx.Client
) -> None:
    tag, dlq_id = failed_entry(app, qstash, rest)

    answer = rest.post(f"/v2/workflows/dlq/restart/{dlq_id}")

    assert answer.status_code == 200, answer.text
    steps, result = completed(app, answer.json()["workflowRunId"])
    assert (steps, result) == (["prepare", "fragile"], f"prepared-{tag}-done")
