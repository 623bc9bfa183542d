"""The console's forms change exactly what the API would, as seen through the API."""

from __future__ import annotations

import httpx
import pytest

from tests.conftest import ServerFactory
from tests.console.conftest import csrf_of, sign_in_http
from tests.console.support import api, publish
from tests.support.receiver import Receiver
from tests.support.server import RunningServer


@pytest.fixture
def serve(start_server: ServerFactory) -> RunningServer:
    return start_server(mode="serve")


def _post(client: httpx.Client, path: str, **data: str) -> httpx.Response:
    response = client.post(path, data={"_csrf": csrf_of(client), "confirm": "yes", **data})
    assert response.status_code == 303, response.text
    return response


def _notice(client: httpx.Client, response: httpx.Response) -> str:
    page = client.get(response.headers["location"]).text
    start = page.index('class="notice')
    return page[page.index(">", start) + 1 : page.index("</div>", start)]


def test_queues_can_be_created_tuned_paused_and_deleted(serve: RunningServer) -> None:
    console, client = sign_in_http(serve), api(serve)
    _post(console, "/console/queues", name="emails", parallelism="3")
    assert client.get("/v2/queues/emails").json()["parallelism"] == 3
    _post(console, "/console/queues/emails/pause")
    _post(console, "/console/queues", name="emails", parallelism="5")
    queue = client.get("/v2/queues/emails").json()
    assert queue["parallelism"] == 5 and queue["paused"] is True  # tuning keeps it paused
    _post(console, "/console/queues/emails/resume")
    assert client.get("/v2/queues/emails").json()["paused"] is False
    bad = _post(console, "/console/queues", name="emails", parallelism="0")
    assert "at least 1" in _notice(console, bad)
    _post(console, "/console/queues/emails/delete")
    assert client.get("/v2/queues").json() == []


def test_url_group_endpoints_are_added_and_removed(
    serve: RunningServer, receiver: Receiver
) -> None:
    console, client = sign_in_http(serve), api(serve)
    _post(console, "/console/url-groups", group="fanout", url=receiver.url("/a"), name="a")
    _post(console, "/console/url-groups", group="fanout", url=receiver.url("/b"))
    endpoints = client.get("/v2/topics/fanout").json()["endpoints"]
    assert [e["url"] for e in endpoints] == [receiver.url("/a"), receiver.url("/b")]
    refused = _post(console, "/console/url-groups", group="fanout", url="ftp://nope")
    assert "invalid destination URL" in _notice(console, refused)
    _post(console, "/console/url-groups/fanout/remove", url=receiver.url("/a"), name="a")
    assert [e["url"] for e in client.get("/v2/topics/fanout").json()["endpoints"]] == [
        receiver.url("/b")
    ]
    _post(console, "/console/url-groups/fanout/delete")
    assert client.get("/v2/topics").json() == []


def test_rotating_keys_and_flow_control_actions(serve: RunningServer, receiver: Receiver) -> None:
    console, client = sign_in_http(serve), api(serve)
    before = client.get("/v2/keys").json()
    _post(console, "/console/keys/rotate")
    after = client.get("/v2/keys").json()
    assert after["current"] == before["next"] and after["next"] != before["next"]
    page = console.get("/console/keys").text
    assert after["next"] not in page and after["next"][:8] + "…" in page  # masked
    revealed = console.get("/console/api/keys").json()
    assert revealed == after

    flow = {"Upstash-Flow-Control-Key": "tenant-1", "Upstash-Flow-Control-Value": "rate=5"}
    publish(client, receiver.url("/ok"), "x", **flow)
    _post(console, "/console/flow-control/pause", key="tenant-1")
    assert client.get("/v2/flowControl/tenant-1").json()["isPaused"] is True
    _post(console, "/console/flow-control/pin", key="tenant-1", parallelism="2", rate="")
    key = client.get("/v2/flowControl/tenant-1").json()
    assert key["isPinnedParallelism"] is True and key["parallelismMax"] == 2
    _post(console, "/console/flow-control/unpin", key="tenant-1")
    _post(console, "/console/flow-control/resume", key="tenant-1")
    key = client.get("/v2/flowControl/tenant-1").json()
    assert key["isPaused"] is False and key["isPinnedParallelism"] is False
    assert "tenant-1" in console.get("/console/flow-control").text


def test_a_waiting_message_can_be_canceled(serve: RunningServer, receiver: Receiver) -> None:
    console, client = sign_in_http(serve), api(serve)
    message_id = publish(client, receiver.url("/later"), "x", **{"Upstash-Delay": "1h"})
    page = console.get(f"/console/messages/{message_id}").text
    assert "Cancel message" in page
    _post(console, f"/console/messages/{message_id}/cancel")
    assert client.get(f"/v2/messages/{message_id}").status_code == 200
    shown = console.get(f"/console/messages/{message_id}").text
    assert "CANCELED" in shown and "Cancel message" not in shown


def test_a_schedule_form_error_keeps_what_was_typed(serve: RunningServer) -> None:
    console = sign_in_http(serve)
    form = {"_csrf": csrf_of(console), "destination": "https://example.com/x", "tz": "UTC"}
    bad = console.post("/console/schedules", data={**form, "cron": "61 * * * *"})
    assert bad.status_code == 400
    assert "invalid cron expression" in bad.text and 'value="https://example.com/x"' in bad.text
    shown = console.post(
        "/console/schedules",
        data={**form, "cron": "0 0 1 1 *", "tz": "Pacific/Auckland", "preview": "1"},
    )
    assert shown.status_code == 200 and shown.text.count("NZDT") == 5  # previewed, not created
    assert api(serve).get("/v2/schedules").json() == []
    json = console.get("/console/api/cron-preview", params={"cron": "*/5 * * *"})
    assert json.status_code == 400 and "expected 5 fields" in json.json()["error"]


def test_dev_mode_asks_for_a_token_under_a_foreign_host_name(
    start_server: ServerFactory,
) -> None:
    dev = start_server()
    # DNS rebinding: a page on evil.example whose name now points at 127.0.0.1.
    rebound = httpx.get(dev.base_url + "/console/", headers={"Host": "evil.example:1"})
    assert rebound.status_code == 303 and "/console/login" in rebound.headers["location"]
    for host in ("localhost", "127.0.0.1", "[::1]"):
        direct = httpx.get(dev.base_url + "/console/", headers={"Host": f"{host}:8080"})
        assert direct.status_code == 200, host
