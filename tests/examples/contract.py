"""What every example app must do against a real Homing; each test module runs these cases."""

from __future__ import annotations

import base64
import hashlib
import json
import time
import uuid
from typing import Any

import jwt
from qstash import QStash

from tests.examples.harness import Entry, ExampleApp
from tests.support.server import DEV_CURRENT_KEY, DEV_TOKEN

USER_EVENT_ENDPOINTS = ("analytics", "notifications", "crm")


def new_user() -> str:
    return f"user_{uuid.uuid4().hex[:10]}"


def for_user(task: str, user: str) -> Any:
    return lambda e: e["task"] == task and (e["body"] or {}).get("userId") == user


def sign(url: str, body: bytes, key: str = DEV_CURRENT_KEY, **claims: Any) -> str:
    """An Upstash-Signature as QStash would make it (section 10.1), or a forged variant."""
    now = int(time.time())
    digest = base64.urlsafe_b64encode(hashlib.sha256(body).digest()).decode()
    payload = {"iss": "Upstash", "sub": url, "iat": now, "nbf": 0, "exp": now + 300,
               "jti": f"jwt_{uuid.uuid4().hex}", "body": digest} | claims  # fmt: skip
    return jwt.encode(payload, key, algorithm="HS256")


class TaskAppContract:
    """Test cases shared by the example apps; subclasses provide the `example` fixture."""

    def test_immediate_task_runs_at_once(self, example: ExampleApp) -> None:
        user = new_user()
        sent = time.time()
        res = example.trigger("immediate", {"userId": user, "operation": "export"})
        [entry] = example.wait_for("process-user-data", for_user("process-user-data", user))
        assert entry["messageId"] == res["messageId"]
        assert entry["status"] == 200 and entry["retried"] == 0
        assert entry["body"] == {"userId": user, "operation": "export"}
        assert entry["at"] / 1000 - sent < 3.0

    def test_delayed_task_runs_after_its_delay_and_not_before(self, example: ExampleApp) -> None:
        user = new_user()
        sent = time.time()
        res = example.trigger("delayed", {"userId": user, "operation": "analyze", "delay": 2})
        time.sleep(max(0.0, sent + 1.5 - time.time()))
        assert not [e for e in example.log() if for_user("process-user-data", user)(e)]
        [entry] = example.wait_for("delayed task", for_user("process-user-data", user))
        assert entry["messageId"] == res["messageId"]
        ran_after = entry["at"] / 1000 - sent
        assert 2.0 - 0.01 <= ran_after < 8.0, ran_after

    def test_scheduled_task_runs_on_its_cron(self, example: ExampleApp) -> None:
        sdk = QStash(DEV_TOKEN, base_url=example.homing_url)
        # Without an override the app schedules the nightly cleanup.
        res = example.trigger("scheduled")
        schedule = sdk.schedule.get(res["scheduleId"])
        assert schedule.cron == "0 2 * * *"
        assert schedule.destination == f"{example.base_url}/api/tasks/daily-cleanup"

        # The override replaces it (same schedule id) with a seconds cron, for the test.
        since = time.time() * 1000
        again = example.trigger("scheduled", {"cron": "*/2 * * * * *"})
        assert again["scheduleId"] == res["scheduleId"]
        assert sdk.schedule.get(res["scheduleId"]).cron == "*/2 * * * * *"
        runs = example.wait_for(
            "daily-cleanup fires",
            lambda e: e["task"] == "daily-cleanup" and e["at"] >= since,
            count=2,
            timeout=10,
        )
        assert all(e["status"] == 200 for e in runs)
        assert runs[0]["body"] == {"scope": "expired-sessions"}
        assert len({e["messageId"] for e in runs}) == len(runs)
        assert runs[1]["at"] - runs[0]["at"] >= 1500  # one fire per 2 s tick, not a burst

        example.http.delete("/api/trigger/scheduled").raise_for_status()
        time.sleep(0.5)  # let a fire already in flight land
        settled = len([e for e in example.log() if e["task"] == "daily-cleanup"])
        time.sleep(2.5)
        assert len([e for e in example.log() if e["task"] == "daily-cleanup"]) == settled

    def test_fan_out_runs_once_per_endpoint(self, example: ExampleApp) -> None:
        user = new_user()
        res = example.trigger("fan-out", {"userId": user, "type": "user.signed_up"})
        assert sorted(m["url"] for m in res["messages"]) == sorted(
            f"{example.base_url}/api/tasks/user-events/{name}" for name in USER_EVENT_ENDPOINTS
        )

        def mine(e: Entry) -> bool:
            return bool(e["task"].startswith("user-events/") and e["body"]["userId"] == user)

        example.wait_for("one delivery per endpoint", mine, count=len(USER_EVENT_ENDPOINTS))
        time.sleep(0.5)  # nothing arrives twice
        runs = [e for e in example.log() if mine(e)]
        assert sorted(e["task"] for e in runs) == sorted(
            f"user-events/{name}" for name in USER_EVENT_ENDPOINTS
        )
        assert {e["messageId"] for e in runs} == {m["messageId"] for m in res["messages"]}
        assert all(e["body"] == {"userId": user, "type": "user.signed_up"} for e in runs)

    def test_onboarding_sequence_runs_in_order(self, example: ExampleApp) -> None:
        user = new_user()
        steps = 5
        res = example.trigger("onboarding", {"userId": user, "steps": steps})
        runs = example.wait_for("onboarding steps", for_user("onboarding-step", user), steps)
        assert [e["body"]["step"] for e in runs] == list(range(1, steps + 1))
        assert [e["messageId"] for e in runs] == res["messageIds"]
        assert all(e["status"] == 200 for e in runs)
        assert [e["at"] for e in runs] == sorted(e["at"] for e in runs)

    def test_forged_requests_are_rejected(self, example: ExampleApp) -> None:
        path = "/api/tasks/process-user-data"
        url = f"{example.base_url}{path}"
        user = new_user()
        body = json.dumps({"userId": user, "operation": "export"}).encode()
        json_type = {"Content-Type": "application/json"}

        def post(route: str, signature: str | None, data: bytes = body) -> int:
            headers = json_type | ({"Upstash-Signature": signature} if signature else {})
            return example.http.post(route, content=data, headers=headers).status_code

        task_routes = [path, "/api/tasks/daily-cleanup", "/api/tasks/onboarding-step"] + [
            f"/api/tasks/user-events/{name}" for name in USER_EVENT_ENDPOINTS
        ]
        for route in task_routes:
            assert post(route, None) == 401, route
            assert post(route, None, b"not json") == 401, route
        assert post(path, "not-a-jwt") == 401
        assert post(path, sign(url, body, key="sig_" + "x" * 28)) == 401
        assert post(path, sign(f"{example.base_url}/api/tasks/daily-cleanup", body)) == 401
        assert post(path, sign(url, body), body.replace(b"export", b"cleanup")) == 401
        assert post(path, sign(url, body, exp=int(time.time()) - 60)) == 401
        assert post(path, sign(url, body, iss="Someone")) == 401
        assert not [e for e in example.log() if (e["body"] or {}).get("userId") == user]

        # Control: the same request, properly signed, is accepted.
        assert post(path, sign(url, body)) == 200
        example.wait_for("the properly signed request", for_user("process-user-data", user))

    def test_failing_task_is_retried_then_dead_lettered(self, example: ExampleApp) -> None:
        user = new_user()
        payload = {"userId": user, "operation": "cleanup", "fail": True}
        res = example.trigger("immediate", payload | {"retries": 2})
        attempts = example.wait_for("3 attempts", for_user("process-user-data", user), 3)
        assert [e["retried"] for e in attempts] == [0, 1, 2]
        assert all(e["status"] == 500 and e["messageId"] == res["messageId"] for e in attempts)

        sdk = QStash(DEV_TOKEN, base_url=example.homing_url)
        deadline = time.monotonic() + 10
        while True:
            dead = [m for m in sdk.dlq.list().messages if m.message_id == res["messageId"]]
            if dead or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert dead, f"message not in the DLQ\n{example.diagnostics()}"
        assert dead[0].url == f"{example.base_url}/api/tasks/process-user-data"
        assert dead[0].response_status == 500
        assert json.loads(dead[0].body or "null") == payload
        time.sleep(0.3)  # no attempt after dead-lettering
        assert len([e for e in example.log() if for_user("process-user-data", user)(e)]) == 3
