"""The workflow DLQ from the console: an entry that failed a workflow run links to its run and is
resumed or restarted under a new run id (with the CSRF token, after a confirmation), its run's
failure callback sent again; the run page links to its entry. Runs are started and failed over
plain HTTP with the JS SDK's request shapes."""

from __future__ import annotations

import base64
import json
import re
from typing import Any

import pytest

from tests.conftest import ServerFactory
from tests.console.conftest import csrf_of, sign_in_http
from tests.console.support import (
    FailingSteps,
    api,
    create_read_only_token,
    dlq_ids,
    eventually,
    fail_run,
    publish,
)
from tests.support.receiver import Received, Receiver, Reply
from tests.support.server import RunningServer


@pytest.fixture
def serve(start_server: ServerFactory) -> RunningServer:
    return start_server(mode="serve")


def step_names(req: Received) -> list[Any]:
    return [json.loads(base64.b64decode(e["body"])).get("stepName") for e in json.loads(req.body)]


def test_a_failed_run_is_resumed_from_the_dlq_page_once_with_the_csrf_token(
    serve: RunningServer, receiver: Receiver
) -> None:
    app = FailingSteps()
    receiver.on("/wf", app)
    client, console = api(serve), sign_in_http(serve)
    dlq_id = fail_run(client, receiver, "wfr_broken")
    receiver.on("/plain", lambda _: Reply(500, b"no"))
    plain = publish(client, receiver.url("/plain"), **{"upstash-retries": "0"})
    eventually(lambda: plain in dlq_ids(client))

    page = console.get("/console/dlq").text
    row = page[page.index(f'value="{dlq_id}"') :]
    row = row[: row.index("</tr>")]
    assert 'href="/console/runs/wfr_broken"' in row
    assert ">Resume</button>" in row and ">Restart</button>" in row
    assert ">Retry</button>" not in row  # a step copy under a failed run would go nowhere
    run_page = console.get("/console/runs/wfr_broken").text
    assert f'data-run="dlq">{dlq_id}<' in run_page and ">Resume</button>" in run_page

    target = "/console/dlq/resume"
    assert console.post(target, data={"dlqId": dlq_id, "confirm": "yes"}).status_code == 403
    forged = console.post(target, data={"dlqId": dlq_id, "_csrf": "forged", "confirm": "yes"})
    assert forged.status_code == 403
    token = csrf_of(console, "/console/dlq")
    asked = console.post(target, data={"dlqId": dlq_id, "_csrf": token})
    assert asked.status_code == 200 and "Resume 1 workflow run under a new run id?" in asked.text
    assert dlq_id in dlq_ids(client).values()  # nothing happened yet

    done = console.post(target, data={"dlqId": dlq_id, "_csrf": token, "confirm": "yes"})

    assert done.status_code == 303
    new_run = done.headers["location"].removeprefix("/console/runs/")
    assert new_run.startswith("wfr_") and new_run != "wfr_broken"
    shown = console.get(done.headers["location"]).text
    assert f"Resumed run wfr_broken as {new_run}." in shown
    resumed = eventually(lambda: app.of_run(new_run))
    assert step_names(resumed) == [None, "one"]  # the initial payload, then the kept step
    assert dlq_id not in dlq_ids(client).values()

    again = console.post(target, data={"dlqId": dlq_id, "_csrf": token, "confirm": "yes"})
    assert "already left the DLQ" in console.get(again.headers["location"]).text
    not_a_run = console.post(
        target, data={"dlqId": dlq_ids(client)[plain], "_csrf": token, "confirm": "yes"}
    )
    assert "None of the selected entries failed a workflow run" in (
        console.get(not_a_run.headers["location"]).text
    )
    assert len([c for c in app.calls if c.headers["Upstash-Workflow-RunId"] == new_run]) == 1


def test_restart_from_the_run_page_and_the_failure_callback_sent_again(
    serve: RunningServer, receiver: Receiver
) -> None:
    app = FailingSteps()
    receiver.on("/wf", app)
    answers = iter([Reply(500, b"callback broke"), Reply(200, b"ok")])
    receiver.on("/failure", lambda _: next(answers))
    client, console = api(serve), sign_in_http(serve)
    dlq_id = fail_run(
        client,
        receiver,
        "wfr_cb",
        **{
            "upstash-failure-callback": receiver.url("/failure"),
            "upstash-failure-callback-retries": "0",
        },
    )

    def callback_failed() -> str | None:
        text = console.get("/console/dlq").text
        return text if "failure callback: CALLBACK_FAIL" in text else None

    page = eventually(callback_failed)
    assert ">Retry failure function</button>" in page
    run_page = console.get("/console/runs/wfr_cb").text
    assert 'data-run="callback">CALLBACK_FAIL<' in run_page
    token = csrf_of(console, "/console/runs/wfr_cb")

    sent = console.post(
        "/console/dlq/callback",
        data={"dlqId": dlq_id, "_csrf": token, "confirm": "yes", "_back": "/console/runs/wfr_cb"},
    )

    assert sent.status_code == 303 and sent.headers["location"] == "/console/runs/wfr_cb"
    assert (
        "failure callback of run wfr_cb is sent again" in console.get("/console/runs/wfr_cb").text
    )
    receiver.wait_for(2, "/failure")
    eventually(
        lambda: 'data-run="callback">CALLBACK_SUCCESS<' in console.get("/console/runs/wfr_cb").text
    )

    restarted = console.post(
        "/console/dlq/restart",
        data={"dlqId": dlq_id, "_csrf": token, "confirm": "yes", "_back": "/console/runs/wfr_cb"},
    )

    assert restarted.status_code == 303
    new_run = restarted.headers["location"].removeprefix("/console/runs/")
    assert "Restarted run wfr_cb as" in console.get(restarted.headers["location"]).text
    init = eventually(lambda: app.of_run(new_run))
    assert [base64.b64decode(e["body"]) for e in json.loads(init.body)] == [b'{"order":7}']
    after = console.get("/console/runs/wfr_cb").text  # its entry is gone: nothing to resume
    assert 'data-run="dlq"' not in after and ">Resume</button>" not in after


def test_a_read_only_session_sees_the_run_entry_but_cannot_resume_or_restart(
    serve: RunningServer, receiver: Receiver
) -> None:
    create_read_only_token(serve)
    app = FailingSteps()
    receiver.on("/wf", app)
    client = api(serve)
    dlq_id = fail_run(client, receiver, "wfr_ro")
    viewer = sign_in_http(serve, "hmg_read_only_token")
    assert 'href="/console/runs/wfr_ro"' in viewer.get("/console/dlq").text
    token = csrf_of(viewer, "/console/dlq")
    for action in ("resume", "restart", "callback"):
        refused = viewer.post(
            f"/console/dlq/{action}", data={"dlqId": dlq_id, "_csrf": token, "confirm": "yes"}
        )
        assert refused.status_code == 403 and "read-only" in refused.text
    assert dlq_id in dlq_ids(client).values()
    assert [c.headers["Upstash-Workflow-RunId"] for c in app.calls] == ["wfr_ro", "wfr_ro"]
    assert re.search(r'data-run="dlq">', viewer.get("/console/runs/wfr_ro").text)
