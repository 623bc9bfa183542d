"""API tokens: stored hashed, compared by digest, never logged, read-only means read-only, and
every /v2/* route refuses a request without a valid token.

How tokens are compared (documented here because a test cannot time it reliably): Homing never
compares the presented token with a stored secret. `SqliteStorage.authenticate` computes
SHA-256 of the presented token and looks the hex digest up in the UNIQUE index on
`tokens.token_hash`. The index compares digests, which an attacker cannot steer byte by byte
(doing so would need SHA-256 preimages), so response times reveal nothing about a valid token's
prefix; and a stolen database holds no usable token. The tests below check the structure this
rests on: the token string is nowhere in the database files, and each stored `token_hash` is
exactly SHA-256(token).
"""

from __future__ import annotations

import hashlib
import re
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from contextlib import closing
from pathlib import Path
from typing import Any

import httpx
from starlette.routing import Route

from homing.api.app import ROUTES
from tests.reliability.support import HomingProcess, SinkProcess
from tests.support.server import RunningServer
from tests.support.waiting import wait_until


def cli_token(data_dir: str | Path, *args: str) -> str:
    """`python -m homing tokens create ...` against a running server's data dir; the token."""
    done = subprocess.run(
        [sys.executable, "-m", "homing", "tokens", "create", *args, "--data-dir", str(data_dir)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return done.stdout.strip().splitlines()[-1]


def cli(data_dir: str | Path, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "homing", "tokens", *args, "--data-dir", str(data_dir)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return done.stdout


def test_tokens_are_stored_as_sha256_digests_and_never_logged(tmp_path: Path) -> None:
    """`homing serve` at debug level with JSON logs; tokens used right, wrong, in the query
    string and in a destination URL; afterwards no database file, log line, response or delivery
    contains a token or a signing key."""
    operator = "hmg_operator_" + hashlib.sha256(b"operator-secret").hexdigest()[:32]
    current, nxt = "sig_OperatorCurrentKey0123456789ab", "sig_OperatorNextKey0123456789abcd"
    data_dir = tmp_path / "data"
    sink = SinkProcess()
    homing = HomingProcess(
        data_dir,
        tmp_path / "homing.log",
        mode="serve",
        extra=[
            "--token",
            operator,
            "--current-signing-key",
            current,
            "--next-signing-key",
            nxt,
            "--allow-private-destinations",
            "--log-level",
            "debug",
            "--log-format",
            "json",
        ],
    )
    responses: list[str] = []
    statuses: Counter[str] = Counter()
    try:
        homing.start()
        read_only = cli_token(data_dir, "--read-only", "--account", "x")
        read_write = cli_token(data_dir, "--account", "x", "--name", "rw")
        secrets = {"operator": operator, "read-only": read_only, "read-write": read_write}
        with httpx.Client(base_url=homing.base_url, timeout=10) as client:

            def call(
                label: str, method: str, path: str, token: str | None = None, **kw: Any
            ) -> None:
                headers = dict(kw.pop("headers", {}))
                if token is not None:
                    headers["Authorization"] = f"Bearer {token}"
                answer = client.request(method, path, headers=headers, **kw)
                statuses[f"{label}:{answer.status_code}"] += 1
                responses.append(answer.text + str(dict(answer.headers)))

            dest = sink.url(f"/t?qstash_token={operator}&keep=1")
            call("publish", "POST", f"/v2/publish/{dest}", operator, content=b"hello")
            call(
                "publish-query-token",
                "POST",
                f"/v2/publish/{sink.url('/q')}?qstash_token={operator}",
                content=b"q",
            )
            call(
                "publish-read-write",
                "POST",
                f"/v2/publish/{sink.url('/rw')}",
                read_write,
                content=b"rw",
            )
            call(
                "publish-read-only",
                "POST",
                f"/v2/publish/{sink.url('/ro')}",
                read_only,
                content=b"ro",
            )
            call("keys-read-only", "GET", "/v2/keys", read_only)
            for wrong in (operator[:-1] + "0", operator + "x", operator.upper(), read_only[:-2]):
                call("wrong-token", "GET", "/v2/keys", wrong)
                call("wrong-query-token", "GET", f"/v2/keys?qstash_token={wrong}")
            call("bad-request", "POST", "/v2/publish/not a url", operator)
            call("not-found", "GET", "/v2/messages/msg_nope", operator)
            call("logs", "GET", "/v2/logs", operator)
            assert wait_until(lambda: len(sink.deliveries()) >= 3, timeout=20)
        time.sleep(0.3)
        homing.stop()
        deliveries = sink.deliveries()
    finally:
        homing.stop()
        sink.close()

    files = sorted(p for p in data_dir.iterdir() if p.is_file())
    blobs = {p.name: p.read_bytes() for p in files}
    log_text = homing.log_text()
    found = {
        name: {
            "db files": [f for f, blob in blobs.items() if secret.encode() in blob],
            "log": secret in log_text,
            "responses": sum(secret in r for r in responses),
            "deliveries": sum(secret in str(d) for d in deliveries),
        }
        for name, secret in secrets.items()
    }
    keys_in_log = [k for k in (current, nxt) if k in log_text]
    with closing(sqlite3.connect(data_dir / "homing.db")) as conn:
        stored = {row[0] for row in conn.execute("SELECT token_hash FROM tokens")}
        columns = [row[1] for row in conn.execute("PRAGMA table_info(tokens)")]
    digests = {name: hashlib.sha256(s.encode()).hexdigest() for name, s in secrets.items()}
    print(
        f"\ntokens: db_files={[f'{name}:{len(blob)}B' for name, blob in blobs.items()]} "
        f"log_lines={len(log_text.splitlines())} responses={len(responses)} "
        f"deliveries={len(deliveries)} statuses={dict(statuses)} occurrences={found} "
        f"signing_keys_in_log={len(keys_in_log)} token_columns={columns}"
    )
    assert all(
        not f["db files"] and not f["log"] and not f["responses"] and not f["deliveries"]
        for f in found.values()
    )
    assert keys_in_log == []
    assert set(digests.values()) <= stored  # what is stored is SHA-256(token), nothing else
    assert all(re.fullmatch(r"[0-9a-f]{64}", h) for h in stored)
    assert statuses["publish:201"] == statuses["publish-query-token:201"] == 1
    assert statuses["publish-read-only:403"] == 1 and statuses["keys-read-only:200"] == 1
    assert statuses["wrong-token:401"] == statuses["wrong-query-token:401"] == 4
    delivered_dest = [d for d in deliveries if d[2] == "/t"]
    assert delivered_dest and delivered_dest[0][6] == "/t?keep=1"  # qstash_token stripped


# The one /v2 path that takes no token: a workflow webhook URL (`context.createWebhook`) is
# called by third parties that have no token; the URL, with the run's random id, is the
# capability, and it reaches only an active run of the account it names
# (tests/api/test_workflow_events.py).
WITHOUT_TOKEN = frozenset({"/v2/workflows/hooks/{user_id}/{run_id}/{rest:path}"})


def _v2_routes() -> list[tuple[str, str]]:
    out = []
    for route in ROUTES:
        if (
            isinstance(route, Route)
            and route.path.startswith("/v2/")
            and route.path not in WITHOUT_TOKEN
        ):
            out += [(route.path, m) for m in sorted(route.methods or ()) if m != "HEAD"]
    return out


def _concrete(path: str, method: str, ids: dict[str, str]) -> str:
    rest = {
        "/v2/publish/{rest:path}": "http://127.0.0.1:1/ro",
        "/v2/enqueue/{rest:path}": "q1/http://127.0.0.1:1/ro",
        "/v2/schedules/{rest:path}": "http://127.0.0.1:1/ro",
        "/v2/flowControl/{rest:path}": "fk" if method == "GET" else "fk/pause",
    }
    if path in rest:
        return path.replace("{rest:path}", rest[path])
    for name, value in ids.items():
        path = path.replace("{" + name + "}", value)
    return path


def test_read_only_tokens_change_nothing_and_every_route_needs_a_valid_token(
    start_server: Callable[..., RunningServer],
) -> None:
    server = start_server()
    data_dir = server.settings.data_dir
    read_write = cli_token(data_dir, "--account", "x")
    read_only = cli_token(data_dir, "--read-only", "--account", "x")
    revoked = cli_token(data_dir, "--account", "x", "--name", "to-revoke")
    cli(data_dir, "revoke", "to-revoke")
    rw = httpx.Client(base_url=server.base_url, headers={"Authorization": f"Bearer {read_write}"})
    # Something of every kind in account x, so that the routes have real things to act on.
    rw.post("/v2/queues", json={"queueName": "q1", "parallelism": 1}).raise_for_status()
    rw.post(
        "/v2/topics/g1/endpoints", json={"endpoints": [{"url": "http://127.0.0.1:1/g"}]}
    ).raise_for_status()
    schedule = rw.post(
        "/v2/schedules/http://127.0.0.1:1/s", headers={"Upstash-Cron": "0 0 1 1 *"}
    ).json()
    message = rw.post("/v2/publish/http://127.0.0.1:1/m", headers={"Upstash-Delay": "1h"}).json()
    dead = rw.post("/v2/publish/http://127.0.0.1:1/d", headers={"Upstash-Retries": "0"}).json()
    rw.post(
        "/v2/publish/http://127.0.0.1:1/f",
        headers={
            "Upstash-Flow-Control-Key": "fk",
            "Upstash-Flow-Control-Value": "parallelism=1",
            "Upstash-Delay": "1h",
        },
    ).raise_for_status()
    assert wait_until(lambda: rw.get("/v2/dlq").json()["messages"], timeout=10)
    dlq_id = rw.get("/v2/dlq").json()["messages"][0]["dlqId"]
    ids = {
        "message_id": message["messageId"],
        "dlq_id": dlq_id,
        "queue": "q1",
        "group": "g1",
        "schedule_id": schedule["scheduleId"],
        "action": "pause",
    }

    def snapshot() -> list[Any]:
        return [
            rw.get(p).json()
            for p in (
                "/v2/queues",
                "/v2/topics",
                "/v2/schedules",
                "/v2/keys",
                "/v2/dlq",
                f"/v2/messages/{message['messageId']}",
                f"/v2/messages/{dead['messageId']}",
                "/v2/flowControl",
            )
        ]

    before = snapshot()
    anonymous = httpx.Client(base_url=server.base_url)
    bad_credentials: dict[str, dict[str, str]] = {
        "no token": {},
        "wrong token": {
            "Authorization": f"Bearer {read_write[:-1]}{'A' if read_write[-1] != 'A' else 'B'}"
        },
        "revoked token": {"Authorization": f"Bearer {revoked}"},
        "empty bearer": {"Authorization": "Bearer"},
        "basic auth": {"Authorization": f"Basic {read_write}"},
        "token without scheme": {"Authorization": read_write},
        "token as header value": {"X-Api-Key": read_write},
    }
    unauthenticated: list[tuple[str, str, str, int]] = []
    read_only_results: Counter[str] = Counter()
    read_only_wrong: list[tuple[str, str, int]] = []
    routes = _v2_routes()
    for path, method in routes:
        target = _concrete(path, method, ids)
        for label, headers in bad_credentials.items():
            status = anonymous.request(method, target, headers=headers).status_code
            if status != 401:
                unauthenticated.append((method, path, label, status))
        status = anonymous.request(
            method, target + ("&" if "?" in target else "?") + "qstash_token=nope"
        ).status_code
        if status != 401:
            unauthenticated.append((method, path, "wrong qstash_token", status))
        status = anonymous.request(
            method, target, headers={"Authorization": f"Bearer {read_only}"}
        ).status_code
        read_only_results[f"{method}:{status}"] += 1
        expected_ok = status not in (401, 403) if method == "GET" else status == 403
        if not expected_ok:
            read_only_wrong.append((method, path, status))
    after = snapshot()
    print(
        f"\naccess control: /v2 routes={len(routes)} "
        f"bad_credential_kinds={len(bad_credentials) + 1} "
        f"requests_without_valid_token={len(routes) * (len(bad_credentials) + 1)} "
        f"not_401={len(unauthenticated)} read_only={dict(read_only_results)} "
        f"read_only_wrong={read_only_wrong} state_unchanged={before == after}"
    )
    assert len(routes) >= 35
    assert unauthenticated == []
    assert read_only_wrong == []
    assert before == after, "a read-only token changed something"
