"""Signatures (spec 10): every real delivery verifies with both official receivers, across a key
rotation; no mutated delivery verifies with either.

1,000 deliveries of varied bodies (empty, ASCII, JSON, non-Latin scripts, emoji, 20 KB) to
varied URLs (paths, query strings, percent-escapes) are captured at a real receiver; 500 before
and 500 after `POST /v2/keys/rotate`. Each is verified with the Python SDK's `Receiver` and the
TypeScript SDK's `Receiver` (node, tests/security/ts). Then 10,000 mutated deliveries, ten per
real one, one of each kind below, must be refused by both:

    body      a changed, appended, emptied or re-normalised (NFD) body
    url       the receiver's URL differs (path, query, host)
    claims    re-signed WITH THE REAL KEY but with a wrong iss, sub or body claim, or no body
    expiry    re-signed with the real key, expired (exp in the past) or not yet valid (nbf)
    key       the real claims signed with another key (random, another account's, the real
              key with one character changed, or its base64-decoded bytes)
    algorithm alg "none" without signature, HS384/HS512 with a wrong key, or the header's alg
              switched to HS512/RS256/ES256 while keeping the HS256 signature
    encoding  payload re-encoded as standard base64 with padding, one signature character
              changed (never the last, whose low bits may be unused), the signature truncated
              or hex-encoded, a segment added or removed, the token lower-cased

The TypeScript half is skipped when tests/security/ts/node_modules is missing, and FAILS when
the environment variable CI is set (CI must run `npm ci` there; see scripts/install).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import random
import shutil
import subprocess
import time
import unicodedata
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from qstash import Receiver as SignatureReceiver

from homing.config import DEV_USERS
from tests.reliability.support import SinkProcess
from tests.support.server import DEV_CURRENT_KEY, DEV_NEXT_KEY, DEV_TOKEN, RunningServer
from tests.support.waiting import wait_until

TS_DIR = Path(__file__).with_name("ts")
DELIVERIES = 1000
MUTATIONS_PER_DELIVERY = 10
BODIES = [
    "",
    "plain text",
    '{"order": 17, "items": [1, 2, 3]}',
    "Grüße aus Köln — ünïcödé",
    "日本語のメッセージ",
    "emoji 🚀🔥✅",
    "line one\nline two\r\n\ttabbed",
    "x" * 20_000,
]


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def body_hash(body: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(body.encode()).digest()).decode()


Case = dict[str, str]


def mutations(case: Case, rng: random.Random) -> list[tuple[str, Case]]:
    """Ten mutated versions of a genuine case, one of each kind."""
    sig, body, url, key = case["signature"], case["body"], case["url"], case["current"]
    header_b64, payload_b64, sig_b64 = sig.split(".")
    claims = json.loads(b64url_decode(payload_b64))
    now = int(time.time())

    def with_(**changes: str) -> Case:
        return {**case, **changes}

    def resign(**claim_changes: Any) -> str:
        doc = {**claims, **claim_changes}
        doc = {k: v for k, v in doc.items() if v is not None}
        return jwt.encode(doc, key.encode(), algorithm="HS256")

    def changed_char(text: str, limit: int) -> str:
        i = rng.randrange(limit)
        alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
        return text[:i] + rng.choice([c for c in alphabet if c != text[i]]) + text[i + 1 :]

    other_key = DEV_USERS[1][1]
    body_variants = [
        body + " ",
        (changed_char(body, len(body)) if body else "x"),
        ("" if body else "{}"),
        (
            unicodedata.normalize("NFD", body)
            if unicodedata.normalize("NFD", body) != body
            else body + "\u200b"
        ),
    ]
    url_variants = [
        url + "x",
        url.replace("/sig/", "/sig2/"),
        url.split("?")[0] + "?evil=1",
        url.replace("127.0.0.1", "localhost"),
    ]
    claim_variants = [
        resign(iss="Upstash2"),
        resign(iss=None),
        resign(sub=url + "/other"),
        resign(body=body_hash(body + "!")),
        resign(body=None),
    ]
    expiry_variants = [
        resign(iat=now - 900, exp=now - 600),
        resign(exp=now - 1),
        resign(nbf=now + 3600),
    ]
    key_variants = [
        jwt.encode(
            claims,
            ("sig_" + "".join(rng.choices("abcdefXYZ0123", k=28))).encode(),
            algorithm="HS256",
        ),
        jwt.encode(claims, other_key.encode(), algorithm="HS256"),
        jwt.encode(claims, changed_char(key, len(key)).encode(), algorithm="HS256"),
        jwt.encode(
            claims, base64.b64decode(key[4:] + "=" * (-len(key[4:]) % 4)), algorithm="HS256"
        ),
    ]
    none_header = b64url(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    algorithm_variants = [
        f"{none_header}.{payload_b64}.",
        f"{none_header}.{payload_b64}.{sig_b64}",
        jwt.encode(claims, b"wrong-key-" + os.urandom(8), algorithm="HS512"),
        jwt.encode(claims, b"wrong-key-" + os.urandom(8), algorithm="HS384"),
        f"{b64url(json.dumps({'alg': 'HS512', 'typ': 'JWT'}).encode())}.{payload_b64}.{sig_b64}",
        f"{b64url(json.dumps({'alg': 'RS256', 'typ': 'JWT'}).encode())}.{payload_b64}.{sig_b64}",
        f"{b64url(json.dumps({'alg': 'ES256', 'typ': 'JWT'}).encode())}.{payload_b64}.{sig_b64}",
    ]
    std_payload = base64.b64encode(b64url_decode(payload_b64)).decode()  # padded, maybe +/
    if std_payload == payload_b64:  # no padding needed and no -_ in it: not a change at all
        std_payload += "=="
    encoding_variants = [
        f"{header_b64}.{std_payload}.{sig_b64}",
        f"{header_b64}.{payload_b64}.{changed_char(sig_b64, len(sig_b64) - 1)}",
        f"{header_b64}.{payload_b64}.{sig_b64[:-4]}",
        f"{header_b64}.{payload_b64}.{b64url_decode(sig_b64).hex()}",
        f"{header_b64}.{payload_b64}.{sig_b64}.{sig_b64}",
        f"{header_b64}.{payload_b64}",
        sig.lower(),
        f"{header_b64}.{changed_char(payload_b64, len(payload_b64) - 1)}.{sig_b64}",
    ]
    return [
        ("body", with_(body=rng.choice(body_variants))),
        ("body", with_(body=body_variants[0])),
        ("url", with_(url=rng.choice(url_variants))),
        ("claims", with_(signature=rng.choice(claim_variants))),
        ("expiry", with_(signature=rng.choice(expiry_variants))),
        ("key", with_(signature=rng.choice(key_variants))),
        ("algorithm", with_(signature=rng.choice(algorithm_variants))),
        ("algorithm", with_(signature=algorithm_variants[0])),
        ("encoding", with_(signature=rng.choice(encoding_variants))),
        ("encoding", with_(signature=encoding_variants[1])),
    ]


def python_accepts(case: Case) -> bool:
    try:
        SignatureReceiver(case["current"], case["next"]).verify(
            signature=case["signature"], body=case["body"], url=case["url"]
        )
    except Exception:  # SignatureError, or e.g. KeyError for a token without a body claim
        return False
    return True


def ts_available() -> bool:
    if (TS_DIR / "node_modules" / "@upstash" / "qstash").is_dir() and shutil.which("node"):
        return True
    if os.environ.get("CI"):
        pytest.fail(
            f"CI must install the TypeScript receiver: (cd {TS_DIR} && npm ci); node is "
            f"{'present' if shutil.which('node') else 'missing'}"
        )
    return False


def typescript_accepts(cases: list[Case], tmp_path: Path) -> tuple[list[bool], dict[str, int]]:
    path = tmp_path / "cases.json"
    path.write_text(json.dumps({"cases": cases}))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("QSTASH_", "UPSTASH_"))}
    done = subprocess.run(
        ["node", str(TS_DIR / "verify.mjs"), str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=TS_DIR,
        env=env,
        check=True,
    )
    doc = json.loads(done.stdout)
    return [bool(a) for a in doc["accepted"]], doc["errors"]


def capture(server: RunningServer, sink: SinkProcess, start: int, count: int) -> list[list[Any]]:
    with httpx.Client(
        base_url=server.base_url, headers={"Authorization": f"Bearer {DEV_TOKEN}"}
    ) as c:
        items = [
            {
                "destination": sink.url(
                    f"/sig/{n}/{['a', 'b%20c', '%C3%BC'][n % 3]}?n={n}&q=x%2Fy&e="
                ),
                "body": BODIES[n % len(BODIES)],
                "headers": {"Content-Type": "text/plain"},
            }
            for n in range(start, start + count)
        ]
        ids: list[str] = []
        for i in range(0, count, 100):
            answer = c.post("/v2/batch", json=items[i : i + 100])
            assert answer.status_code == 201, answer.text
            ids += [r["messageId"] for r in answer.json()]
    wanted = set(ids)
    assert wait_until(lambda: wanted <= set(sink.ids()), timeout=60)
    return [d for d in sink.deliveries() if d[0] in wanted]


@pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")  # short wrong keys
def test_deliveries_verify_with_both_sdks_across_a_rotation_and_mutations_with_neither(
    start_server: Callable[..., RunningServer], tmp_path: Path
) -> None:
    started = time.monotonic()
    rng = random.Random(20240917)
    server = start_server()
    sink = SinkProcess()
    try:
        before = capture(server, sink, 0, DELIVERIES // 2)
        with httpx.Client(
            base_url=server.base_url, headers={"Authorization": f"Bearer {DEV_TOKEN}"}
        ) as c:
            rotated = c.post("/v2/keys/rotate").json()
        after = capture(server, sink, DELIVERIES // 2, DELIVERIES // 2)
    finally:
        sink.close()
    assert rotated["current"] == DEV_NEXT_KEY

    def case(d: list[Any], current: str, nxt: str) -> Case:
        return {
            "signature": d[5],
            "body": d[3],
            "url": sink.url(d[6]),
            "current": current,
            "next": nxt,
        }

    old_pair = [case(d, DEV_CURRENT_KEY, DEV_NEXT_KEY) for d in before + after]
    new_pair = [case(d, rotated["current"], rotated["next"]) for d in after]
    signed_by = Counter(
        "old current"
        if _signed_with(d[5], DEV_CURRENT_KEY)
        else "new current"
        if _signed_with(d[5], rotated["current"])
        else "other"
        for d in before + after
    )
    mutated = [(kind, m) for c in old_pair for kind, m in mutations(c, rng)]
    py_genuine = sum(map(python_accepts, old_pair + new_pair))
    py_mutated = [kind for kind, m in mutated if python_accepts(m)]
    ts_note = "skipped (no tests/security/ts/node_modules)"
    ts_genuine, ts_mutated_kinds, ts_errors = -1, [], {}
    if ts_available():
        verdicts, _ = typescript_accepts(old_pair + new_pair, tmp_path)
        ts_genuine = sum(verdicts)
        verdicts, ts_errors = typescript_accepts([m for _, m in mutated], tmp_path)
        ts_mutated_kinds = [kind for (kind, _), ok in zip(mutated, verdicts, strict=True) if ok]
        ts_note = (
            f"genuine_accepted={ts_genuine}/{len(old_pair) + len(new_pair)} "
            f"mutated_accepted={len(ts_mutated_kinds)}"
        )
    kinds = Counter(kind for kind, _ in mutated)
    print(
        f"\nsignatures: deliveries={len(before) + len(after)} "
        f"(before rotation {len(before)}, after "
        f"{len(after)}) signed_by={dict(signed_by)} | python: genuine_accepted={py_genuine}/"
        f"{len(old_pair) + len(new_pair)} mutated={len(mutated)} {dict(kinds)} "
        f"mutated_accepted={len(py_mutated)} | typescript: {ts_note} "
        f"ts_refusals={dict(sorted(ts_errors.items(), key=lambda kv: -kv[1])[:4])} "
        f"seconds={time.monotonic() - started:.1f}"
    )
    assert len(before) + len(after) == DELIVERIES
    assert signed_by == {"old current": len(before), "new current": len(after)}
    assert py_genuine == len(old_pair) + len(new_pair)
    assert len(mutated) == DELIVERIES * MUTATIONS_PER_DELIVERY
    assert py_mutated == [], f"the Python receiver accepted mutations: {Counter(py_mutated)}"
    if ts_genuine < 0:
        pytest.skip("TypeScript receiver not installed: (cd tests/security/ts && npm ci)")
    assert ts_genuine == len(old_pair) + len(new_pair)
    assert ts_mutated_kinds == [], f"the TypeScript receiver accepted: {Counter(ts_mutated_kinds)}"


def _signed_with(token: str, key: str) -> bool:
    try:
        jwt.decode(token, key.encode(), algorithms=["HS256"], options={"verify_exp": False})
    except jwt.InvalidTokenError:
        return False
    return True
