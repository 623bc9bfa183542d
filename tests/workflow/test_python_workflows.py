"""Upstash Workflow apps in Python run unchanged on Homing.

The app (tests/workflow/py_app/main.py) is FastAPI with the published `upstash-workflow` 2.0.0
and its `Serve`; it talks to Homing only through the SDK's environment variables and verifies
every delivery with the signing keys. The Python SDK has no client: a run starts when the test
publishes the payload to the workflow route through Homing (with the official `qstash` SDK).
It has no parallel steps and no cancel, so those are only in the TypeScript suite. One Homing
(`homing dev`, a real process) and one app serve the module; the kill tests restart that Homing.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from qstash import QStash

from tests.multinode.support import Credentials
from tests.reliability.support import HomingProcess
from tests.support.receiver import Receiver
from tests.support.server import DEV_TOKEN, postgres_or_skip
from tests.workflow.support import (
    THIRD_PARTY_PATH,
    WorkflowApp,
    homing_tail,
    py_app,
    qstash_env,
    two_postgres_nodes,
)


@pytest.fixture(scope="module")
def app(
    homing: HomingProcess, third_party: Receiver, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[WorkflowApp]:
    tmp = tmp_path_factory.mktemp("app-py")

    env = qstash_env(homing.base_url) | {"THIRD_PARTY_URL": third_party.url(THIRD_PARTY_PATH)}
    with py_app(tmp, env, diagnostics=lambda: homing_tail(homing)) as found:
        yield found


@pytest.fixture(scope="module")
def qstash(homing: HomingProcess) -> QStash:
    return QStash(DEV_TOKEN, base_url=homing.base_url)


def test_three_sequential_steps_pass_their_values_and_the_run_completes(
    app: WorkflowApp, qstash: QStash
) -> None:
    run = app.publish_run(qstash, "sequential", {"n": 4})

    done = app.completed(run)

    assert done["result"] == {"a": 5, "b": 10, "c": "result:10"}
    steps = app.events(run, "step")
    assert [(s["step"], s["input"]) for s in steps] == [
        ("add-one", 4),
        ("double", 5),
        ("describe", 10),
    ]


def test_sleep_and_sleep_until_wait_before_the_next_step(app: WorkflowApp, qstash: QStash) -> None:
    run = app.publish_run(qstash, "sleepy", {"seconds": 1})

    done = app.completed(run, timeout=20)

    result = done["result"]
    assert result["napped"] - result["started"] >= 1.0
    assert result["woke"] >= result["until"] >= result["napped"] + 1.0
    assert app.steps(run) == ["before", "after-sleep", "after-sleep-until"]


def test_call_reaches_the_endpoint_and_its_response_comes_back(
    app: WorkflowApp, third_party: Receiver, qstash: QStash
) -> None:
    run = app.publish_run(qstash, "caller", {"word": "hello"})

    app.completed(run)

    [seen] = third_party.to(THIRD_PARTY_PATH)
    assert seen.method == "POST"
    assert seen.headers["X-Test-Header"] == "sent-by-workflow"
    assert json.loads(seen.body) == {"word": "hello"}
    # The call is the app's request, not a workflow step: no step protocol reaches the third party.
    assert "Upstash-Workflow-Sdk-Version" not in seen.headers
    [result] = app.events(run, "call-result")
    assert result["status"] == 201
    headers = {k.lower(): v for k, v in result["header"].items()}
    assert headers["x-reply"] == ["from-receiver"]
    assert result["body"] == {"echoed": True, "greeting": "hello"}


def test_a_failing_step_without_retries_reaches_the_failure_function_once(
    app: WorkflowApp, qstash: QStash
) -> None:
    run = app.publish_run(qstash, "failing", {})

    [failure] = app.wait_for("failure function", lambda: app.events(run, "failure-function"))

    assert f"boom in {run}" in failure["failResponse"]
    assert failure["failStatus"] == 500
    # No retry of the step, no second failure call: give a stray one the time to show up.
    time.sleep(1.0)
    assert app.steps(run) == ["explode"]
    assert len(app.events(run, "failure-function")) == 1
    assert app.events(run, "completed") == []


def test_every_delivery_is_signed_and_an_unsigned_request_is_refused(
    app: WorkflowApp, qstash: QStash
) -> None:
    run = app.publish_run(qstash, "sequential", {"n": 1})
    app.completed(run)

    deliveries = app.deliveries()
    assert deliveries, "no delivery reached the app"
    assert [d for d in deliveries if not (d["signed"] and d["verified"])] == []

    before = len(app.events(kind="invoked"))
    refused = app.http.post("/wf/sequential", json={"n": 1, "tag": "unsigned"})
    assert refused.status_code >= 400
    assert len(app.events(kind="invoked")) == before


# -- kill -9 of Homing in the middle of a run ------------------------------------------------


def test_kill_9_between_sequential_steps_completes_the_run(
    app: WorkflowApp, qstash: QStash, homing: HomingProcess
) -> None:
    run = app.publish_run(qstash, "sequential", {"n": 20, "pause": 0.4})
    # "double" runs only on a delivery whose step list holds the result of "add-one": from
    # here on that result is in Homing's store, and "double" is running when Homing dies.
    app.wait_for(
        "second step", lambda: [s for s in app.events(run, "step") if s["step"] == "double"]
    )

    homing.kill()
    homing.start()

    done = app.completed(run, timeout=45)
    assert done["result"] == {"a": 21, "b": 42, "c": "result:42"}
    steps = app.steps(run)
    print(f"steps executed around kill -9: {steps}")
    assert steps.count("add-one") == 1
    # A step whose result had not reached the store may run again, at most once per crash.
    assert 1 <= steps.count("double") <= 2 and 1 <= steps.count("describe") <= 2


def test_kill_9_during_a_sleep_loses_nothing_and_repeats_no_step(
    app: WorkflowApp, qstash: QStash, homing: HomingProcess
) -> None:
    run = app.publish_run(qstash, "sleepy", {"seconds": 2})
    app.wait_for("first step", lambda: app.events(run, "step"))
    # Answered 2xx only after Homing stored the step result and the sleep.
    app.wait_for(
        "answered delivery",
        lambda: [d for d in app.deliveries(run) if d["status"] == 200],
    )

    homing.kill()
    homing.start()

    done = app.completed(run, timeout=45)
    assert done["result"]["napped"] - done["result"]["started"] >= 2.0
    assert app.steps(run) == ["before", "after-sleep", "after-sleep-until"]


# -- two `homing serve` nodes on one PostgreSQL schema -----------------------------------------


def test_two_postgres_nodes_complete_each_run_once(tmp_path: Path) -> None:
    postgres_or_skip()
    creds = Credentials()
    with two_postgres_nodes(tmp_path, creds, "workflow_py") as nodes:
        # The runs are published through the first node; either node may deliver any step.
        env = qstash_env(nodes[0].base_url, creds.token, creds.current_key, creds.next_key)
        diagnostics = lambda: "\n".join(homing_tail(n) for n in nodes)  # noqa: E731
        qstash = QStash(creds.token, base_url=nodes[0].base_url)
        with py_app(tmp_path, env, name="py-two-nodes", diagnostics=diagnostics) as app:
            runs = [app.publish_run(qstash, "sequential", {"n": n}) for n in range(3)]

            for n, run in enumerate(runs):
                assert app.completed(run, timeout=30)["result"]["a"] == n + 1

            time.sleep(0.5)  # a duplicate delivery by the other node would show up by now
            for run in runs:
                assert app.steps(run) == ["add-one", "double", "describe"]
                assert len(app.events(run, "completed")) == 1
