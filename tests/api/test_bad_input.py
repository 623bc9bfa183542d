"""Bad input gets a clear 4xx `{"error": ...}` and stores nothing.

Spec 1.2, 1.4, 3, 4.1, 5.1, 5.3.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from qstash import QStash
from qstash import Receiver as SignatureReceiver
from qstash.errors import QStashError

from tests.support.http import api
from tests.support.receiver import Receiver
from tests.support.server import DEV_TOKEN, RunningServer

ServerFactory = Callable[..., RunningServer]


@pytest.fixture
def http(server: RunningServer) -> Iterator[httpx.Client]:
    with api(server) as client:
        yield client


def refused(answer: httpx.Response, status: int) -> None:
    assert answer.status_code == status, (answer.status_code, answer.text)
    assert answer.headers["content-type"].startswith("application/json")
    error = answer.json()["error"]
    assert isinstance(error, str) and error


def nothing_stored(server: RunningServer) -> None:
    """No message was created: the account's log is empty."""
    with api(server) as http:
        assert http.get("/v2/events").json()["events"] == []


# Refused requests never reach a destination; this one would not answer anyway (discard port).
NOWHERE = "http://127.0.0.1:9/"


def publish_path(url: str) -> str:
    return f"/v2/publish/{url}"


# -- authentication -------------------------------------------------------------------------


def test_unknown_or_missing_token_is_401(server: RunningServer, receiver: Receiver) -> None:
    path = publish_path(receiver.url("/x"))
    with api(server, token="not-a-token") as wrong, api(server, token=None) as anonymous:
        refused(wrong.post(path, content=b"x"), 401)
        refused(anonymous.post(path, content=b"x"), 401)
        refused(anonymous.post(path, params={"qstash_token": "not-a-token"}, content=b"x"), 401)
        refused(anonymous.get("/v2/messages/msg_x", params={"qstash_token": "nope"}), 401)
        refused(anonymous.get("/v2/events"), 401)
        with pytest.raises(QStashError, match="401"):
            QStash("not-a-token", base_url=server.base_url, retry=False).message.publish(
                url=receiver.url("/x"), body="x"
            )
        nothing_stored(server)
        # the right token in the query works, and never reaches the destination
        ok = anonymous.post(f"{path}?a=1&qstash_token={DEV_TOKEN}&b=2", content=b"x")
        assert ok.status_code == 201
    [got] = receiver.wait_for(1, "/x")
    assert got.path == "/x?a=1&b=2"


# -- destinations ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("destination", "status"),
    [
        ("not-a-url", 404),  # a bare name is a URL group, and there is no such group
        ("http://", 400),  # no host
        ("https://", 400),
        ("ftp://example.com/x", 400),
        ("bad name!", 400),
        ("api/llm", 400),
    ],
)
def test_malformed_destination_is_refused(
    server: RunningServer, http: httpx.Client, destination: str, status: int
) -> None:
    refused(http.post(publish_path(destination), content=b"x"), status)
    nothing_stored(server)


def test_private_destinations_are_refused_in_serve_mode(
    start_server: ServerFactory, receiver: Receiver
) -> None:
    server = start_server(mode="serve", allow_private_destinations=False)
    forbidden = [
        "http://127.0.0.1/",
        receiver.url("/hook"),
        "http://2130706433/",  # 127.0.0.1 as one number
        "http://0x7f.1/",
        "http://[::ffff:127.0.0.1]/",
        "http://[::1]:8080/",
        "http://localhost/",
        "http://LOCALHOST./x",
        "http://10.1.2.3/",
        "http://192.168.0.10/",
        "http://169.254.169.254/latest/meta-data",
    ]
    public = "https://example.com/hook"
    with api(server) as http:
        for url in forbidden:
            refused(http.post(publish_path(url), content=b"x"), 400)
            refused(http.post("/v2/batch", json=[{"destination": url}]), 400)
        for header in ("Upstash-Callback", "Upstash-Failure-Callback"):
            answer = http.post(
                publish_path(public), content=b"x", headers={header: "http://127.0.0.1/cb"}
            )
            refused(answer, 400)
        refused(
            http.post(
                "/v2/batch",
                json=[{"destination": public, "headers": {"Upstash-Callback": "http://[::1]/"}}],
            ),
            400,
        )
    nothing_stored(server)
    assert receiver.requests == []


# -- body size ------------------------------------------------------------------------------


def test_oversized_body_is_413_with_or_without_content_length(
    start_server: ServerFactory, receiver: Receiver
) -> None:
    server = start_server(max_body_size=1024)
    path = publish_path(receiver.url("/big"))

    def chunks() -> Iterator[bytes]:
        for _ in range(8):
            yield b"y" * 256

    with api(server) as http:
        refused(http.post(path, content=b"x" * 1025), 413)
        refused(http.post(path, content=chunks()), 413)  # Transfer-Encoding: chunked
        batch = http.post(
            "/v2/batch", json=[{"destination": receiver.url("/big"), "body": "z" * 1025}]
        )
        assert batch.status_code in (400, 413)
        nothing_stored(server)
        assert http.post(path, content=b"x" * 1024).status_code == 201  # the limit itself is fine
    [got] = receiver.wait_for(1, "/big")
    assert len(got.body) == 1024


# -- headers --------------------------------------------------------------------------------


def test_control_characters_in_a_batch_header_value_are_refused(
    server: RunningServer, http: httpx.Client
) -> None:
    for value in ("a\r\nX-Injected: 1", "a\nb", "a\rb", "a\x00b"):
        for name in ("Upstash-Forward-X-Note", "Upstash-Callback-Forward-X-Note", "Content-Type"):
            headers = {name: value, "Upstash-Callback": NOWHERE + "cb"}
            answer = http.post("/v2/batch", json=[{"destination": NOWHERE, "headers": headers}])
            refused(answer, 400)
    nothing_stored(server)


DROPPED_FORWARDS = [
    # set by Homing on every delivery: a publisher must not forge them
    "Upstash-Signature", "Upstash-Message-Id", "Upstash-Retried", "Upstash-Topic-Name",
    "Upstash-Schedule-Id", "Upstash-Caller-Ip",
    # connection-level, not part of a message
    "Connection", "Transfer-Encoding", "Host", "Content-Length",
]  # fmt: skip


def test_forwarding_a_header_homing_controls_is_accepted_and_the_header_dropped(
    http: httpx.Client, receiver: Receiver
) -> None:
    # The workflow SDKs forward every header they received (Host, Content-Length, the
    # signature...); the hosted service accepts them, so Homing drops them instead of a 400.
    url = receiver.url("/dropped")
    headers = {f"Upstash-Forward-{name}": "forged" for name in DROPPED_FORWARDS}
    headers["Upstash-Forward-Connection"] = "close"
    answer = http.post(publish_path(url), headers={**headers, "Upstash-Forward-X-Kept": "k"})
    assert answer.status_code == 201, answer.text
    item = {"destination": url, "headers": {k.lower(): v for k, v in headers.items()}}
    assert http.post("/v2/batch", json=[item]).status_code == 201
    [first, second] = receiver.wait_for(2, path="/dropped")
    assert first.headers["X-Kept"] == "k"
    for got in (first, second):
        for name in DROPPED_FORWARDS:
            assert got.headers.get(name) != "forged", name


def test_webhook_mode_drops_controlled_headers_instead_of_refusing(
    http: httpx.Client, receiver: Receiver, verifier: SignatureReceiver
) -> None:
    url = receiver.url("/hook")

    def chunked() -> Iterator[bytes]:  # sent with Transfer-Encoding: chunked
        yield b'{"event"'
        yield b": 1}"

    answer = http.post(
        publish_path(url),
        content=chunked(),
        headers={
            "Upstash-Header-Forward": "True",  # Python-style boolean
            "Content-Type": "application/json",
            "X-Github-Event": "push",
            "Upstash-Signature": "forged",
            "Upstash-Message-Id": "msg_forged",
            "Upstash-Retried": "7",
            "Upstash-Topic-Name": "forged",
            "Upstash-Caller-Ip": "6.6.6.6",
            "Connection": "keep-alive",
            "Keep-Alive": "timeout=5",
            "Proxy-Authorization": "secret",
        },
    )
    assert answer.status_code == 201
    [got] = receiver.wait_for(1, "/hook")
    assert got.headers["X-Github-Event"] == "push"
    assert got.headers["Content-Type"] == "application/json"
    assert got.body == b'{"event": 1}'
    assert "Transfer-Encoding" not in got.headers
    assert got.message_id == answer.json()["messageId"]
    assert got.headers["Upstash-Retried"] == "0"
    assert got.headers["Upstash-Caller-Ip"] == "127.0.0.1"
    assert "Upstash-Topic-Name" not in got.headers
    assert "Proxy-Authorization" not in got.headers and "Keep-Alive" not in got.headers
    assert "Authorization" not in got.headers
    verifier.verify(signature=got.headers["Upstash-Signature"], body=got.body.decode(), url=url)


def test_a_workflow_header_can_be_forwarded(http: httpx.Client, receiver: Receiver) -> None:
    answer = http.post(
        publish_path(receiver.url("/wf")),
        headers={"Upstash-Forward-Upstash-Workflow-Id": "wf_1"},
    )
    assert answer.status_code == 201
    [got] = receiver.wait_for(1, "/wf")
    assert got.headers["Upstash-Workflow-Id"] == "wf_1"


INVALID_CONFIG: list[tuple[dict[str, str], str]] = [
    ({"Upstash-Delay": "soon"}, "delay"),
    ({"Upstash-Delay": "400d"}, "delay above the maximum"),
    ({"Upstash-Not-Before": "tomorrow"}, "not-before"),
    ({"Upstash-Retry-Delay": "pow(2,"}, "retry-delay syntax"),
    ({"Upstash-Retry-Delay": "1000 * attempts"}, "retry-delay unknown name"),
    ({"Upstash-Method": "TRACE"}, "method"),
    ({"Upstash-Retries": "99"}, "retries above the maximum"),
    ({"Upstash-Retries": "-1"}, "negative retries"),
    ({"Upstash-Retries": "three"}, "retries not a number"),
    ({"Upstash-Timeout": "forever"}, "timeout"),
    ({"Upstash-Flow-Control-Key": "k"}, "flow-control key without value"),
    ({"Upstash-Flow-Control-Key": "k", "Upstash-Flow-Control-Value": ""}, "empty flow value"),
    ({"Upstash-Flow-Control-Key": "k", "Upstash-Flow-Control-Value": "burst=3"}, "flow name"),
    ({"Upstash-Flow-Control-Key": "k", "Upstash-Flow-Control-Value": "rate=0"}, "flow rate 0"),
    ({"Upstash-Flow-Control-Key": "k", "Upstash-Flow-Control-Value": "period=8d"}, "period > 7d"),
    ({"Upstash-Callback": "not-a-url"}, "callback URL"),
    ({"Upstash-Content-Based-Deduplication": "maybe"}, "boolean"),
    ({"Upstash-Redact-Fields": "everything"}, "redaction"),
]


def test_invalid_configuration_headers_are_refused(
    server: RunningServer, http: httpx.Client
) -> None:
    url = NOWHERE
    wrong = []
    for headers, what in INVALID_CONFIG:
        for answer in (
            http.post(publish_path(url), content=b"x", headers=headers),
            http.post("/v2/batch", json=[{"destination": url, "headers": headers}]),
        ):
            if answer.status_code != 400 or "error" not in answer.json():
                wrong.append((what, answer.status_code, answer.text))
    # the query-parameter form of a header is checked the same way
    answer = http.post(publish_path(url), params={"upstash-retries": "99"}, content=b"x")
    if answer.status_code != 400:
        wrong.append(("query retries", answer.status_code, answer.text))
    assert wrong == []
    nothing_stored(server)


def test_the_sdk_reports_an_invalid_option_as_an_error(
    server: RunningServer, client: QStash
) -> None:
    with pytest.raises(QStashError, match="400"):
        client.message.publish(url=NOWHERE, body="x", retries=99)
    with pytest.raises(QStashError, match="400"):
        client.message.publish(url=NOWHERE, flow_control={"key": "only-a-key"})  # type: ignore[typeddict-item]
    nothing_stored(server)


# -- batch ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        b"[{",
        b"not json",
        b'{"destination": "https://example.com"}',
        b"[]",
        b"[1]",
        b'[{"headers": {}}]',
        b'[{"destination": "https://example.com", "headers": ["a"]}]',
        b'[{"destination": "https://example.com", "queue": "bad queue!"}]',
    ],
)
def test_malformed_batch_is_400(server: RunningServer, http: httpx.Client, body: bytes) -> None:
    refused(http.post("/v2/batch", content=body, headers={"Content-Type": "application/json"}), 400)
    nothing_stored(server)


@pytest.mark.parametrize(
    ("bad_item", "status"),
    [
        ({"destination": "RECEIVER", "headers": {"Upstash-Retries": "99"}}, 400),
        ({"destination": "RECEIVER", "headers": {"Upstash-Forward-X": "a\r\nb"}}, 400),
        ({"destination": "no-such-group"}, 404),
    ],
)
def test_a_bad_item_fails_the_whole_batch(
    server: RunningServer, http: httpx.Client, bad_item: dict[str, Any], status: int
) -> None:
    good = {"destination": NOWHERE + "first", "body": "1"}
    bad = json.loads(json.dumps(bad_item).replace("RECEIVER", NOWHERE + "second"))
    refused(http.post("/v2/batch", json=[good, bad, good]), status)
    nothing_stored(server)
