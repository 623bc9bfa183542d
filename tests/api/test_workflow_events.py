"""Workflow events over HTTP, with the request shapes of `@upstash/workflow`: a run waits
(`POST /v2/wait/{eventId}`), an event reaches it (`POST /v2/notify/...` or a webhook call) or
its timeout passes, and the run's next delivery carries the wait result step.

What the SDK parses is asserted byte for byte: the wait result (`out` = base64 of the event
data, absent on a timeout), the notify answer and the waiters listing.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from homing.actions import events
from homing.models import Waiter
from homing.storage.sqlite.backend import SqliteStorage
from tests.conftest import ServerFactory
from tests.support.http import api
from tests.support.receiver import Received, Receiver, Reply
from tests.support.server import RunningServer
from tests.support.waiting import eventually, wait_until
from tests.support.workflows import start_run as start
from tests.support.workflows import step_headers, wait_step
from tests.support.workflows import wait_for_event as wait

DEV_ACCOUNT = "defaultUser"  # the dev token's account (its `UserID`)
WORKFLOW_REPLY = Reply(200, b'{"ok":true}', {"Upstash-Workflow-Sdk-Version": "1"})


@pytest.fixture
def http(server: RunningServer) -> Iterator[httpx.Client]:
    with api(server) as client:
        yield client


def b64(data: bytes | str) -> str:
    return base64.b64encode(data.encode() if isinstance(data, str) else data).decode()


def last_step(req: Received) -> dict[str, Any]:
    listed: list[dict[str, str]] = json.loads(req.body)
    step: dict[str, Any] = json.loads(base64.b64decode(listed[-1]["body"]))
    return step


def started(client: httpx.Client, receiver: Receiver, run_id: str) -> str:
    """A run at the receiver's `/wf`, its first step delivered; returns the workflow URL."""
    receiver.on("/wf", lambda _: WORKFLOW_REPLY)
    url = receiver.url("/wf")
    start(client, run_id, url, '{"n":1}')
    eventually(
        lambda: [r for r in receiver.to("/wf") if r.headers["Upstash-Workflow-RunId"] == run_id]
    )
    return url


def deliveries(receiver: Receiver, run_id: str) -> list[Received]:
    return [r for r in receiver.to("/wf") if r.headers["Upstash-Workflow-RunId"] == run_id]


def metric(server: RunningServer, name: str) -> float:
    for line in httpx.get(server.base_url + "/metrics").text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    return 0.0


def test_a_waiting_run_receives_the_notified_event_data_as_its_wait_result(
    http: httpx.Client, receiver: Receiver, server: RunningServer
) -> None:
    url = started(http, receiver, "wfr_ev")

    registered = wait(http, "wfr_ev", url, "order-1")
    assert registered.status_code == 200, registered.text
    assert registered.json()["messageId"]
    [listed] = http.get("/v2/waiters/order-1").json()
    assert listed["url"] == url and listed["timeoutUrl"] == url
    assert listed["workflowRunId"] == "wfr_ev"
    assert abs(listed["deadline"] - (time.time() + 10 * 86400)) < 60  # seconds
    assert listed["headers"]["upstash-workflow-runid"] == ["wfr_ev"]
    assert "authorization" not in {h.lower() for h in listed["headers"]}
    assert listed["timeoutHeaders"]["Upstash-Workflow-Runid"] == ["wfr_ev"]

    answer = http.post("/v2/notify/order-1", content=b'{"approved":true}')
    assert answer.status_code == 200, answer.text
    [notified] = answer.json()
    assert notified["waiter"]["url"] == url and notified["error"] == ""

    second = eventually(lambda: deliveries(receiver, "wfr_ev")[1:])[0]
    assert second.message_id == notified["messageId"]
    assert last_step(second) == {
        **wait_step(),
        "waitEventId": "order-1",
        "timeout": "10d",
        "out": b64('{"approved":true}'),
        "waitTimeout": False,
    }
    assert http.get("/v2/waiters/order-1").json() == []
    # Nobody waits any more: answered with an empty array, and dropped.
    assert http.post("/v2/notify/order-1", content=b"again").json() == []
    assert metric(server, 'homing_workflow_waiters_total{event="registered"}') == 1
    assert metric(server, 'homing_workflow_waiters_total{event="notified"}') == 1
    assert metric(server, 'homing_workflow_notifies_total{result="delivered"}') == 1
    assert metric(server, 'homing_workflow_notifies_total{result="unmatched"}') == 1


def test_one_event_reaches_every_run_waiting_for_it(http: httpx.Client, receiver: Receiver) -> None:
    url = started(http, receiver, "wfr_a")
    started(http, receiver, "wfr_b")
    assert wait(http, "wfr_a", url, "shared").status_code == 200
    assert wait(http, "wfr_b", url, "shared", step=wait_step(2)).status_code == 200

    notified = http.post("/v2/notify/shared", content=b"go").json()

    assert sorted(n["waiter"]["workflowRunId"] for n in notified) == ["wfr_a", "wfr_b"]
    for run_id in ("wfr_a", "wfr_b"):
        result = last_step(eventually(lambda r=run_id: deliveries(receiver, r)[1:])[0])
        assert result["out"] == b64("go")


def test_a_run_scoped_notify_before_the_wait_is_kept_for_it_an_account_wide_one_is_dropped(
    http: httpx.Client, receiver: Receiver, server: RunningServer
) -> None:
    url = started(http, receiver, "wfr_early")

    assert http.post("/v2/notify/early", content=b"too soon").json() == []
    assert http.post("/v2/notify/wfr_early/early", content=b"kept").json() == []
    assert wait(http, "wfr_early", url, "early").status_code == 200

    result = last_step(eventually(lambda: deliveries(receiver, "wfr_early")[1:])[0])
    assert result["out"] == b64("kept")
    assert metric(server, 'homing_workflow_notifies_total{result="kept"}') == 1
    assert metric(server, 'homing_workflow_notifies_total{result="unmatched"}') == 1


def test_a_waiter_whose_timeout_passes_gets_the_timed_out_result_once(
    manual_server: RunningServer, receiver: Receiver
) -> None:
    with api(manual_server) as client:
        url = started(client, receiver, "wfr_late")
        assert wait(client, "wfr_late", url, "never", timeout="2s").status_code == 200
        manual_server.advance(1_999)
        assert client.get("/v2/waiters/never").json() != []

        manual_server.advance(1)
        result = last_step(eventually(lambda: deliveries(receiver, "wfr_late")[1:])[0])
        # A notify racing the timeout finds nobody, or repeats the result, which the run
        # accepts once: either way the run receives one result.
        client.post("/v2/notify/never", content=b"late")

        assert result == {
            **wait_step(),
            "waitEventId": "never",
            "timeout": "2s",
            "waitTimeout": True,
        }
        assert "out" not in result
        assert client.get("/v2/waiters/never").json() == []
        steps = client.get("/v2/workflows/runs/wfr_late").json()
        assert len(steps) == 2
        assert metric(manual_server, 'homing_workflow_waiters_total{event="timed_out"}') == 1


def test_a_webhook_call_needs_no_token_and_becomes_the_runs_event(
    http: httpx.Client, receiver: Receiver, server: RunningServer
) -> None:
    url = started(http, receiver, "wfr_hook")
    hook = "/v2/workflows/hooks/defaultUser/wfr_hook/evt_hook1?source=test"
    anonymous = httpx.Client(base_url=server.base_url)

    called = anonymous.post(hook, content=b'{"paid":1}', headers={"X-Test": "yes"})
    assert called.status_code == 200, called.text
    assert (
        wait(http, "wfr_hook", url, "evt_hook1", step=wait_step(1, "WaitForWebhook")).status_code
        == 200
    )

    result = last_step(eventually(lambda: deliveries(receiver, "wfr_hook")[1:])[0])
    event = json.loads(base64.b64decode(result["out"]))
    assert event["method"] == "POST"
    assert event["header"]["X-Test"] == ["yes"]
    assert base64.b64decode(event["body"]) == b'{"paid":1}'
    # The SDK rebuilds the request from these: it must be the URL the caller used.
    assert f"{event['proto']}://{event['host']}{event['url']}" == server.base_url + hook
    assert anonymous.get("/v2/workflows/hooks/otherUser/wfr_hook/e").status_code == 404
    assert anonymous.get("/v2/workflows/hooks/defaultUser/wfr_none/e").status_code == 404


def test_bad_waits_and_notifies_are_refused_with_a_clear_400(
    http: httpx.Client, receiver: Receiver
) -> None:
    url = started(http, receiver, "wfr_bad")
    headers = step_headers("wfr_bad", url, init=False)

    not_json = http.post("/v2/wait/e", headers=headers, content=b"{")
    bad_timeout = wait(http, "wfr_bad", url, "e", timeout="soon")
    no_step = http.post("/v2/wait/e", headers=headers, content=json.dumps({"url": url}))
    unknown_run = wait(http, "wfr_unknown", url, "e")
    long_event = http.post("/v2/notify/" + "e" * 600, content=b"x")

    for answer in (not_json, bad_timeout, no_step, unknown_run, long_event):
        assert answer.status_code == 400, answer.text
        assert answer.json()["error"]
    assert "soon" in bad_timeout.json()["error"]
    assert "wfr_unknown" in unknown_run.json()["error"]
    assert http.get("/v2/waiters/e").json() == []


class WaiterTimeoutsFailing(SqliteStorage):
    """The real SQLite store, with one fault the test switches on and off: finding due waiters
    (the waiter timer's read) raises, as a broken database connection would."""

    failing = False

    async def due_waiters(self, *, now_ms: int, limit: int) -> list[Waiter]:
        if self.failing:
            raise ConnectionError("connection reset by peer")
        return await super().due_waiters(now_ms=now_ms, limit=limit)


@pytest.mark.timeout(30)
def test_failing_waiter_timeouts_are_logged_counted_and_make_the_node_unready_until_they_recover(
    start_server: ServerFactory, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = WaiterTimeoutsFailing(str(tmp_path / "faulty.db"))
    server = start_server(storage=store)
    ready = lambda: httpx.get(server.base_url + "/readyz")  # noqa: E731

    store.failing = True
    assert wait_until(lambda: ready().status_code == 503, timeout=6)
    assert ready().json()["problems"]["waiters"] == (
        "waiter timeouts failing: connection reset by peer"
    )
    assert metric(server, 'homing_task_failures_total{task="waiters"}') >= 1
    failed = [r for r in caplog.records if getattr(r, "event", None) == "workflow.waiters_failed"]
    assert failed and failed[0].levelname == "ERROR"

    store.failing = False
    assert wait_until(lambda: ready().status_code == 200, timeout=6)


def test_each_waiter_event_is_a_json_log_event(
    http: httpx.Client, receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="homing")
    url = started(http, receiver, "wfr_logged")
    wait(http, "wfr_logged", url, "logged")
    http.post("/v2/notify/logged", content=b"x")
    http.post("/v2/notify/logged", content=b"x")
    http.post("/v2/notify/wfr_logged/later", content=b"x")

    logged = [getattr(r, "event", None) for r in caplog.records]
    for name in (
        "workflow.waiter_registered",
        "workflow.waiter_notified",
        "workflow.notify_delivered",
        "workflow.notify_unmatched",
        "workflow.notify_kept",
    ):
        assert name in logged, name


def test_with_keep_unmatched_events_an_early_account_wide_notify_reaches_the_first_wait(
    start_server: ServerFactory, receiver: Receiver
) -> None:
    server = start_server(keep_unmatched_events_ms=60_000)
    with api(server) as client:
        url = started(client, receiver, "wfr_kept")
        assert client.post("/v2/notify/early-bird", content=b"first").json() == []

        assert wait(client, "wfr_kept", url, "early-bird").status_code == 200

        result = last_step(eventually(lambda: deliveries(receiver, "wfr_kept")[1:])[0])
        assert result["out"] == b64("first")
        assert metric(server, 'homing_workflow_notifies_total{result="kept"}') == 1


def test_a_notify_and_a_timeout_racing_resolve_a_waiter_once(
    http: httpx.Client, receiver: Receiver, server: RunningServer
) -> None:
    url = started(http, receiver, "wfr_race")
    assert wait(http, "wfr_race", url, "raced").status_code == 200
    svc = server.services
    [waiter] = server.run(lambda: svc.storage.list_waiters(DEV_ACCOUNT, "raced", limit=5))

    async def race() -> list[Any]:
        return list(
            await asyncio.gather(
                events.resolve(svc, waiter, data=b"event"),
                events.resolve(svc, waiter, data=None),
                events.resolve(svc, waiter, data=b"event"),
            )
        )

    outcomes = server.run(race)

    assert sum(o is not None for o in outcomes) == 1
    results = http.get("/v2/workflows/runs/wfr_race").json()[1:]
    assert len(results) == 1  # the run took one wait result
    assert http.get("/v2/waiters/raced").json() == []
