"""Workflow events on a run's console page: the events the run waits for (`context.waitForEvent`,
registered with the JS SDK's request shape), notified from the page with the CSRF token (the
run-scoped notify, as `POST /v2/notify/{runId}/{eventId}`), and each wait's outcome among the
steps."""

from __future__ import annotations

import base64
import json
import re

import pytest

from tests.conftest import ServerFactory
from tests.console.conftest import csrf_of, sign_in_http
from tests.console.support import api, create_read_only_token, eventually
from tests.support.receiver import Receiver, Reply
from tests.support.server import RunningServer
from tests.support.workflows import start_run, wait_for_event

WORKFLOW_REPLY = Reply(200, b'{"ok":true}', {"Upstash-Workflow-Sdk-Version": "1"})


@pytest.fixture
def serve(start_server: ServerFactory) -> RunningServer:
    return start_server(mode="serve")


def waiting_run(serve: RunningServer, receiver: Receiver, run_id: str, event_id: str) -> str:
    """A run whose init was delivered and that now waits for `event_id`; its URL."""
    receiver.on("/wf", lambda _: WORKFLOW_REPLY)
    client, url = api(serve), receiver.url("/wf")
    start_run(client, run_id, url, '{"n":1}')
    receiver.wait_for(1, "/wf")
    registered = wait_for_event(client, run_id, url, event_id, timeout="1h")
    assert registered.status_code == 200, registered.text
    return url


def test_a_waiting_event_shows_on_the_run_page_and_the_console_notify_resolves_it(
    serve: RunningServer, receiver: Receiver
) -> None:
    waiting_run(serve, receiver, "wfr_wait", "approval-7")
    console = sign_in_http(serve)

    page = console.get("/console/runs/wfr_wait").text
    row = page[page.index('data-waiter="approval-7"') :]
    row = row[: row.index("</tr>")]
    assert re.search(r"\(in (59 min|1 h)\)", row)  # the deadline, an hour away
    assert '<td class="mono">1h</td>' in row  # the timeout as the SDK gave it
    assert 'name="eventId" value="approval-7"' in page  # the notify form, prefilled
    target = "/console/runs/wfr_wait/notify"
    form = {"eventId": "approval-7", "data": '{"approved":true}'}
    assert console.post(target, data=form).status_code == 403  # no CSRF token
    assert len(receiver.to("/wf")) == 1

    done = console.post(target, data={**form, "_csrf": csrf_of(console, "/console/runs/wfr_wait")})

    assert done.status_code == 303 and done.headers["location"] == "/console/runs/wfr_wait"
    shown = console.get("/console/runs/wfr_wait").text
    assert "Event approval-7 notified" in shown and 'data-waiter="approval-7"' not in shown
    [_, resumed] = receiver.wait_for(2, "/wf")
    last = json.loads(base64.b64decode(json.loads(resumed.body)[-1]["body"]))
    assert (last["waitEventId"], last["waitTimeout"]) == ("approval-7", False)
    assert base64.b64decode(last["out"]) == b'{"approved":true}'
    assert api(serve).get("/v2/waiters/approval-7").json() == []
    # The wait's outcome is a step of the run.
    eventually(
        lambda: (
            'data-wait="approval-7">event approval-7: notified<'
            in (console.get("/console/runs/wfr_wait").text)
        )
    )


def test_an_event_notified_before_the_run_waits_is_kept_for_its_wait_and_read_only_is_refused(
    serve: RunningServer, receiver: Receiver
) -> None:
    receiver.on("/wf", lambda _: WORKFLOW_REPLY)
    client, url = api(serve), receiver.url("/wf")
    start_run(client, "wfr_early", url, "{}")
    receiver.wait_for(1, "/wf")
    console = sign_in_http(serve)
    page = console.get("/console/runs/wfr_early").text
    assert "waits for no event now" in page and 'name="eventId" value=""' in page
    token = csrf_of(console, "/console/runs/wfr_early")

    create_read_only_token(serve)
    viewer = sign_in_http(serve, "hmg_read_only_token")
    refused = viewer.post(
        "/console/runs/wfr_early/notify",
        data={"eventId": "paid", "data": "x", "_csrf": csrf_of(viewer, "/console/runs/wfr_early")},
    )
    assert refused.status_code == 403 and "read-only" in refused.text

    kept = console.post(
        "/console/runs/wfr_early/notify", data={"eventId": "paid", "data": "42", "_csrf": token}
    )
    assert "kept for its next wait" in console.get(kept.headers["location"]).text
    assert wait_for_event(client, "wfr_early", url, "paid").status_code == 200
    [_, resumed] = receiver.wait_for(2, "/wf")
    last = json.loads(base64.b64decode(json.loads(resumed.body)[-1]["body"]))
    assert base64.b64decode(last["out"]) == b"42"

    client.request("DELETE", "/v2/workflows/runs/wfr_early?cancel=true")
    ended = console.post(
        "/console/runs/wfr_early/notify", data={"eventId": "paid", "data": "1", "_csrf": token}
    )
    assert "The run has ended" in console.get(ended.headers["location"]).text
