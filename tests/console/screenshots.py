"""Screenshots of the console's main pages, for the docs.

    PYTHONPATH=. .venv/bin/python -m tests.console.screenshots [OUT_DIR]

Runs a dev-mode Homing on a manual clock, replays a day of made-up traffic against a local
receiver (some destinations fail, a queue backs up, schedules fire), then has headless Chromium
photograph each page into OUT_DIR (default docs/screenshots).
"""

from __future__ import annotations

import random
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from playwright.sync_api import sync_playwright

from homing.clock import ManualClock
from homing.config import Settings, dev_accounts
from tests.console.support import (
    CHROMIUM_ARGS,
    api,
    chromium_or_skip,
    dlq_ids,
    down_destination,
    publish,
)
from tests.support.receiver import Receiver, Reply
from tests.support.server import RunningServer, free_port
from tests.support.workflows import publish_step, start_run

MINUTE = 60_000
PAGES = {
    "overview": "/console/",
    "messages": "/console/messages",
    "dlq": "/console/dlq",
    "runs": "/console/runs",
    "run": "/console/runs/wfr_onboard_005",
    "schedules": "/console/schedules",
    "queues": "/console/queues",
    "keys": "/console/keys",
}


def _settle(server: RunningServer, steps: int = 4) -> None:
    """Let deliveries in flight finish while the clock creeps (so latencies are not all 0)."""
    for _ in range(steps):
        server.advance(random.randint(5, 60))
        time.sleep(0.01)


def seed_runs(server: RunningServer, receiver: Receiver) -> None:
    """A handful of workflow runs: finished, failed, canceled and still running."""
    ok = Reply(200, b"{}", {"Upstash-Workflow-Sdk-Version": "1"})
    receiver.on("/workflows/onboarding", lambda _: ok)
    receiver.on("/workflows/invoice", lambda _: Reply(500, b'{"error":"PDF renderer down"}'))
    client = api(server)
    onboarding = receiver.url("/workflows/onboarding")
    steps = ["create account", "send welcome email", "schedule follow-up"]
    for n in range(6):
        run_id = f"wfr_onboard_{n:03d}"
        headers = {"upstash-forward-authorization": "Bearer sk_live_51HxSecretValue"}
        start_run(client, run_id, onboarding, f'{{"user":"u-{n}","plan":"team"}}', **headers)
        for index, name in enumerate(steps[: 1 + n % 3], start=1):
            out = '"ok"'
            step = {"stepId": index, "stepName": name, "stepType": "Run", "out": out}
            publish_step(client, run_id, onboarding, step).raise_for_status()
            _settle(server, 1)
        if n % 3 == 2:
            client.request("DELETE", f"/v2/workflows/runs/{run_id}?cancel=false", content=b'"done"')
        _settle(server, 2)
        server.advance(random.randint(2, 9) * MINUTE)
    client.request("DELETE", "/v2/workflows/runs/wfr_onboard_004?cancel=true")
    start_run(
        client,
        "wfr_invoice_7f3a",
        receiver.url("/workflows/invoice"),
        '{"invoice":1042}',
        **{"upstash-retries": "0"},
    )
    _settle(server, 10)


def seed(server: RunningServer, receiver: Receiver) -> str:
    """A day of traffic; returns the id of a message that failed."""
    random.seed(7)
    receiver.on("/ok", lambda _: Reply(200, b'{"status":"ok"}'))
    receiver.on("/slow", lambda _: Reply(200, b"done", delay_s=0.01))
    receiver.on("/gone", lambda _: Reply(404, b"<html><body>Not Found</body></html>"))
    down_destination(receiver, "/payments")
    client = api(server)
    client.post("/v2/queues", json={"queueName": "emails", "parallelism": 2}).raise_for_status()
    client.post("/v2/queues", json={"queueName": "reports", "parallelism": 1}).raise_for_status()
    client.post(
        "/v2/topics/order-events/endpoints",
        json={
            "endpoints": [
                {"name": "billing", "url": receiver.url("/ok")},
                {"name": "warehouse", "url": receiver.url("/slow")},
            ]
        },
    ).raise_for_status()
    cron = {"Upstash-Cron": "*/15 * * * *"}
    client.post(f"/v2/schedules/{receiver.url('/ok')}", headers=cron).raise_for_status()
    client.post(
        f"/v2/schedules/{receiver.url('/slow')}",
        headers={"Upstash-Cron": "CRON_TZ=Europe/Berlin 0 9 * * MON-FRI"},
    ).raise_for_status()
    # The day: sparse half-hours, then the last hour minute by minute.
    steps = [30 * MINUTE] * 46 + [MINUTE] * 60
    failed = ""
    for index, step in enumerate(steps):
        if index == 50:  # early in the last hour: time to go through its retries
            failed = publish(
                client,
                receiver.url("/payments?tenant=acme&api_key=sk_live_51Hx"),
                '{"amount":4200,"currency":"EUR"}',
                **{
                    "Upstash-Retries": "2",
                    "Upstash-Forward-Authorization": "Bearer sk_live_51HxSecretValue",
                    "Upstash-Label": "payments",
                    "Content-Type": "application/json",
                },
            )
        busy = 1 + (index % 7 == 0) * 3 + random.randint(0, 3)
        if step > MINUTE:  # a half hour's worth in one batch
            busy *= 12
        item = {"destination": receiver.url("/ok"), "body": '{"event":"signup"}'}
        client.post("/v2/batch", json=[item] * busy).raise_for_status()
        if random.random() < 0.5:
            publish(client, "order-events", '{"order":1042}', **{"Upstash-Label": "orders"})
        if random.random() < 0.35:
            publish(
                client, receiver.url("/payments"), '{"amount":1299}', **{"Upstash-Retries": "1"}
            )
        if random.random() < 0.15:
            publish(client, receiver.url("/gone"), "ping", **{"Upstash-Retries": "0"})
        if random.random() < 0.6:
            client.post(f"/v2/enqueue/emails/{receiver.url('/ok')}", content="welcome")
        _settle(server)
        server.advance(step - 100)
    client.post("/v2/queues/reports/pause").raise_for_status()
    for n in range(7):
        client.post(f"/v2/enqueue/reports/{receiver.url('/ok')}", content=f"report {n}")
    publish(client, receiver.url("/ok"), "<script>alert('xss')</script>")
    _settle(server, 10)
    if failed not in dlq_ids(client):
        raise SystemExit(f"the failing message {failed} did not reach the DLQ")
    return failed


def shoot(base_url: str, out: Path, failed_id: str) -> list[Path]:
    saved = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium_or_skip(), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1360, "height": 1000})
        pages = {**PAGES, "message": f"/console/messages/{failed_id}"}
        for name, path in pages.items():
            page.goto(base_url + path)
            if name == "schedules":  # show the live preview of a new schedule
                page.fill("input[name=destination]", "https://example.com/reports/daily")
                page.fill("input[name=tz]", "America/New_York")
                page.fill("input[name=cron]", "30 8 * * MON-FRI")
                page.wait_for_selector("[data-cron-preview] li")
            target = out / f"console-{name}.png"
            # Long lists are cut at one screen; the other pages are shown whole.
            page.screenshot(path=str(target), full_page=name not in ("messages", "dlq", "runs"))
            saved.append(target)
        browser.close()
    return saved


def main() -> None:
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "docs/screenshots")
    out.mkdir(parents=True, exist_ok=True)
    now_ms = int(time.time() * 1000)
    clock = ManualClock(start_ms=now_ms - 24 * 60 * MINUTE)
    receiver = Receiver()
    with tempfile.TemporaryDirectory() as tmp:
        settings = replace(
            Settings(),
            mode="dev",
            port=free_port(),
            data_dir=tmp,
            accounts=dev_accounts(),
            shutdown_timeout_s=1.0,
        )
        server = RunningServer(settings, clock=clock).start()
        try:
            failed = seed(server, receiver)
            seed_runs(server, receiver)
            for path in shoot(server.base_url, out, failed):
                print(path)
        finally:
            server.stop()
            receiver.close()


if __name__ == "__main__":
    main()
