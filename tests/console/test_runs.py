"""The workflow runs pages over HTTP: runs started the way the Workflow SDKs start them, listed,
searched, opened with their steps (as text, secrets masked) and canceled from the console."""

from __future__ import annotations

import re

import pytest

from tests.conftest import ServerFactory
from tests.console.conftest import csrf_of, sign_in_http
from tests.console.support import api, create_read_only_token, eventually
from tests.support.receiver import Receiver, Reply
from tests.support.server import RunningServer
from tests.support.workflows import publish_step, start_run, step_headers, step_message_id

WORKFLOW_REPLY = Reply(200, b'{"ok":true}', {"Upstash-Workflow-Sdk-Version": "1"})
LATER = {"upstash-delay": "1h"}  # the init waits: the run stays started, nothing is delivered


@pytest.fixture
def serve(start_server: ServerFactory) -> RunningServer:
    return start_server(mode="serve")


def _listed(page: str) -> list[str]:
    """The run ids of a runs page, in order."""
    return re.findall(r'href="/console/runs/([^"]+)"', page)


def test_runs_are_listed_newest_first_and_searched_by_state_url_and_id(
    serve: RunningServer, receiver: Receiver
) -> None:
    client, console = api(serve), sign_in_http(serve)
    start_run(client, "wfr_orders", receiver.url("/wf/orders"), "{}", **LATER)
    start_run(client, "wfr_mails", receiver.url("/wf/mails"), "{}", **LATER)
    ended = client.request("DELETE", "/v2/workflows/runs/wfr_mails?cancel=false", content=b"1")
    assert ended.status_code == 200

    page = console.get("/console/runs")
    assert page.status_code == 200
    assert _listed(page.text) == ["wfr_mails", "wfr_orders"]
    assert "RUN_SUCCESS" in page.text and "RUN_STARTED" in page.text
    assert receiver.url("/wf/orders") in page.text

    def search(**params: str) -> list[str]:
        return _listed(console.get("/console/runs", params=params).text)

    assert search(state="RUN_STARTED") == ["wfr_orders"]
    assert search(state="RUN_SUCCESS") == ["wfr_mails"]
    assert search(workflowUrl=receiver.url("/wf/m")) == ["wfr_mails"]  # a prefix
    assert search(workflowRunId="wfr_orders") == ["wfr_orders"]
    assert search(state="RUN_CANCELED") == []
    refused = console.get("/console/runs", params={"state": "DONE"})
    assert refused.status_code == 200 and "unknown workflow run state" in refused.text
    assert _listed(refused.text) == []


def test_runs_are_paged_with_the_store_cursor(serve: RunningServer, receiver: Receiver) -> None:
    client, console = api(serve), sign_in_http(serve)
    url = receiver.url("/wf")
    inits = [
        {
            "destination": url,
            "headers": step_headers(f"wfr_{n:02d}", url, init=True, **LATER),
            "body": "{}",
        }
        for n in range(51)
    ]
    assert client.post("/v2/batch", json=inits).status_code == 201
    first = console.get("/console/runs").text
    assert len(_listed(first)) == 50
    older = re.search(r'href="(\?cursor=[^"]+)" rel="next"', first)
    assert older, "no link to the older page"
    second = console.get("/console/runs" + older.group(1).replace("&amp;", "&")).text
    assert len(_listed(second)) == 1
    assert set(_listed(first)) | set(_listed(second)) == {f"wfr_{n:02d}" for n in range(51)}
    assert 'rel="next"' not in second


def test_a_run_page_shows_its_steps_as_text_and_masks_its_secrets(
    serve: RunningServer, receiver: Receiver
) -> None:
    receiver.on("/wf", lambda _: WORKFLOW_REPLY)
    client, console = api(serve), sign_in_http(serve)
    url = receiver.url("/wf")
    payload = '{"note":"<script>alert(1)</script>"}'
    init_id = start_run(
        client,
        "wfr_shop",
        url,
        payload,
        **{
            "upstash-forward-authorization": "Bearer sk_live_51HxSecretValue",
            "upstash-forward-x-tenant": "acme",
        },
    )
    receiver.wait_for(1, "/wf")
    step = {"stepId": 1, "stepName": "charge card", "stepType": "Run", "out": '"<b>paid</b>"'}
    step_id = step_message_id(publish_step(client, "wfr_shop", url, step))

    page = console.get("/console/runs/wfr_shop")
    assert page.status_code == 200
    text = page.text
    assert "RUN_STARTED" in text and "Cancel run" in text
    # Steps in order, each linking to its message.
    assert text.index(f'href="/console/messages/{init_id}"') < text.index(
        f'href="/console/messages/{step_id}"'
    )
    assert "charge card" in text and "step 1 · Run" in text
    # Bodies are text: escaped, never markup.
    assert "<script>" not in text and "<b>paid" not in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert "&lt;b&gt;paid&lt;/b&gt;" in text
    # Run headers: credentials masked, the rest as sent.
    assert "sk_live_51HxSecretValue" not in text
    assert "Bearer •••" in text and "acme" in text
    # A message of the run links back to it.
    message = console.get(f"/console/messages/{step_id}").text
    assert 'href="/console/runs/wfr_shop"' in message

    assert (
        client.request("DELETE", "/v2/workflows/runs/wfr_shop", content=b'"ok"').status_code == 200
    )
    done = console.get("/console/runs/wfr_shop").text
    assert "RUN_SUCCESS" in done and "&#34;ok&#34;" in done and "Cancel run" not in done
    missing = console.get("/console/runs/wfr_nope")
    assert missing.status_code == 404 and "was not found" in missing.text


def test_cancel_needs_the_csrf_token_and_cancels_the_run_and_its_pending_steps(
    serve: RunningServer, receiver: Receiver
) -> None:
    client, console = api(serve), sign_in_http(serve)
    init_id = start_run(client, "wfr_cancel", receiver.url("/wf"), "{}", **LATER)
    target = "/console/runs/wfr_cancel/cancel"

    assert console.post(target, data={"confirm": "yes"}).status_code == 403
    forged = console.post(target, data={"_csrf": "forged", "confirm": "yes"})
    assert forged.status_code == 403
    assert client.get("/v2/workflows/runs/wfr_cancel").status_code == 200  # still running

    token = csrf_of(console, "/console/runs/wfr_cancel")
    asked = console.post(target, data={"_csrf": token})
    assert asked.status_code == 200 and "Cancel workflow run wfr_cancel?" in asked.text
    assert client.get("/v2/workflows/runs/wfr_cancel").status_code == 200  # not yet

    done = console.post(target, data={"_csrf": token, "confirm": "yes"})
    assert done.status_code == 303 and done.headers["location"] == "/console/runs/wfr_cancel"
    shown = console.get(done.headers["location"]).text
    assert "Run canceled." in shown and "RUN_CANCELED" in shown and "Cancel run" not in shown
    assert client.get("/v2/workflows/runs/wfr_cancel").status_code == 404  # ended
    init = console.get(f"/console/messages/{init_id}").text  # its waiting init: canceled too
    assert re.search(r"<h1[^>]*>.*CANCELED", init)
    assert _listed(console.get("/console/runs?state=RUN_CANCELED").text) == ["wfr_cancel"]

    again = console.post(target, data={"_csrf": token, "confirm": "yes"})
    assert "already ended (RUN_CANCELED)" in console.get(again.headers["location"]).text


def test_a_read_only_session_sees_runs_but_cannot_cancel(
    serve: RunningServer, receiver: Receiver
) -> None:
    create_read_only_token(serve)
    client = api(serve)
    start_run(client, "wfr_ro", receiver.url("/wf"), "{}", **LATER)
    viewer = sign_in_http(serve, "hmg_read_only_token")
    assert "wfr_ro" in viewer.get("/console/runs").text
    token = csrf_of(viewer, "/console/runs/wfr_ro")
    refused = viewer.post("/console/runs/wfr_ro/cancel", data={"_csrf": token, "confirm": "yes"})
    assert refused.status_code == 403
    assert client.get("/v2/workflows/runs/wfr_ro").status_code == 200  # still running


def test_a_failed_run_shows_why(serve: RunningServer, receiver: Receiver) -> None:
    receiver.on("/wf", lambda _: Reply(500, b'{"error":"boom"}'))
    start_run(api(serve), "wfr_fails", receiver.url("/wf"), "{}", **{"upstash-retries": "0"})
    receiver.wait_for(1, "/wf")
    console = sign_in_http(serve)

    def failed() -> str | None:
        text = console.get("/console/runs/wfr_fails").text
        return text if "RUN_FAILED" in text else None

    page = eventually(failed)
    assert 'data-run="failure">status 500<' in page


def test_canceling_an_unknown_run_says_so(serve: RunningServer) -> None:
    console = sign_in_http(serve)
    token = csrf_of(console, "/console/runs")
    answer = console.post(
        "/console/runs/wfr_nope/cancel",
        data={"_csrf": token, "confirm": "yes", "_back": "/console/runs"},
    )
    assert answer.status_code == 303 and answer.headers["location"] == "/console/runs"
    assert "Workflow run wfr_nope was not found" in console.get("/console/runs").text
