"""Schedules (spec 7, 11.4): create-or-overwrite, firing, pause/resume, delete, time zones.

Firing is checked two ways: a six-field (seconds) cron on the real clock, kept short, and
minute/daily crons on a `ManualClock` that the test moves forward, so daylight-saving days and
missed ticks are reached without waiting. Fires are observed where a user would see them: at the
receiver, and in the schedule's `lastScheduleTime` / `nextScheduleTime` / `lastScheduleStates`.
"""

from __future__ import annotations

import base64
import json
import time
from datetime import UTC, datetime
from http.client import HTTPConnection
from typing import Any

import httpx
import pytest
from qstash import QStash
from qstash.errors import QStashError
from qstash.schedule import ScheduleState

from homing.clock import ManualClock
from tests.conftest import ServerFactory
from tests.support.http import api, nowhere
from tests.support.receiver import Receiver, Reply
from tests.support.server import DEV_TOKEN, RunningServer
from tests.support.waiting import eventually

MINUTE = 60_000
HOUR = 60 * MINUTE


def sdk(server: RunningServer) -> QStash:
    return QStash(DEV_TOKEN, base_url=server.base_url)


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> int:
    """Unix ms of a UTC wall-clock time."""
    return int(datetime(year, month, day, hour, minute, tzinfo=UTC).timestamp()) * 1000


def now_of(server: RunningServer) -> int:
    assert isinstance(server.clock, ManualClock)
    return server.clock.now_ms()


def step_to(server: RunningServer, http: httpx.Client, schedule_id: str, when_ms: int) -> None:
    """Move the manual clock to `when_ms`; if the schedule says it is due by then, wait until the
    scheduler has handled that fire (its nextScheduleTime moves past `when_ms`)."""
    server.advance(when_ms - now_of(server))
    doc = http.get(f"/v2/schedules/{schedule_id}").json()
    if doc.get("nextScheduleTime", when_ms + 1) <= when_ms:
        eventually(
            lambda: http.get(f"/v2/schedules/{schedule_id}").json()["nextScheduleTime"] > when_ms
        )


# -- create and read back ------------------------------------------------------------------


def test_sdk_create_returns_an_id_and_get_returns_the_whole_template(client: QStash) -> None:
    destination = nowhere("/nightly/?x=1&y=two")
    schedule_id = client.schedule.create(
        destination=destination,
        cron="*/10 * * * *",
        body='{"hello":"world"}',
        content_type="application/json",
        method="GET",
        headers={
            "test-header": "test-value",
            "Upstash-Forward-bypass-tunnel-reminder": "client-test",
        },
        retries=5,
        retry_delay="1000 * (1 + retried)",
        callback=nowhere("/callback"),
        failure_callback=nowhere("/failure"),
        callback_headers={"X-Cb": "c"},
        failure_callback_headers={"X-Fcb": "f"},
        delay=10,
        timeout=30,
        queue="nightly-queue",
        flow_control={"key": "nightly-key", "parallelism": 2, "rate": 10, "period": "1m"},
        label="nightly",
    )
    assert schedule_id.startswith("scd_")

    s = client.schedule.get(schedule_id)
    assert s.schedule_id == schedule_id
    assert s.cron == "*/10 * * * *"
    assert s.destination == destination
    assert s.method == "GET"
    assert s.headers == {
        "Bypass-Tunnel-Reminder": ["client-test"],
        "Content-Type": ["application/json"],
        "Test-Header": ["test-value"],
    }
    assert s.body == '{"hello":"world"}'
    assert (s.retries, s.delay, s.timeout) == (5, 10, 30)
    assert s.retry_delay_expression == "1000 * (1 + retried)"
    assert (s.callback, s.failure_callback) == (nowhere("/callback"), nowhere("/failure"))
    assert s.callback_headers == {"X-Cb": ["c"]}
    assert s.failure_callback_headers == {"X-Fcb": ["f"]}
    assert s.queue == "nightly-queue"
    assert s.flow_control is not None
    assert (s.flow_control.key, s.flow_control.parallelism) == ("nightly-key", 2)
    assert (s.flow_control.rate, s.flow_control.period) == (10, 60)
    assert s.label == "nightly"
    assert s.paused is False
    assert s.caller_ip == "127.0.0.1"
    assert abs(s.created_at - time.time() * 1000) < 10_000
    assert s.last_schedule_states is None  # never fired: the key is absent, not null

    [listed] = [x for x in client.schedule.list() if x.schedule_id == schedule_id]
    assert listed.cron == "*/10 * * * *"
    assert listed.destination == destination


def test_raw_create_returns_schedule_id_and_get_uses_the_wire_names(server: RunningServer) -> None:
    http = api(server)
    destination = nowhere("/raw")
    created = http.post(
        f"/v2/schedules/{destination}",
        content=b"hello",
        headers={
            "Upstash-Cron": "0 9 * * MON-FRI",
            "Content-Type": "text/plain",
            "Upstash-Method": "put",
            "Upstash-Forward-x-token": "t",
            "Upstash-Label": "a,b",
            "Upstash-Delay": "2m",
            "Upstash-Retry-Delay": "pow(2, retried) * 100",
            "Upstash-Callback": nowhere("/cb"),
            "Upstash-Failure-Callback": nowhere("/fcb"),
            "Upstash-Flow-Control-Key": "raw-key",
            "Upstash-Flow-Control-Value": "rate=23, period=1h30m3s",
            "Upstash-Telemetry-Sdk": "curl",
        },
    )
    assert created.status_code in (200, 201), created.text
    schedule_id = created.json()["scheduleId"]

    doc = http.get(f"/v2/schedules/{schedule_id}").json()
    assert doc["scheduleId"] == schedule_id
    assert doc["cron"] == "0 9 * * MON-FRI"
    assert doc["destination"] == destination
    assert doc["method"] == "PUT"
    assert doc["retries"] == 3
    assert doc["isPaused"] is False
    assert isinstance(doc["createdAt"], int)
    assert doc["header"] == {"Content-Type": ["text/plain"], "X-Token": ["t"]}
    assert doc["body"] == "hello"
    assert doc["delay"] == 120
    assert doc["retryDelayExpression"] == "pow(2, retried) * 100"
    assert (doc["callback"], doc["failureCallback"]) == (nowhere("/cb"), nowhere("/fcb"))
    assert (doc["label"], doc["labels"]) == ("a", ["a", "b"])
    assert (doc["flowControlKey"], doc["rate"], doc["period"]) == ("raw-key", 23, 5403)
    assert "parallelism" not in doc
    assert doc["nextScheduleTime"] > doc["createdAt"]
    for absent in ("lastScheduleTime", "lastScheduleStates", "queueName", "error", "bodyBase64"):
        assert absent not in doc
    assert schedule_id in [s["scheduleId"] for s in http.get("/v2/schedules").json()]


def test_cron_is_stored_trimmed(server: RunningServer) -> None:
    """The JS SDK test sends `"*/10 * * * * "`. httpx refuses to send surrounding whitespace in a
    header value, so this request goes out through `http.client`, which sends it as given."""
    conn = HTTPConnection("127.0.0.1", server.port, timeout=10)
    conn.request(
        "POST",
        f"/v2/schedules/{nowhere('/trim')}",
        headers={"Authorization": f"Bearer {DEV_TOKEN}", "Upstash-Cron": "*/10 * * * * "},
    )
    response = conn.getresponse()
    assert response.status in (200, 201)
    schedule_id = json.loads(response.read())["scheduleId"]
    conn.close()
    assert api(server).get(f"/v2/schedules/{schedule_id}").json()["cron"] == "*/10 * * * *"


def test_a_schedule_without_options_has_the_defaults_and_no_optional_keys(
    server: RunningServer,
) -> None:
    http = api(server)
    created = http.post(f"/v2/schedules/{nowhere('/bare')}", headers={"Upstash-Cron": "@daily"})
    doc = http.get(f"/v2/schedules/{created.json()['scheduleId']}").json()
    assert (doc["method"], doc["retries"], doc["isPaused"]) == ("POST", 3, False)
    for absent in ("body", "header", "delay", "callback", "queueName", "flowControlKey", "labels"):
        assert absent not in doc


def test_a_binary_template_body_is_returned_as_body_base64(server: RunningServer) -> None:
    http = api(server)
    created = http.post(
        f"/v2/schedules/{nowhere('/bin')}",
        content=b"\xff\x00\x01",
        headers={"Upstash-Cron": "@daily"},
    )
    doc = http.get(f"/v2/schedules/{created.json()['scheduleId']}").json()
    assert doc["bodyBase64"] == base64.b64encode(b"\xff\x00\x01").decode()
    assert "body" not in doc


def test_a_url_destination_ending_in_pause_creates_a_schedule(server: RunningServer) -> None:
    """Spec 7.5 routing: `POST /v2/schedules/https://.../pause` is a create, not a pause."""
    http = api(server)
    destination = nowhere("/jobs/pause")
    created = http.post(f"/v2/schedules/{destination}", headers={"Upstash-Cron": "@hourly"})
    assert created.status_code in (200, 201), created.text
    doc = http.get(f"/v2/schedules/{created.json()['scheduleId']}").json()
    assert (doc["destination"], doc["isPaused"]) == (destination, False)


def test_overwriting_with_the_same_id_replaces_the_whole_definition(client: QStash) -> None:
    first = client.schedule.create(
        destination=nowhere("/v1"),
        cron="0 * * * *",
        body="old body",
        headers={"X-Old": "1"},
        retries=1,
        delay=30,
        schedule_id="report.daily",
    )
    again = client.schedule.create(
        destination=nowhere("/v2"), cron="15 * * * *", schedule_id="report.daily"
    )
    assert first == again == "report.daily"

    s = client.schedule.get("report.daily")
    assert (s.destination, s.cron) == (nowhere("/v2"), "15 * * * *")
    assert s.body is None
    assert s.headers is None
    assert (s.retries, s.delay) == (3, None)
    assert [x.schedule_id for x in client.schedule.list()].count("report.daily") == 1


# -- firing on the real clock --------------------------------------------------------------


def test_a_six_field_cron_fires_every_second_and_records_the_last_fire(
    client: QStash, receiver: Receiver
) -> None:
    schedule_id = client.schedule.create(
        destination=receiver.url("/tick"), cron="* * * * * *", body="tick"
    )
    first, second = receiver.wait_for(2, "/tick", timeout=6)[:2]
    client.schedule.pause(schedule_id)

    for got in (first, second):
        assert got.headers["Upstash-Schedule-Id"] == schedule_id
        assert got.body == b"tick"
    assert first.message_id != second.message_id
    assert second.at - first.at < 2.5  # one tick per second, not one per poll

    message = client.message.get(second.message_id)
    assert message.schedule_id == schedule_id

    def settled() -> Any:
        s = client.schedule.get(schedule_id)
        states = s.last_schedule_states or {}
        return s if states and set(states.values()) == {ScheduleState.SUCCESS} else None

    s = eventually(settled)
    assert s.last_schedule_time is not None and s.next_schedule_time is not None
    assert s.last_schedule_time % 1000 == 0  # the tick itself, a whole second
    assert s.last_schedule_time <= time.time() * 1000
    assert s.next_schedule_time > s.last_schedule_time
    delivered = {r.message_id for r in receiver.to("/tick")}
    assert set(s.last_schedule_states or {}) <= delivered


# -- firing on a manual clock --------------------------------------------------------------


def test_fired_messages_are_the_template_with_the_schedule_id_and_creator_ip(
    manual_server: RunningServer, receiver: Receiver
) -> None:
    client = sdk(manual_server)
    start = now_of(manual_server)
    schedule_id = client.schedule.create(
        destination=receiver.url("/minutely?from=cron"),
        cron="* * * * *",
        body="b",
        method="PUT",
        headers={"X-A": "1"},
        label="cron-job",
        flow_control={"key": "cron-key", "parallelism": 1},
    )
    assert client.schedule.get(schedule_id).next_schedule_time == start + MINUTE

    manual_server.advance(MINUTE)
    [got] = receiver.wait_for(1, "/minutely")
    assert got.path == "/minutely?from=cron"
    assert got.headers["Upstash-Schedule-Id"] == schedule_id
    assert (got.method, got.body, got.headers["X-A"]) == ("PUT", b"b", "1")
    message = client.message.get(got.message_id)
    assert (message.schedule_id, message.caller_ip) == (schedule_id, "127.0.0.1")
    assert message.label == "cron-job"
    assert message.flow_control is not None and message.flow_control.key == "cron-key"
    assert client.flow_control.get("cron-key").parallelism_max == 1

    eventually(lambda: client.schedule.get(schedule_id).last_schedule_states)
    s = client.schedule.get(schedule_id)
    assert s.last_schedule_time == start + MINUTE
    assert s.next_schedule_time == start + 2 * MINUTE
    assert list(s.last_schedule_states or {}) == [got.message_id]


def test_redacted_template_fields_are_hidden_in_get_but_delivered_in_full(
    manual_server: RunningServer, receiver: Receiver
) -> None:
    client, http = sdk(manual_server), api(manual_server)
    schedule_id = client.schedule.create(
        destination=receiver.url("/secret"),
        cron="* * * * *",
        body="top secret",
        headers={"Authorization": "Bearer inner", "X-Plain": "p"},
        redact={"body": True, "header": ["Authorization"]},
    )
    doc = http.get(f"/v2/schedules/{schedule_id}").json()
    assert doc["body"].startswith("REDACTED:")
    assert doc["header"]["Authorization"][0].startswith("REDACTED:")
    assert doc["header"]["X-Plain"] == ["p"]
    [listed] = http.get("/v2/schedules").json()
    assert listed["body"] == doc["body"]

    manual_server.advance(MINUTE)
    [got] = receiver.wait_for(1, "/secret")
    assert (got.body, got.headers["Authorization"]) == (b"top secret", "Bearer inner")


def test_last_schedule_states_shows_fail_for_a_message_that_failed(
    manual_server: RunningServer, receiver: Receiver
) -> None:
    receiver.on("/broken", lambda r: Reply(500, b"down"))
    client = sdk(manual_server)
    schedule_id = client.schedule.create(
        destination=receiver.url("/broken"), cron="* * * * *", retries=0
    )
    manual_server.advance(MINUTE)
    [got] = receiver.wait_for(1, "/broken")

    def failed() -> Any:
        states = client.schedule.get(schedule_id).last_schedule_states or {}
        return states if set(states.values()) == {ScheduleState.FAIL} else None

    assert list(eventually(failed)) == [got.message_id]


def test_schedule_delay_postpones_each_fired_message_from_the_fire_time(
    manual_server: RunningServer, receiver: Receiver
) -> None:
    client = sdk(manual_server)
    start = now_of(manual_server)
    schedule_id = client.schedule.create(
        destination=receiver.url("/delayed"), cron="* * * * *", delay="30s"
    )
    manual_server.advance(MINUTE)
    states = eventually(lambda: client.schedule.get(schedule_id).last_schedule_states)
    [message_id] = list(states)
    assert client.message.get(message_id).not_before == start + MINUTE + 30_000
    time.sleep(0.2)
    assert receiver.to("/delayed") == []
    manual_server.advance(30_000)
    [got] = receiver.wait_for(1, "/delayed")
    assert got.message_id == message_id


def test_pause_and_resume_through_the_sdk_and_raw_post(
    manual_server: RunningServer, receiver: Receiver
) -> None:
    """A sibling schedule that keeps firing proves each minute was handled while the paused
    one stayed silent."""
    client, http = sdk(manual_server), api(manual_server)
    paused = client.schedule.create(destination=receiver.url("/paused"), cron="* * * * *")
    client.schedule.create(destination=receiver.url("/control"), cron="* * * * *")

    client.schedule.pause(paused)  # PATCH
    assert client.schedule.get(paused).paused is True
    manual_server.advance(MINUTE)
    receiver.wait_for(1, "/control")

    client.schedule.resume(paused)  # PATCH
    assert client.schedule.get(paused).paused is False
    manual_server.advance(MINUTE)
    receiver.wait_for(2, "/control")
    receiver.wait_for(1, "/paused")

    assert http.post(f"/v2/schedules/{paused}/pause").status_code == 200  # POST form
    assert http.get(f"/v2/schedules/{paused}").json()["isPaused"] is True
    manual_server.advance(MINUTE)
    receiver.wait_for(3, "/control")

    assert http.post(f"/v2/schedules/{paused}/resume").status_code == 200
    assert http.get(f"/v2/schedules/{paused}").json()["isPaused"] is False
    manual_server.advance(MINUTE)
    receiver.wait_for(4, "/control")
    receiver.wait_for(2, "/paused")
    time.sleep(0.1)
    assert len(receiver.to("/paused")) == 2


def test_pausing_twice_and_resuming_twice_is_idempotent(client: QStash) -> None:
    schedule_id = client.schedule.create(destination=nowhere("/idem"), cron="0 0 * * *")
    client.schedule.pause(schedule_id)
    client.schedule.pause(schedule_id)
    assert client.schedule.get(schedule_id).paused is True
    client.schedule.resume(schedule_id)
    client.schedule.resume(schedule_id)
    assert client.schedule.get(schedule_id).paused is False


def test_resume_does_not_fire_the_ticks_missed_while_paused(
    manual_server: RunningServer, receiver: Receiver
) -> None:
    client = sdk(manual_server)
    schedule_id = client.schedule.create(destination=receiver.url("/skip"), cron="* * * * *")
    client.schedule.create(destination=receiver.url("/control"), cron="* * * * *")
    client.schedule.pause(schedule_id)
    manual_server.advance(5 * MINUTE)
    receiver.wait_for(1, "/control")
    client.schedule.resume(schedule_id)
    time.sleep(0.2)
    assert receiver.to("/skip") == []
    assert client.schedule.get(schedule_id).next_schedule_time == now_of(manual_server) + MINUTE


def test_a_paused_schedule_keeps_its_next_schedule_time_advancing(
    manual_server: RunningServer, receiver: Receiver
) -> None:
    """Spec 7.5: while paused, triggers are skipped and the next trigger time keeps advancing."""
    client = sdk(manual_server)
    start = now_of(manual_server)
    schedule_id = client.schedule.create(destination=receiver.url("/still"), cron="* * * * *")
    client.schedule.create(destination=receiver.url("/control"), cron="* * * * *")
    client.schedule.pause(schedule_id)
    manual_server.advance(5 * MINUTE)
    receiver.wait_for(1, "/control")
    s = client.schedule.get(schedule_id)
    assert s.paused is True
    assert s.next_schedule_time == start + 6 * MINUTE
    [listed] = [x for x in client.schedule.list() if x.schedule_id == schedule_id]
    assert listed.next_schedule_time == start + 6 * MINUTE
    assert receiver.to("/still") == []


def test_a_deleted_schedule_never_fires_again_and_vanishes(
    manual_server: RunningServer, receiver: Receiver
) -> None:
    client, http = sdk(manual_server), api(manual_server)
    doomed = client.schedule.create(destination=receiver.url("/doomed"), cron="* * * * *")
    control = client.schedule.create(destination=receiver.url("/control"), cron="* * * * *")
    manual_server.advance(MINUTE)
    receiver.wait_for(1, "/doomed")
    receiver.wait_for(1, "/control")

    client.schedule.delete(doomed)
    assert [s.schedule_id for s in client.schedule.list()] == [control]
    assert http.get(f"/v2/schedules/{doomed}").status_code == 404
    for n in (2, 3):
        manual_server.advance(MINUTE)
        receiver.wait_for(n, "/control")
    time.sleep(0.1)
    assert len(receiver.to("/doomed")) == 1


def test_a_url_group_destination_fans_out_to_the_endpoints_at_fire_time(
    manual_server: RunningServer, receiver: Receiver
) -> None:
    client = sdk(manual_server)
    client.url_group.upsert_endpoints(
        url_group="fanout", endpoints=[{"url": receiver.url("/e1"), "name": "one"}]
    )
    schedule_id = client.schedule.create(destination="fanout", cron="* * * * *", body="x")
    assert client.schedule.get(schedule_id).destination == "fanout"
    # Added after the schedule was created: still reached, because the group is read at fire time.
    client.url_group.upsert_endpoints(url_group="fanout", endpoints=[{"url": receiver.url("/e2")}])

    manual_server.advance(MINUTE)
    [one] = receiver.wait_for(1, "/e1")
    [two] = receiver.wait_for(1, "/e2")
    for got in (one, two):
        assert got.headers["Upstash-Schedule-Id"] == schedule_id
        assert got.headers["Upstash-Topic-Name"] == "fanout"
    assert client.message.get(one.message_id).endpoint == "one"
    states = eventually(lambda: client.schedule.get(schedule_id).last_schedule_states)
    assert set(states) == {one.message_id, two.message_id}


def test_a_fire_for_a_url_group_that_no_longer_exists_records_an_error(
    manual_server: RunningServer, receiver: Receiver
) -> None:
    client = sdk(manual_server)
    client.url_group.upsert_endpoints(url_group="gone", endpoints=[{"url": receiver.url("/g")}])
    schedule_id = client.schedule.create(destination="gone", cron="* * * * *")
    client.url_group.delete("gone")
    manual_server.advance(MINUTE)
    s = eventually(
        lambda: client.schedule.get(schedule_id).error and client.schedule.get(schedule_id)
    )
    assert "gone" in (s.error or "")
    assert receiver.to("/g") == []


def test_upstash_queue_name_enqueues_the_fired_messages(
    manual_server: RunningServer, receiver: Receiver
) -> None:
    client = sdk(manual_server)
    client.queue.upsert("nightly", parallelism=1, paused=True)
    schedule_id = client.schedule.create(
        destination=receiver.url("/queued"), cron="* * * * *", queue="nightly"
    )
    manual_server.advance(MINUTE)
    eventually(lambda: client.queue.get("nightly").lag == 1)
    time.sleep(0.1)
    assert receiver.to("/queued") == []  # held by the paused queue
    states = client.schedule.get(schedule_id).last_schedule_states
    assert list((states or {}).values()) == [ScheduleState.IN_PROGRESS]

    client.queue.resume("nightly")
    [got] = receiver.wait_for(1, "/queued")
    assert got.headers["Upstash-Schedule-Id"] == schedule_id
    message = client.message.get(got.message_id)
    assert (message.queue, message.schedule_id) == ("nightly", schedule_id)
    assert list((states or {}).keys()) == [got.message_id]


def test_queue_name_auto_creates_the_queue_at_fire_time(
    manual_server: RunningServer, receiver: Receiver
) -> None:
    client = sdk(manual_server)
    client.schedule.create(destination=receiver.url("/auto"), cron="* * * * *", queue="made-later")
    manual_server.advance(MINUTE)
    [got] = receiver.wait_for(1, "/auto")
    assert client.message.get(got.message_id).queue == "made-later"
    assert "made-later" in [q.name for q in client.queue.list()]


def test_missed_ticks_fire_once_for_the_latest_tick_not_in_a_burst(
    manual_server: RunningServer, receiver: Receiver
) -> None:
    client = sdk(manual_server)
    start = now_of(manual_server)
    schedule_id = client.schedule.create(destination=receiver.url("/missed"), cron="* * * * *")
    control = client.schedule.create(destination=receiver.url("/control"), cron="* * * * *")

    manual_server.advance(3 * HOUR)  # 180 ticks missed at once
    receiver.wait_for(1, "/missed")
    receiver.wait_for(1, "/control")
    eventually(lambda: client.schedule.get(control).last_schedule_states)
    time.sleep(0.2)
    assert len(receiver.to("/missed")) == 1
    s = client.schedule.get(schedule_id)
    assert s.last_schedule_time == start + 3 * HOUR  # the latest tick
    assert s.next_schedule_time == start + 3 * HOUR + MINUTE

    manual_server.advance(MINUTE)  # and then back on the beat
    receiver.wait_for(2, "/missed")
    time.sleep(0.1)
    assert len(receiver.to("/missed")) == 2


# -- daylight saving time, through the API ---------------------------------------------------

DST_CASES = [
    pytest.param(
        "CRON_TZ=America/New_York 30 2 * * *",
        utc(2026, 3, 7, 12),
        [utc(2026, 3, 8, 7, 0), utc(2026, 3, 9, 6, 30)],
        id="new-york-spring-forward-skipped-time-fires-at-the-jump",
    ),
    pytest.param(
        "CRON_TZ=America/New_York 30 1 * * *",
        utc(2026, 10, 31, 12),
        [utc(2026, 11, 1, 5, 30), utc(2026, 11, 2, 6, 30)],
        id="new-york-fall-back-repeated-time-fires-once",
    ),
    pytest.param(
        "CRON_TZ=Europe/London 30 1 * * *",
        utc(2026, 3, 28, 12),
        [utc(2026, 3, 29, 1, 0), utc(2026, 3, 30, 0, 30)],
        id="london-spring-forward",
    ),
    pytest.param(
        "CRON_TZ=Europe/London 30 1 * * *",
        utc(2026, 10, 24, 12),
        [utc(2026, 10, 25, 0, 30), utc(2026, 10, 26, 1, 30)],
        id="london-fall-back",
    ),
    pytest.param(
        "CRON_TZ=Asia/Tokyo 30 2 * * *",
        utc(2026, 3, 7, 12),
        [utc(2026, 3, 7, 17, 30), utc(2026, 3, 8, 17, 30)],
        id="tokyo-has-no-daylight-saving",
    ),
]


def fires_over(
    start_server: ServerFactory, receiver: Receiver, cron: str, start: int, hours: int
) -> list[int]:
    """Create `cron` on a server whose clock reads `start`, move the clock forward 30 minutes
    at a time for `hours`, and return every recorded fire (lastScheduleTime); also check the
    receiver got exactly one message per fire."""
    server = start_server(clock=ManualClock(start_ms=start))
    http = api(server)
    created = http.post(f"/v2/schedules/{receiver.url('/zoned')}", headers={"Upstash-Cron": cron})
    schedule_id = created.json()["scheduleId"]
    assert http.get(f"/v2/schedules/{schedule_id}").json()["cron"] == cron

    fires: list[int] = []
    for when in range(start + 30 * MINUTE, start + hours * HOUR + 1, 30 * MINUTE):
        step_to(server, http, schedule_id, when)
        last = http.get(f"/v2/schedules/{schedule_id}").json().get("lastScheduleTime")
        if last is not None and (not fires or fires[-1] != last):
            assert last == when, f"fire recorded for {last} while the clock is at {when}"
            fires.append(last)

    receiver.wait_for(len(fires), "/zoned")
    time.sleep(0.1)
    assert len(receiver.to("/zoned")) == len(fires)
    return fires


@pytest.mark.parametrize(("cron", "start", "expected"), DST_CASES)
def test_zoned_daily_schedule_fires_once_per_day_across_a_transition(
    start_server: ServerFactory,
    receiver: Receiver,
    cron: str,
    start: int,
    expected: list[int],
) -> None:
    assert fires_over(start_server, receiver, cron, start, hours=48) == expected


def test_an_hourly_schedule_is_silent_during_the_repeated_hour(
    start_server: ServerFactory, receiver: Receiver
) -> None:
    """New York, 2026-11-01: 01:00 EDT (05:00 UTC) fires; 01:00 EST (06:00 UTC) does not."""
    fires = fires_over(
        start_server, receiver, "CRON_TZ=America/New_York 0 * * * *", utc(2026, 11, 1, 3), hours=5
    )
    assert fires == [utc(2026, 11, 1, h) for h in (4, 5, 7, 8)]


def test_an_hourly_schedule_has_no_gap_at_the_skipped_hour(
    start_server: ServerFactory, receiver: Receiver
) -> None:
    """New York, 2026-03-08: 02:00 local does not exist; the fire at 07:00 UTC (03:00 EDT)
    stands for it, so UTC sees one fire every hour."""
    fires = fires_over(
        start_server, receiver, "CRON_TZ=America/New_York 0 * * * *", utc(2026, 3, 8, 4), hours=5
    )
    assert fires == [utc(2026, 3, 8, h) for h in (5, 6, 7, 8, 9)]


# -- bad input -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({"Upstash-Cron": "not a cron"}, id="invalid-cron"),
        pytest.param({"Upstash-Cron": "61 * * * *"}, id="minute-out-of-range"),
        pytest.param({"Upstash-Cron": "CRON_TZ=Mars/Base 0 * * * *"}, id="unknown-zone"),
        pytest.param({"Upstash-Cron": "0 0 30 2 *"}, id="never-fires"),
        pytest.param({"Upstash-Cron": "* * * * *", "Upstash-Schedule-Id": "bad id"}, id="bad-id"),
        pytest.param(
            {"Upstash-Cron": "* * * * *", "Upstash-Schedule-Id": "a,b"}, id="bad-id-comma"
        ),
        pytest.param({}, id="missing-cron"),
        pytest.param({"Upstash-Cron": "* * * * *", "Upstash-Queue-Name": "no spaces"}, id="queue"),
        pytest.param({"Upstash-Cron": "* * * * *", "Upstash-Method": "FETCH"}, id="method"),
    ],
)
def test_invalid_schedule_requests_are_rejected_with_400(
    server: RunningServer, headers: dict[str, str]
) -> None:
    http = api(server)
    response = http.post(f"/v2/schedules/{nowhere('/bad')}", headers=headers)
    assert response.status_code == 400, response.text
    assert isinstance(response.json()["error"], str)
    assert http.get("/v2/schedules").json() == []


def test_a_schedule_for_an_unknown_url_group_is_rejected_with_404(server: RunningServer) -> None:
    response = api(server).post("/v2/schedules/no-such-group", headers={"Upstash-Cron": "@hourly"})
    assert response.status_code == 404


def test_unknown_schedule_get_is_404_and_delete_is_200(
    client: QStash, server: RunningServer
) -> None:
    http = api(server)
    assert http.get("/v2/schedules/scd_missing").status_code == 404
    with pytest.raises(QStashError):
        client.schedule.get("scd_missing")
    assert http.delete("/v2/schedules/scd_missing").status_code == 200
    client.schedule.delete("scd_missing")


def test_pausing_an_unknown_schedule_is_404(server: RunningServer) -> None:
    http = api(server)
    assert http.patch("/v2/schedules/scd_missing/pause").status_code == 404
    assert http.post("/v2/schedules/scd_missing/resume").status_code == 404


def test_schedules_are_isolated_per_account(client: QStash, server: RunningServer) -> None:
    client.schedule.create(destination=nowhere("/mine"), cron="@daily")
    other = "eyJVc2VySUQiOiJ0ZXN0VXNlcjEiLCJQYXNzd29yZCI6InRlc3RQYXNzd29yZCJ9"
    assert QStash(other, base_url=server.base_url).schedule.list() == []
