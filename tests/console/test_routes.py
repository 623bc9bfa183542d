"""The console's HTTP surface without a browser: sessions, CSRF, origin checks, headers."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest
from starlette.routing import Route

from homing.console.app import ROUTES
from homing.console.auth import SESSION_COOKIE
from tests.conftest import ServerFactory
from tests.console.conftest import CSRF, csrf_of, sign_in_http
from tests.console.support import api, create_read_only_token, dlq_ids, eventually, publish
from tests.support.cli import homing
from tests.support.receiver import Receiver, Reply
from tests.support.server import DEV_TOKEN, RunningServer


def _paths(method: str) -> list[str]:
    """Every console route for `method`, with its path parameters filled in."""
    out = []
    for route in ROUTES:
        if isinstance(route, Route) and route.methods and method in route.methods:
            out.append("/console" + re.sub(r"\{[^}]+\}", "x", route.path))
    return out


GET_PAGES = [p for p in _paths("GET") if "/api/" not in p and not p.endswith("/login")]
GET_APIS = [p for p in _paths("GET") if "/api/" in p]
ACTIONS = [p for p in _paths("POST") if not p.endswith("/login")]


@pytest.fixture
def serve(start_server: ServerFactory) -> RunningServer:
    return start_server(mode="serve")


def test_every_route_is_covered_below() -> None:
    assert "/console/" in GET_PAGES and "/console/api/overview" in GET_APIS
    assert "/console/dlq/retry" in ACTIONS and "/console/keys/rotate" in ACTIONS
    assert len(ACTIONS) >= 15


def test_serve_mode_shows_nothing_without_a_session(serve: RunningServer) -> None:
    publish(api(serve), "https://example.com/hook", "secret-payload")
    with httpx.Client(base_url=serve.base_url, timeout=10) as anonymous:
        for path in GET_PAGES:
            response = anonymous.get(path)
            assert response.status_code == 303, path
            assert response.headers["location"].startswith("/console/login?next="), path
            assert "secret-payload" not in response.text
        for path in GET_APIS:
            assert anonymous.get(path).status_code == 401, path
        for path in ACTIONS:
            response = anonymous.post(path, data={"dlqId": "x", "name": "q"})
            assert response.status_code in (303, 401, 403), path
            assert "/console/login" in response.headers.get("location", "/console/login")
        login = anonymous.get("/console/login")
        assert login.status_code == 200
        assert "defaultUser" not in login.text and "secret-payload" not in login.text
    assert api(serve).get("/v2/queues").json() == []  # no action went through


def test_every_post_needs_the_csrf_token(serve: RunningServer) -> None:
    client = sign_in_http(serve)
    for path in ACTIONS:
        missing = client.post(path, data={"name": "q", "parallelism": "2", "confirm": "yes"})
        assert missing.status_code == 403, path
        forged = client.post(path, data={"_csrf": "forged", "name": "q", "confirm": "yes"})
        assert forged.status_code == 403, path
    assert api(serve).get("/v2/queues").json() == []


def test_every_post_from_another_origin_is_refused(serve: RunningServer) -> None:
    client = sign_in_http(serve)
    token = csrf_of(client)
    for path in ACTIONS:
        data = {"_csrf": token, "name": "q", "parallelism": "2", "confirm": "yes"}
        other = client.post(path, data=data, headers={"Origin": "https://evil.example"})
        assert other.status_code == 403, path
        cross = client.post(path, data=data, headers={"Sec-Fetch-Site": "cross-site"})
        assert cross.status_code == 403, path
    assert api(serve).get("/v2/queues").json() == []
    # The same form from the console's own origin goes through.
    ok = client.post(
        "/console/queues",
        data={"_csrf": token, "name": "q", "parallelism": "2"},
        headers={"Origin": serve.base_url, "Sec-Fetch-Site": "same-origin"},
    )
    assert ok.status_code == 303
    assert [q["name"] for q in api(serve).get("/v2/queues").json()] == ["q"]


def test_sign_in_sets_a_safe_cookie_and_sign_out_ends_it(serve: RunningServer) -> None:
    client = httpx.Client(base_url=serve.base_url, timeout=10)
    form = client.get("/console/login?next=/console/dlq")
    match = CSRF.search(form.text)
    assert match
    bad = client.post("/console/login", data={"token": "nope", "_csrf": match.group(1)})
    assert bad.status_code == 401 and "not valid" in bad.text
    good = client.post(
        "/console/login",
        data={"token": DEV_TOKEN, "_csrf": match.group(1), "next": "/console/dlq"},
    )
    assert good.status_code == 303 and good.headers["location"] == "/console/dlq"
    cookie = next(
        h for h in good.headers.get_list("set-cookie") if h.startswith(SESSION_COOKIE + "=")
    )
    assert "httponly" in cookie.lower() and "samesite=strict" in cookie.lower()
    assert DEV_TOKEN not in cookie
    assert client.get("/console/dlq").status_code == 200
    old = client.cookies.get(SESSION_COOKIE)
    out = client.post("/console/logout", data={"_csrf": csrf_of(client)})
    assert out.status_code == 303
    replay = httpx.get(serve.base_url + "/console/", cookies={SESSION_COOKIE: old or ""})
    assert replay.status_code == 303  # a revoked session stays revoked


def test_sign_in_refuses_a_form_without_its_token_and_foreign_next(serve: RunningServer) -> None:
    client = httpx.Client(base_url=serve.base_url, timeout=10)
    client.get("/console/login")
    assert client.post("/console/login", data={"token": DEV_TOKEN}).status_code == 403
    match = CSRF.search(client.get("/console/login").text)
    assert match
    done = client.post(
        "/console/login",
        data={"token": DEV_TOKEN, "_csrf": match.group(1), "next": "//evil.example/x"},
    )
    assert done.headers["location"] == "/console/"


def test_sign_in_attempts_are_throttled(serve: RunningServer) -> None:
    client = httpx.Client(base_url=serve.base_url, timeout=10)
    match = CSRF.search(client.get("/console/login").text)
    assert match
    codes = [
        client.post("/console/login", data={"token": "guess", "_csrf": match.group(1)}).status_code
        for _ in range(6)
    ]
    assert codes == [401] * 5 + [429]
    right = client.post("/console/login", data={"token": DEV_TOKEN, "_csrf": match.group(1)})
    assert right.status_code == 429  # even the right token waits out the minute


def test_a_tampered_session_cookie_is_not_a_session(serve: RunningServer) -> None:
    client = sign_in_http(serve)
    value = client.cookies.get(SESSION_COOKIE) or ""
    payload, _, mac = value.partition(".")
    forged = payload[:-2] + ("AA" if payload[-2:] != "AA" else "BB") + "." + mac
    for cookie in (forged, "garbage", "é.é"):
        raw = f"{SESSION_COOKIE}={cookie}".encode()  # raw bytes: non-ASCII included
        response = httpx.get(serve.base_url + "/console/", headers={b"cookie": raw})
        assert response.status_code == 303


def test_dev_mode_answers_the_overview_without_a_cookie(start_server: ServerFactory) -> None:
    dev = start_server()
    response = httpx.get(dev.base_url + "/console/")
    assert response.status_code == 200
    assert "Overview" in response.text and "defaultUser" in response.text
    followed = httpx.get(dev.base_url + "/console", follow_redirects=True)
    assert followed.status_code == 200 and "/login" not in str(followed.url)
    # ...but even in dev mode a POST needs a session and its CSRF token.
    assert httpx.post(dev.base_url + "/console/keys/rotate").status_code == 403
    client = httpx.Client(base_url=dev.base_url, timeout=10)
    client.get("/console/")
    for path in ACTIONS:
        assert client.post(path, data={"confirm": "yes"}).status_code == 403, path


def test_pages_forbid_inline_script_and_framing(
    start_server: ServerFactory, receiver: Receiver
) -> None:
    dev = start_server()
    client = httpx.Client(base_url=dev.base_url, timeout=10)
    message_id = publish(api(dev), receiver.url("/ok"), "<script>alert(1)</script>")
    pages = [p for p in GET_PAGES if "{" not in p and "/x" not in p]
    for path in [*pages, f"/console/messages/{message_id}", "/console/login"]:
        response = client.get(path)
        assert response.status_code == 200, path
        csp = response.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
        assert "unsafe-inline" not in csp
        assert response.headers["x-frame-options"] == "DENY"
        assert response.headers["referrer-policy"]
        assert response.headers["cache-control"] == "no-store"
        # Every script is a file: no inline <script> body and no on* handler attributes.
        assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", response.text), path
        assert not re.search(r"<[^>]+\son[a-z]+=", response.text), path
    shown = client.get(f"/console/messages/{message_id}").text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in shown


def test_the_live_overview_reports_counts(start_server: ServerFactory, receiver: Receiver) -> None:
    dev = start_server()
    publish(api(dev), receiver.url("/ok"), "one")
    receiver.wait_for(1)
    client = httpx.Client(base_url=dev.base_url, timeout=10)
    client.get("/console/")  # the dev session
    data = client.get("/console/api/overview").json()
    assert data["stats"]["hour.published"] == "1"
    assert set(data["charts"]) == {"hour", "day"}
    assert all(
        p["tag"] in {"line", "polyline", "text", "rect", "circle"} for p in data["charts"]["hour"]
    )


def test_a_read_only_token_may_look_but_not_act(serve: RunningServer) -> None:
    create_read_only_token(serve)
    client = sign_in_http(serve, "hmg_read_only_token")
    page = client.get("/console/keys")
    assert page.status_code == 200 and "read-only" in page.text
    token = csrf_of(client)
    refused = client.post("/console/keys/rotate", data={"_csrf": token, "confirm": "yes"})
    assert refused.status_code == 403
    assert api(serve).get("/v2/keys").json()["current"] == "sig_7kYjw48mhY7kAjqNGcy6cr29RJ6r"
    assert client.post("/console/logout", data={"_csrf": token}).status_code == 303


def test_destructive_actions_ask_first_without_script(
    serve: RunningServer, receiver: Receiver
) -> None:
    receiver.on("/down", lambda _: Reply(500))
    client = api(serve)
    ids = [
        publish(client, receiver.url("/down"), f"m{n}", **{"Upstash-Retries": "0"})
        for n in range(3)
    ]
    dead = eventually(lambda: (found := dlq_ids(client)) and len(found) == 3 and found)
    console = sign_in_http(serve)
    token = csrf_of(console)
    chosen = {"_csrf": token, "dlqId": [dead[i] for i in ids[:2]]}
    asked = console.post(
        "/console/dlq/delete", data=chosen, headers={"Referer": serve.base_url + "/console/dlq"}
    )
    assert asked.status_code == 200 and "Delete 2 entries from the DLQ" in asked.text
    assert len(dlq_ids(client)) == 3  # nothing happened yet
    done = console.post("/console/dlq/delete", data={**chosen, "confirm": "yes"})
    assert done.status_code == 303
    assert set(dlq_ids(client)) == {ids[2]}
    flash = console.get(done.headers["location"])
    assert "Deleted 2 entries." in flash.text
    assert "Deleted 2 entries." not in console.get("/console/dlq").text  # shown once


def test_an_oversized_form_is_refused_not_crashed(serve: RunningServer) -> None:
    client = httpx.Client(base_url=serve.base_url, timeout=10)
    assert client.post("/console/login", data={"token": "x" * 70_000}).status_code == 413


@pytest.mark.sqlite_only("the tokens CLI finds the server's store by --data-dir (its SQLite file)")
def test_revoking_a_token_ends_its_console_sessions_at_once(serve: RunningServer) -> None:
    data = ["--data-dir", serve.settings.data_dir]
    token = homing("tokens", "create", "--account", "team-c", "--name", "ops", *data)
    client = sign_in_http(serve, token.strip().splitlines()[-1])
    assert client.get("/console/queues").status_code == 200

    homing("tokens", "revoke", "ops", *data)

    again = client.get("/console/queues")
    assert again.status_code == 303 and "/console/login" in again.headers["location"]


def test_with_a_shared_console_secret_a_sign_in_holds_on_another_server(
    start_server: ServerFactory, tmp_path: Path
) -> None:
    """Nodes behind one load balancer (or one node after a restart) given the same
    --console-secret accept each other's sessions; servers without it do not."""
    shared = "s3cret-shared-by-every-node"
    first = start_server(mode="serve", console_secret=shared, data_dir=str(tmp_path / "a"))
    second = start_server(mode="serve", console_secret=shared, data_dir=str(tmp_path / "b"))
    stranger = start_server(mode="serve", data_dir=str(tmp_path / "c"))
    cookie = sign_in_http(first).cookies.get(SESSION_COOKIE) or ""

    same = httpx.get(second.base_url + "/console/queues", cookies={SESSION_COOKIE: cookie})
    other = httpx.get(stranger.base_url + "/console/queues", cookies={SESSION_COOKIE: cookie})
    assert same.status_code == 200
    assert other.status_code == 303
