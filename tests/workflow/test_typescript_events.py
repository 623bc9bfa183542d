"""`context.waitForEvent`, `client.notify` and webhooks of the published `@upstash/workflow`
run unchanged on Homing (the app: tests/workflow/ts/app.ts; one `homing dev` process and one
app for the module).

What a user sees: a run waiting for an event continues with the data `client.notify` sent; its
timeout passing continues it with `timeout: true`; one notify reaches every run waiting for the
event; a notify before the wait is dropped when account-wide (as the hosted service does) and
kept for the run when run-scoped; a call to a `createWebhook` URL continues the run waiting for
it with that request. Waiters and kept events survive kill -9 of Homing; on two PostgreSQL
nodes a run started through one is notified through the other, and a timeout fires once.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.multinode.support import Credentials
from tests.reliability.support import HomingProcess
from tests.support.server import postgres_or_skip
from tests.workflow.support import (
    WorkflowApp,
    homing_tail,
    qstash_env,
    require_ts_app,
    ts_app,
    two_postgres_nodes,
)


@pytest.fixture(scope="module")
def app(homing: HomingProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[WorkflowApp]:
    tmp = tmp_path_factory.mktemp("app-ts-events")
    env = qstash_env(homing.base_url)
    with ts_app(tmp, env, name="ts-events", diagnostics=lambda: homing_tail(homing)) as found:
        yield found


def notify(app: WorkflowApp, event_id: str, data: Any, run_id: str | None = None) -> list[Any]:
    """`client.notify` in the app; returns the SDK's answer (the waiters it reached)."""
    answer = app.http.post(
        "/admin/notify", json={"eventId": event_id, "eventData": data, "workflowRunId": run_id}
    )
    assert answer.status_code == 200, answer.text
    notified: list[Any] = answer.json()
    return notified


def waiters(app: WorkflowApp, event_id: str) -> list[Any]:
    """`client.getWaiters` in the app."""
    found: list[Any] = app.http.post("/admin/waiters", json={"eventId": event_id}).json()
    return found


def event() -> str:
    return "order-" + secrets.token_hex(4)


def test_a_run_waiting_for_an_event_continues_with_the_data_client_notify_sent(
    app: WorkflowApp,
) -> None:
    event_id = event()
    run = app.trigger("event-waiter", {"eventId": event_id, "timeout": "30s"})
    [waiter] = app.wait_for("the run's waiter", lambda: waiters(app, event_id))
    assert waiter["deadline"] > 0 and waiter["url"] == app.url("event-waiter")

    [notified] = notify(app, event_id, {"approved": True})

    assert notified["messageId"] and notified["waiter"]["url"] == app.url("event-waiter")
    done = app.completed(run)
    assert done["result"] == {"eventData": {"approved": True}, "timedOut": False}
    assert app.steps(run) == ["before-wait", "after-wait"]
    assert waiters(app, event_id) == []


def test_a_run_whose_wait_times_out_continues_with_timeout_true(app: WorkflowApp) -> None:
    run = app.trigger("event-waiter", {"eventId": event(), "timeout": "1s"})

    done = app.completed(run, timeout=15)

    assert done["result"] == {"eventData": None, "timedOut": True}
    assert app.steps(run) == ["before-wait", "after-wait"]


def test_one_notify_reaches_two_runs_waiting_for_the_same_event(app: WorkflowApp) -> None:
    event_id = event()
    runs = [app.trigger("event-waiter", {"eventId": event_id, "timeout": "30s"}) for _ in "ab"]
    app.wait_for("both waiters", lambda: waiters(app, event_id), count=2)

    notified = notify(app, event_id, "shared")

    assert len(notified) == 2
    for run in runs:
        assert app.completed(run)["result"] == {"eventData": "shared", "timedOut": False}


def test_a_notify_before_the_wait_is_dropped_account_wide_and_kept_when_run_scoped(
    app: WorkflowApp,
) -> None:
    dropped, kept = event(), event()
    assert notify(app, dropped, "early") == []
    late = app.trigger("event-waiter", {"eventId": dropped, "timeout": "1s"})
    # The run's first step takes 1.5 s: the run-scoped notify arrives before it waits.
    run = app.trigger("event-waiter", {"eventId": kept, "timeout": "30s", "pauseMs": 1500})
    assert notify(app, kept, {"early": True}, run_id=run) == []
    assert waiters(app, kept) == []

    assert app.completed(late)["result"] == {"eventData": None, "timedOut": True}
    assert app.completed(run)["result"] == {"eventData": {"early": True}, "timedOut": False}


def test_a_call_to_a_webhook_url_continues_the_run_waiting_for_it(app: WorkflowApp) -> None:
    run = app.trigger("webhook")
    [hook] = app.wait_for("the webhook URL", lambda: app.events(run, "webhook"))

    # Called like a third party would: no token.
    answer = httpx.post(hook["url"], content=b"paid", headers={"X-Test": "from-test"})

    assert answer.status_code == 200, answer.text
    assert app.completed(run)["result"] == {"timeout": False}
    [call] = app.events(run, "webhook-call")
    assert call["seen"] == {
        "method": "POST",
        "url": hook["url"],
        "body": "paid",
        "test": "from-test",
    }
    assert call["sameUrl"] is True


def test_a_waiter_and_a_kept_event_survive_kill_9_of_homing(
    app: WorkflowApp, homing: HomingProcess
) -> None:
    waiting_id, kept_id = event(), event()
    waiting = app.trigger("event-waiter", {"eventId": waiting_id, "timeout": "60s"})
    app.wait_for("the run's waiter", lambda: waiters(app, waiting_id))
    kept = app.trigger("event-waiter", {"eventId": kept_id, "timeout": "60s", "pauseMs": 2500})
    assert notify(app, kept_id, "kept across a crash", run_id=kept) == []

    homing.kill()
    homing.start()

    assert len(notify(app, waiting_id, "after the crash")) == 1
    assert app.completed(waiting)["result"] == {"eventData": "after the crash", "timedOut": False}
    assert app.completed(kept)["result"] == {"eventData": "kept across a crash", "timedOut": False}


def test_on_two_postgres_nodes_a_run_started_on_one_is_notified_through_the_other(
    tmp_path: Path,
) -> None:
    postgres_or_skip()
    require_ts_app()
    creds = Credentials()
    with two_postgres_nodes(tmp_path, creds, "events") as nodes:
        # The app (and so the run and its wait) talks to the first node only.
        env = qstash_env(nodes[0].base_url, creds.token, creds.current_key, creds.next_key)
        diagnostics = lambda: "\n".join(homing_tail(n) for n in nodes)  # noqa: E731
        with ts_app(tmp_path, env, name="ts-events-two-nodes", diagnostics=diagnostics) as app:
            event_id, timing_out = event(), event()
            run = app.trigger("event-waiter", {"eventId": event_id, "timeout": "60s"})
            late = app.trigger("event-waiter", {"eventId": timing_out, "timeout": "1s"})
            app.wait_for("the run's waiter", lambda: waiters(app, event_id))

            other = httpx.Client(
                base_url=nodes[1].base_url, headers={"Authorization": f"Bearer {creds.token}"}
            )
            answer = other.post(f"/v2/notify/{event_id}", content=b'"through node 1"')

            assert answer.status_code == 200 and len(answer.json()) == 1, answer.text
            done = app.completed(run, timeout=30)
            assert done["result"] == {"eventData": "through node 1", "timedOut": False}
            assert app.completed(late, timeout=30)["result"]["timedOut"] is True
            time.sleep(0.5)  # a second result by the other node would show up by now
            assert app.steps(run) == ["before-wait", "after-wait"]
            assert app.steps(late) == ["before-wait", "after-wait"]
