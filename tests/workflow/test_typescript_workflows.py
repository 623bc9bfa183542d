"""Upstash Workflow apps in TypeScript run unchanged on Homing.

The app (tests/workflow/ts/app.ts) is Hono on Node with the published `@upstash/workflow`; it
talks to Homing only through the SDK's environment variables, verifies every delivery with the
signing keys, and starts runs with the SDK's `client.trigger`. One Homing (`homing dev`, a real
process on a loopback port) and one app serve the whole module; the kill tests kill and restart
that same Homing on its data dir, the dev-mode test adds an app in the SDK's development mode,
and the PostgreSQL test runs its own two `homing serve` nodes.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.multinode.support import Credentials
from tests.reliability.support import HomingProcess
from tests.support.receiver import Receiver
from tests.support.server import postgres_or_skip
from tests.support.waiting import eventually
from tests.workflow.support import (
    EXAMPLE_DIR,
    THIRD_PARTY_PATH,
    WorkflowApp,
    dev_mode_env,
    homing_tail,
    qstash_env,
    require_ts_app,
    running_app,
    ts_app,
    two_postgres_nodes,
)


@pytest.fixture(scope="module")
def app(
    homing: HomingProcess, third_party: Receiver, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[WorkflowApp]:
    tmp = tmp_path_factory.mktemp("app-ts")
    env = qstash_env(homing.base_url) | {"THIRD_PARTY_URL": third_party.url(THIRD_PARTY_PATH)}
    with ts_app(tmp, env, diagnostics=lambda: homing_tail(homing)) as found:
        yield found


def test_three_sequential_steps_pass_their_values_and_the_run_completes(app: WorkflowApp) -> None:
    run = app.trigger("sequential", {"n": 4})

    done = app.completed(run)

    assert done["result"] == {"a": 5, "b": 10, "c": "result:10"}
    steps = app.events(run, "step")
    assert [(s["step"], s["input"]) for s in steps] == [
        ("add-one", 4),
        ("double", 5),
        ("describe", 10),
    ]


def test_parallel_steps_each_run_once_and_their_results_meet(app: WorkflowApp) -> None:
    run = app.trigger("parallel", {"n": 1})

    done = app.completed(run)

    assert done["result"] == {"parts": [2, 3, 4], "total": 9}
    assert sorted(app.steps(run)) == ["p1", "p2", "p3", "sum"]
    [total] = app.events(run, "step")[-1:]
    assert total["step"] == "sum" and total["input"] == [2, 3, 4]


def test_sleep_and_sleep_until_wait_before_the_next_step(app: WorkflowApp) -> None:
    run = app.trigger("sleepy", {"seconds": 1})

    done = app.completed(run, timeout=20)

    result = done["result"]
    assert result["napped"] - result["started"] >= 1000
    assert result["woke"] >= result["until"] * 1000 >= result["napped"] + 1000
    assert app.steps(run) == ["before", "after-sleep", "after-sleep-until"]


def test_call_reaches_the_endpoint_and_its_response_comes_back(
    app: WorkflowApp, third_party: Receiver
) -> None:
    run = app.trigger("caller", {"word": "hello"})

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
    app: WorkflowApp,
) -> None:
    run = app.trigger("failing", retries=0)

    [failure] = app.wait_for("failure function", lambda: app.events(run, "failure-function"))

    assert f"boom in {run}" in failure["failResponse"]
    assert failure["failStatus"] == 500
    # No retry of the step, no second failure call: give a stray one the time to show up.
    time.sleep(1.0)
    assert app.steps(run) == ["explode"]
    assert len(app.events(run, "failure-function")) == 1
    assert app.events(run, "completed") == []


def test_a_failure_url_gets_the_failure_of_the_run_once(
    app: WorkflowApp, third_party: Receiver
) -> None:
    run = app.trigger("failing", {"order": 7}, retries=0, failure_url=third_party.url("/failed"))

    [call] = third_party.wait_for(1, "/failed")

    failure = json.loads(call.body)
    assert failure["workflowRunId"] == run
    assert failure["status"] == 500
    assert f"boom in {run}" in json.loads(base64.b64decode(failure["body"]))["message"]
    assert json.loads(base64.b64decode(failure["sourceBody"])) == {"order": 7}
    assert call.headers["Upstash-Workflow-Is-Failure"] == "true"
    time.sleep(1.0)  # no second call, and the app's own failure function is not involved
    assert len(third_party.to("/failed")) == 1
    assert app.events(run, "failure-function") == []
    assert app.steps(run) == ["explode"]


def test_a_canceled_sleeping_run_never_runs_its_later_steps(app: WorkflowApp) -> None:
    run = app.trigger("cancelable", {"seconds": 1})
    [first] = app.wait_for("first step", lambda: app.events(run, "step"))

    assert app.cancel([run]) == {"cancelled": 1}

    # The sleep ends 1 s after the first step; wait past it (plus a delivery's margin).
    remaining = first["at"] / 1000 + 2.5 - time.time()
    time.sleep(max(0.0, remaining))
    assert app.steps(run) == ["first"]
    assert app.events(run, "completed") == []
    assert app.cancel([run]) == {"cancelled": 0}


def test_every_delivery_is_signed_and_an_unsigned_request_is_refused(app: WorkflowApp) -> None:
    run = app.trigger("sequential", {"n": 1})
    app.completed(run)

    deliveries = app.deliveries()
    assert deliveries, "no delivery reached the app"
    unverified = [d for d in deliveries if not (d["signed"] and d["verified"])]
    assert unverified == []

    before = len(app.events(kind="step"))
    refused = app.http.post("/wf/sequential", json={"n": 1})
    assert refused.status_code >= 400
    assert "Failed to verify" in refused.text
    assert len(app.events(kind="step")) == before


def test_the_workflow_hono_example_completes_its_onboarding_run(
    homing: HomingProcess, tmp_path: Path
) -> None:
    """examples/workflow-hono, started with the README's command and variables."""
    require_ts_app(EXAMPLE_DIR)
    env = qstash_env(homing.base_url) | {"ONBOARDING_PAUSE_SECONDS": "1"}
    with running_app("workflow-hono", ["npm", "start"], cwd=EXAMPLE_DIR, tmp=tmp_path,
                     env=env) as example:  # fmt: skip
        started = example.http.post("/api/signup", json={"email": "ada@example.com"})
        assert started.status_code == 202, started.text
        run = started.json()["workflowRunId"]

        def finished() -> dict[str, Any] | None:
            answer: dict[str, Any] = example.http.get(f"/api/runs/{run}").json()
            return answer if answer["done"] else None

        outcome = eventually(finished, timeout=20)

        assert outcome["result"] == {"user": "user-ada@example.com", "mailStatus": 202}


# -- kill -9 of Homing in the middle of a run ------------------------------------------------


def restart_after_kill(homing: HomingProcess) -> None:
    homing.kill()
    homing.start()


def test_kill_9_between_sequential_steps_completes_the_run(
    app: WorkflowApp, homing: HomingProcess
) -> None:
    run = app.trigger("sequential", {"n": 20, "pauseMs": 400})
    # "double" runs only on a delivery whose step list holds the result of "add-one": from
    # here on that result is in Homing's store, and "double" is running when Homing dies.
    app.wait_for(
        "second step", lambda: [s for s in app.events(run, "step") if s["step"] == "double"]
    )

    restart_after_kill(homing)

    done = app.completed(run, timeout=45)
    assert done["result"] == {"a": 21, "b": 42, "c": "result:42"}
    steps = app.steps(run)
    print(f"steps executed around kill -9: {steps}")
    assert steps.count("add-one") == 1
    # A step whose result had not reached the store may run again, at most once per crash.
    assert 1 <= steps.count("double") <= 2 and 1 <= steps.count("describe") <= 2


def test_kill_9_during_a_sleep_loses_nothing_and_repeats_no_step(
    app: WorkflowApp, homing: HomingProcess
) -> None:
    run = app.trigger("sleepy", {"seconds": 2})
    app.wait_for("first step", lambda: app.events(run, "step"))
    # The delivery that ran "before" was answered 2xx only after Homing stored the step result
    # and the sleep: from here on nothing of the run exists outside Homing's store.
    app.wait_for(
        "answered delivery", lambda: [d for d in app.deliveries(run) if d["status"] == 200]
    )

    restart_after_kill(homing)

    done = app.completed(run, timeout=45)
    assert done["result"]["napped"] - done["result"]["started"] >= 2000
    assert app.steps(run) == ["before", "after-sleep", "after-sleep-until"]


# -- the SDK's development mode ----------------------------------------------------------------


def test_sdk_dev_mode_runs_a_workflow_and_one_waiting_for_an_event(
    homing: HomingProcess, tmp_path: Path
) -> None:
    """`QSTASH_DEV=true` only: the SDK finds Homing (dev token and keys) by itself."""
    with ts_app(tmp_path, dev_mode_env(homing.base_url), name="ts-dev-mode") as dev:
        run = dev.trigger("sequential", {"n": 1})
        assert dev.completed(run)["result"] == {"a": 2, "b": 4, "c": "result:4"}
        assert all(d["verified"] for d in dev.deliveries())

        waiting = dev.trigger("waiter")
        event_id = f"event-{waiting}"
        dev.wait_for(
            "the run's waiter",
            lambda: dev.http.post("/admin/waiters", json={"eventId": event_id}).json(),
        )
        notified = dev.http.post("/admin/notify", json={"eventId": event_id, "eventData": "go"})

        assert len(notified.json()) == 1, notified.text
        dev.completed(waiting)
        assert dev.steps(waiting) == ["before-wait", "after-wait"]
        assert dev.events(waiting, "failure-function") == []


# -- two `homing serve` nodes on one PostgreSQL schema -----------------------------------------


def test_two_postgres_nodes_complete_each_run_once(tmp_path: Path) -> None:
    postgres_or_skip()
    require_ts_app()
    creds = Credentials()
    with two_postgres_nodes(tmp_path, creds, "workflow") as nodes:
        # The app publishes through the first node; either node may deliver any step.
        env = qstash_env(nodes[0].base_url, creds.token, creds.current_key, creds.next_key)
        diagnostics = lambda: "\n".join(homing_tail(n) for n in nodes)  # noqa: E731
        with ts_app(tmp_path, env, name="ts-two-nodes", diagnostics=diagnostics) as app:
            sequential = [app.trigger("sequential", {"n": n}) for n in range(3)]
            parallel = [app.trigger("parallel", {"n": n}) for n in range(2)]

            for n, run in enumerate(sequential):
                assert app.completed(run, timeout=30)["result"]["a"] == n + 1
            for n, run in enumerate(parallel):
                assert app.completed(run, timeout=30)["result"]["total"] == 3 * n + 6

            time.sleep(0.5)  # a duplicate delivery by the other node would show up by now
            for run in sequential:
                assert app.steps(run) == ["add-one", "double", "describe"]
                assert len(app.events(run, "completed")) == 1
            for run in parallel:
                assert sorted(app.steps(run)) == ["p1", "p2", "p3", "sum"]
                assert len(app.events(run, "completed")) == 1
            served = {d["messageId"] for d in app.deliveries()}
            print(f"two nodes: {len(served)} deliveries for {len(sequential) + len(parallel)} runs")
