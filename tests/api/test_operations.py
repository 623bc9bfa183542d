"""Operating Homing: metrics, health probes, trace context, tokens, import, configuration docs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from qstash import QStash

from homing.cli import config_reference
from homing.storage.sqlite.backend import SqliteStorage
from tests.conftest import ServerFactory
from tests.support.cli import homing, run_homing
from tests.support.http import AUTH
from tests.support.receiver import Receiver
from tests.support.server import DEV_TOKEN, RunningServer
from tests.support.waiting import wait_until

ROOT = Path(__file__).resolve().parents[2]


def _metrics(server: RunningServer) -> dict[str, float]:
    text = httpx.get(server.base_url + "/metrics").text
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            key = sample.name + "".join(f"|{k}={v}" for k, v in sorted(sample.labels.items()))
            out[key] = sample.value
    return out


def test_metrics_count_published_and_delivered_messages(
    client: QStash, server: RunningServer, receiver: Receiver
) -> None:
    for _ in range(3):
        client.message.publish(url=receiver.url("/m"), body="x")
    receiver.wait_for(3, "/m")
    for _ in range(100):
        metrics = _metrics(server)
        if metrics.get("homing_messages_delivered_total|account=defaultUser|host=127.0.0.1") == 3:
            break
    assert metrics["homing_messages_delivered_total|account=defaultUser|host=127.0.0.1"] == 3
    assert metrics["homing_delivery_latency_seconds_count"] >= 3
    assert "homing_messages|state=delivered" in metrics


def test_metrics_can_be_protected_or_turned_off(
    start_server: ServerFactory, tmp_path: Path
) -> None:
    protected = start_server(metrics_token="scrape-me")
    assert httpx.get(protected.base_url + "/metrics").status_code == 401
    ok = httpx.get(protected.base_url + "/metrics", headers={"Authorization": "Bearer scrape-me"})
    assert ok.status_code == 200


def test_health_and_readiness_probes_need_no_token(server: RunningServer) -> None:
    assert httpx.get(server.base_url + "/healthz").json() == {"status": "ok"}
    assert httpx.get(server.base_url + "/readyz").status_code == 200


def test_readiness_fails_when_the_store_is_down(server: RunningServer) -> None:
    server.run(server.services.storage.close)
    assert httpx.get(server.base_url + "/readyz").status_code == 503
    assert httpx.get(server.base_url + "/healthz").status_code == 200


class ReaperFailing(SqliteStorage):
    """The real SQLite store, with one fault that the test switches on and off: releasing
    expired leases (the reaper's one job) raises, as a broken database connection would."""

    failing = False

    async def release_expired_leases(self, *, now_ms: int) -> int:
        if self.failing:
            raise ConnectionError("connection reset by peer")
        return await super().release_expired_leases(now_ms=now_ms)


@pytest.mark.timeout(30)
def test_a_failing_side_task_is_logged_counted_and_makes_the_node_unready_until_it_recovers(
    start_server: ServerFactory, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The reaper runs every 2 s; while it fails the node says so on /readyz and in /metrics,
    and once it succeeds again the node is ready again by itself."""
    store = ReaperFailing(str(tmp_path / "faulty.db"))
    server = start_server(storage=store)
    assert httpx.get(server.base_url + "/readyz").status_code == 200

    store.failing = True
    assert wait_until(
        lambda: httpx.get(server.base_url + "/readyz").status_code == 503, timeout=6
    ), "the node stayed ready while its reaper failed"
    answer = httpx.get(server.base_url + "/readyz").json()
    assert answer["problems"]["engine.reap"] == ("lease reaper failing: connection reset by peer")
    assert "engine.reap: lease reaper failing" in answer["error"]
    assert _metrics(server)["homing_task_failures_total|task=engine.reap"] >= 1
    failed = [r for r in caplog.records if getattr(r, "event", None) == "engine.reap_failed"]
    assert failed and failed[0].levelname == "ERROR"

    store.failing = False
    assert wait_until(
        lambda: httpx.get(server.base_url + "/readyz").status_code == 200, timeout=6
    ), "the node stayed unready after its reaper recovered"
    assert httpx.get(server.base_url + "/readyz").json() == {"status": "ready"}


def test_trace_context_reaches_the_receiver(server: RunningServer, receiver: Receiver) -> None:
    traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    response = httpx.post(
        f"{server.base_url}/v2/publish/{receiver.url('/traced')}",
        headers={**AUTH, "traceparent": traceparent, "tracestate": "vendor=1"},
        content=b"x",
    )
    assert response.status_code == 201
    [got] = receiver.wait_for(1, "/traced")
    assert got.headers["traceparent"] == traceparent
    assert got.headers["tracestate"] == "vendor=1"
    message = httpx.get(
        f"{server.base_url}/v2/messages/{response.json()['messageId']}", headers=AUTH
    )
    assert "traceparent" not in message.text  # kept outside the visible headers


@pytest.mark.sqlite_only("the tokens CLI finds the server's store by --data-dir (its SQLite file)")
def test_tokens_created_by_the_cli_work_and_revocation_is_immediate(server: RunningServer) -> None:
    data = ["--data-dir", server.settings.data_dir]
    out = homing("tokens", "create", "--account", "team-a", "--name", "ci", *data)
    token = out.strip().splitlines()[-1]
    headers = {"Authorization": f"Bearer {token}"}
    assert httpx.get(server.base_url + "/v2/queues", headers=headers).json() == []
    assert "ci" in homing("tokens", "list", *data)
    assert token not in homing("tokens", "list", *data)  # never shown again

    homing("tokens", "revoke", "ci", *data)
    assert httpx.get(server.base_url + "/v2/queues", headers=headers).status_code == 401


@pytest.mark.sqlite_only("the tokens CLI finds the server's store by --data-dir (its SQLite file)")
def test_a_revocation_the_server_cannot_be_told_of_is_reported_not_hidden(
    server: RunningServer,
) -> None:
    data = ["--data-dir", server.settings.data_dir]
    token = homing("tokens", "create", "--account", "team-a", "--name", "ops", *data).split()[-1]
    headers = {"Authorization": f"Bearer {token}"}
    assert httpx.get(server.base_url + "/v2/queues", headers=headers).status_code == 200
    # The file by which a revocation reaches the running server cannot be written
    stamp = Path(server.settings.data_dir) / "homing.db.tokens"
    stamp.unlink(missing_ok=True)
    stamp.mkdir()

    refused = run_homing("tokens", "revoke", "ops", *data)

    assert refused.returncode != 0
    assert "restart the server" in refused.stderr and "Traceback" not in refused.stderr
    assert "revoked" in run_homing("tokens", "list", *data).stdout  # the revocation is stored


@pytest.mark.sqlite_only("the tokens CLI finds the server's store by --data-dir (its SQLite file)")
def test_read_only_tokens_cannot_change_anything(server: RunningServer) -> None:
    out = homing(
        "tokens",
        "create",
        "--account",
        "team-b",
        "--read-only",
        "--data-dir",
        server.settings.data_dir,
    )
    headers = {"Authorization": f"Bearer {out.strip().splitlines()[-1]}"}
    assert httpx.get(server.base_url + "/v2/schedules", headers=headers).status_code == 200
    refused = httpx.post(
        server.base_url + "/v2/queues", headers=headers, json={"queueName": "q", "parallelism": 1}
    )
    assert refused.status_code == 403
    assert "read-only" in refused.json()["error"]


def test_import_copies_schedules_groups_and_queues_once(
    start_server: ServerFactory, tmp_path: Path, receiver: Receiver
) -> None:
    source = start_server(data_dir=str(tmp_path / "source"))
    target = start_server(data_dir=str(tmp_path / "target"))
    src = QStash(DEV_TOKEN, base_url=source.base_url)
    src.queue.upsert("orders", parallelism=3)
    src.url_group.upsert_endpoints(
        url_group="fanout", endpoints=[{"url": receiver.url("/a"), "name": "a"}]
    )
    src.schedule.create(
        destination=receiver.url("/nightly"), cron="0 2 * * *", body="{}", schedule_id="nightly",
        retries=5, headers={"X-Job": "cleanup"},
    )  # fmt: skip
    src.schedule.create(
        destination=receiver.url("/secret"), cron="0 3 * * *", body="s", schedule_id="secret",
        redact={"body": True},
    )  # fmt: skip
    args = ["import", "--from-url", source.base_url, "--from-token", DEV_TOKEN,
            "--to-url", target.base_url, "--to-token", DEV_TOKEN]  # fmt: skip

    dry = homing(*args, "--dry-run")
    assert "would: schedule nightly" in dry
    assert QStash(DEV_TOKEN, base_url=target.base_url).schedule.list() == []

    first = subprocess.run([sys.executable, "-m", "homing", *args], capture_output=True, text=True)
    assert first.returncode == 0
    assert "skipped" in first.stderr and "secret" in first.stderr
    dst = QStash(DEV_TOKEN, base_url=target.base_url)
    copied = dst.schedule.get("nightly")
    assert (copied.cron, copied.retries, copied.body) == ("0 2 * * *", 5, "{}")
    assert copied.headers == {"X-Job": ["cleanup"]}
    assert dst.queue.get("orders").parallelism == 3
    assert dst.url_group.get("fanout").endpoints[0].name == "a"

    assert "nothing to do" in homing(*args)


def test_configuration_reference_is_generated_from_the_code() -> None:
    assert (ROOT / "docs" / "configuration.md").read_text() == config_reference()
