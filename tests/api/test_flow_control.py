"""Flow control (spec 9.10, 11.7, 11.8, 12.10-12.17): per-key parallelism and rate, the key's
management endpoints, and the flow-control fields of messages and DLQ entries."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from qstash import QStash
from qstash.errors import QStashError

from tests.support.http import api, nowhere
from tests.support.receiver import Concurrency, Receiver, Reply
from tests.support.server import RunningServer
from tests.support.waiting import eventually

INFO_INTS = ("waitListSize", "parallelismMax", "parallelismCount", "rateMax", "rateCount")
INFO_INTS += ("ratePeriod", "ratePeriodStart")
INFO_BOOLS = ("isPaused", "isPinnedParallelism", "isPinnedRate")


def publish_with_key(client: QStash, url: str, n: int, **flow: Any) -> list[str]:
    return [
        client.message.publish(url=url, body=str(i), flow_control=flow).message_id  # type: ignore[arg-type]
        for i in range(n)
    ]


# -- the key and its info --------------------------------------------------------------------


def test_the_key_exists_right_after_the_publish_that_introduced_it(
    client: QStash, server: RunningServer, receiver: Receiver
) -> None:
    client.message.publish(
        url=receiver.url("/fc"),
        body="x",
        flow_control={"key": "fresh", "parallelism": 2, "rate": 7},
    )
    doc = api(server).get("/v2/flowControl/fresh").json()
    assert doc["flowControlKey"] == "fresh"
    for key in INFO_INTS:
        assert isinstance(doc[key], int) and not isinstance(doc[key], bool), key
    for key in INFO_BOOLS:
        assert doc[key] is False, key
    assert (doc["parallelismMax"], doc["rateMax"], doc["ratePeriod"]) == (2, 7, 1)
    assert abs(doc["ratePeriodStart"] - time.time()) < 60  # Unix SECONDS

    info = client.flow_control.get("fresh")
    assert (info.key, info.parallelism_max, info.rate_max) == ("fresh", 2, 7)


def test_a_key_with_only_parallelism_reports_zero_for_the_rate(
    client: QStash, receiver: Receiver
) -> None:
    client.message.publish(
        url=receiver.url("/p"), flow_control={"key": "par-only", "parallelism": 4}
    )
    info = client.flow_control.get("par-only")
    assert (info.parallelism_max, info.rate_max) == (4, 0)


def test_keys_may_contain_slashes_and_spaces(
    client: QStash, server: RunningServer, receiver: Receiver
) -> None:
    key = "tenant 7/jobs"
    client.message.publish(url=receiver.url("/k"), flow_control={"key": key, "rate": 3})
    assert api(server).get(f"/v2/flowControl/{key}").json()["flowControlKey"] == key
    client.flow_control.pause(key)
    assert client.flow_control.get(key).is_paused is True
    client.flow_control.resume(key)
    assert client.flow_control.get(key).is_paused is False


def test_the_last_message_sets_the_key_configuration(client: QStash, receiver: Receiver) -> None:
    url = receiver.url("/lw")
    client.message.publish(url=url, flow_control={"key": "lw", "parallelism": 2})
    client.message.publish(url=url, flow_control={"key": "lw", "rate": 9, "period": "1m"})
    info = client.flow_control.get("lw")
    assert (info.parallelism_max, info.rate_max, info.rate_period) == (0, 9, 60)


def test_list_returns_every_key_and_search_filters_by_substring(
    client: QStash, server: RunningServer, receiver: Receiver
) -> None:
    http = api(server)
    assert http.get("/v2/flowControl").json() == []
    for key in ("billing-eu", "billing-us", "emails"):
        client.message.publish(url=receiver.url("/l"), flow_control={"key": key, "rate": 100})
    listed = http.get("/v2/flowControl").json()
    assert sorted(item["flowControlKey"] for item in listed) == [
        "billing-eu",
        "billing-us",
        "emails",
    ]
    assert all(set(item) >= {"flowControlKey", *INFO_INTS, *INFO_BOOLS} for item in listed)
    found = http.get("/v2/flowControl", params={"search": "billing"}).json()
    assert sorted(item["flowControlKey"] for item in found) == ["billing-eu", "billing-us"]
    again = http.get("/v2/flowControl/").json()  # one trailing slash is ignored
    assert [item["flowControlKey"] for item in again] == [item["flowControlKey"] for item in listed]


def test_unknown_keys_are_404_for_get_and_every_action(
    client: QStash, server: RunningServer
) -> None:
    http = api(server)
    assert http.get("/v2/flowControl/never-used").status_code == 404
    with pytest.raises(QStashError):
        client.flow_control.get("never-used")
    for action in ("pause", "resume", "pin?parallelism=1", "unpin?parallelism=true", "resetRate"):
        assert http.post(f"/v2/flowControl/never-used/{action}").status_code == 404, action
    assert http.get("/v2/flowControl").json() == []  # nothing was created on the way


def test_global_parallelism_reports_integers(client: QStash, server: RunningServer) -> None:
    doc = api(server).get("/v2/globalParallelism").json()
    assert isinstance(doc["parallelismMax"], int) and doc["parallelismMax"] > 0
    assert isinstance(doc["parallelismCount"], int) and doc["parallelismCount"] >= 0
    info = client.flow_control.get_global_parallelism()
    assert info.parallelism_max == doc["parallelismMax"]


def test_global_parallelism_counts_deliveries_in_flight(client: QStash, receiver: Receiver) -> None:
    release = threading.Event()
    rule = Concurrency(release=release)
    receiver.on("/busy", rule)
    for i in range(2):
        client.message.publish(url=receiver.url("/busy"), body=str(i))
    rule.wait_started(2)
    assert client.flow_control.get_global_parallelism().parallelism_count == 2
    release.set()
    eventually(lambda: client.flow_control.get_global_parallelism().parallelism_count == 0)


# -- limits ----------------------------------------------------------------------------------


def test_parallelism_limit_is_never_exceeded(client: QStash, receiver: Receiver) -> None:
    rule = Concurrency(hold_s=0.05)
    receiver.on("/par", rule)
    publish_with_key(client, receiver.url("/par"), 12, key="par2", parallelism=2)
    receiver.wait_for(12, "/par", timeout=15)
    assert rule.peak == 2


def test_waiting_messages_show_in_the_wait_list(client: QStash, receiver: Receiver) -> None:
    release = threading.Event()
    rule = Concurrency(release=release)
    receiver.on("/wl", rule)
    publish_with_key(client, receiver.url("/wl"), 4, key="wl", parallelism=1)
    rule.wait_started(1)
    eventually(lambda: client.flow_control.get("wl").wait_list_size == 3)
    info = client.flow_control.get("wl")
    assert (info.parallelism_count, info.parallelism_max) == (1, 1)
    release.set()
    receiver.wait_for(4, "/wl")
    eventually(lambda: client.flow_control.get("wl").wait_list_size == 0)


def test_rate_limit_starts_at_most_rate_deliveries_per_period(
    server: RunningServer, receiver: Receiver
) -> None:
    rule = Concurrency()
    receiver.on("/rate", rule)
    headers = {"Upstash-Flow-Control-Key": "rate5", "Upstash-Flow-Control-Value": "rate=5"}
    items = [
        {"destination": receiver.url("/rate"), "body": str(i), "headers": headers}
        for i in range(12)
    ]
    sent = time.monotonic()
    assert api(server).post("/v2/batch", json=items).status_code in (200, 201)  # all at once

    time.sleep(2.5)
    assert len([t for t in rule.starts if t - sent <= 2.5]) <= 15
    rule.wait_started(12, timeout=5)
    starts = sorted(rule.starts)
    timeline = [round(t - sent, 3) for t in starts]
    # At most 5 starts per 1-second period: any 6 consecutive starts span about a period
    # (250 ms of slack for dispatch jitter; without the limit all 12 start within ~0.1 s).
    for i in range(len(starts) - 5):
        assert starts[i + 5] - starts[i] >= 0.75, timeline
    assert starts[-1] - starts[0] >= 1.75, timeline  # 12 messages need three periods


def test_a_paused_key_holds_deliveries_until_resumed(client: QStash, receiver: Receiver) -> None:
    url = receiver.url("/hold")
    publish_with_key(client, url, 1, key="held", parallelism=5)
    receiver.wait_for(1, "/hold")

    client.flow_control.pause("held")
    assert client.flow_control.get("held").is_paused is True
    for body in ("a", "b", "c"):
        client.message.publish(url=url, body=body, flow_control={"key": "held", "parallelism": 5})
    eventually(lambda: client.flow_control.get("held").wait_list_size == 3)
    time.sleep(0.2)
    assert len(receiver.to("/hold")) == 1

    client.flow_control.resume("held")
    assert client.flow_control.get("held").is_paused is False
    receiver.wait_for(4, "/hold")
    assert sorted(r.body for r in receiver.to("/hold")) == [b"0", b"a", b"b", b"c"]


def test_raw_pause_and_resume_answer_200(
    client: QStash, server: RunningServer, receiver: Receiver
) -> None:
    http = api(server)
    client.message.publish(url=receiver.url("/r"), flow_control={"key": "raw", "rate": 1})
    assert http.post("/v2/flowControl/raw/pause").status_code == 200
    assert http.get("/v2/flowControl/raw").json()["isPaused"] is True
    assert http.post("/v2/flowControl/raw/resume").status_code == 200
    assert http.get("/v2/flowControl/raw").json()["isPaused"] is False


# -- pin, unpin, reset -----------------------------------------------------------------------


def test_pin_sets_the_pinned_flags_and_maxima_exactly(client: QStash, receiver: Receiver) -> None:
    client.message.publish(url=receiver.url("/pin"), flow_control={"key": "pinned", "rate": 1})
    client.flow_control.pin("pinned", {"parallelism": 3, "rate": 20, "period": 120})
    info = client.flow_control.get("pinned")
    assert (info.is_pinned_parallelism, info.is_pinned_rate) == (True, True)
    assert (info.parallelism_max, info.rate_max, info.rate_period) == (3, 20, 120)


def test_pinned_parts_ignore_new_messages_until_unpinned(
    client: QStash, receiver: Receiver
) -> None:
    url = receiver.url("/pins")
    client.message.publish(url=url, flow_control={"key": "pins", "parallelism": 1, "rate": 1})
    client.flow_control.pin("pins", {"parallelism": 3, "rate": 20, "period": 120})
    client.message.publish(
        url=url, flow_control={"key": "pins", "parallelism": 7, "rate": 50, "period": 5}
    )
    info = client.flow_control.get("pins")
    assert (info.parallelism_max, info.rate_max, info.rate_period) == (3, 20, 120)

    client.flow_control.unpin("pins", {"parallelism": True})
    info = client.flow_control.get("pins")
    assert (info.is_pinned_parallelism, info.is_pinned_rate) == (False, True)
    assert info.parallelism_max == 3  # stays at the pinned value until a message changes it

    client.message.publish(
        url=url, flow_control={"key": "pins", "parallelism": 7, "rate": 50, "period": 5}
    )
    info = client.flow_control.get("pins")
    assert (info.parallelism_max, info.rate_max, info.rate_period) == (7, 20, 120)

    client.flow_control.unpin("pins", {"rate": True})
    assert client.flow_control.get("pins").is_pinned_rate is False


def test_pin_with_only_parallelism_leaves_the_rate_unpinned(
    client: QStash, receiver: Receiver
) -> None:
    client.message.publish(url=receiver.url("/pp"), flow_control={"key": "pp", "rate": 4})
    client.flow_control.pin("pp", {"parallelism": 2})
    info = client.flow_control.get("pp")
    assert (info.is_pinned_parallelism, info.is_pinned_rate) == (True, False)
    assert (info.parallelism_max, info.rate_max) == (2, 4)


@pytest.mark.parametrize(
    "query",
    ["parallelism=0", "rate=-1", "period=abc", "parallelism=1.5", "period=604801"],
)
def test_pin_with_invalid_values_is_400(
    client: QStash, server: RunningServer, receiver: Receiver, query: str
) -> None:
    client.message.publish(url=receiver.url("/bad"), flow_control={"key": "badpin", "rate": 1})
    assert api(server).post(f"/v2/flowControl/badpin/pin?{query}").status_code == 400
    info = client.flow_control.get("badpin")
    assert (info.is_pinned_parallelism, info.is_pinned_rate) == (False, False)


def test_reset_rate_sets_the_rate_count_to_zero(client: QStash, receiver: Receiver) -> None:
    publish_with_key(client, receiver.url("/reset"), 3, key="counted", rate=10, period="1m")
    receiver.wait_for(3, "/reset")
    assert eventually(lambda: client.flow_control.get("counted").rate_count == 3)
    before = client.flow_control.get("counted").rate_period_start
    client.flow_control.reset_rate("counted")
    info = client.flow_control.get("counted")
    assert info.rate_count == 0
    assert info.rate_period_start >= before


def test_reset_rate_lets_waiting_messages_start_at_once(client: QStash, receiver: Receiver) -> None:
    url = receiver.url("/burst")
    publish_with_key(client, url, 3, key="slow-rate", rate=2, period="1h")
    receiver.wait_for(2, "/burst")
    eventually(lambda: client.flow_control.get("slow-rate").wait_list_size == 1)
    client.flow_control.reset_rate("slow-rate")
    receiver.wait_for(3, "/burst", timeout=3)


# -- flow-control fields of messages and DLQ entries -----------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("rate=1", {"rate": 1, "period": 1}),
        ("rate=23, period=1h30m3s", {"rate": 23, "period": 5403}),
        ("parallelism=5", {"parallelism": 5, "period": 1}),
        ("parallelism=2,rate=3,period=1d", {"parallelism": 2, "rate": 3, "period": 86400}),
    ],
)
def test_message_json_exposes_the_message_flow_settings(
    server: RunningServer, receiver: Receiver, value: str, expected: dict[str, int]
) -> None:
    http = api(server)
    published = http.post(
        f"/v2/publish/{receiver.url('/fields')}",
        headers={
            "Upstash-Flow-Control-Key": "fields",
            "Upstash-Flow-Control-Value": value,
            "Upstash-Delay": "1h",
        },
    ).json()
    doc = http.get(f"/v2/messages/{published['messageId']}").json()
    assert doc["flowControlKey"] == "fields"
    assert {k: doc[k] for k in ("parallelism", "rate", "period") if k in doc} == expected


def test_dlq_entry_exposes_the_flow_settings(client: QStash, receiver: Receiver) -> None:
    receiver.on("/dead", lambda r: Reply(500, b"no"))
    result = client.message.publish(
        url=receiver.url("/dead"),
        body="x",
        retries=0,
        flow_control={"key": "dead-key", "rate": 23, "period": "1h30m3s"},
    )
    [entry] = eventually(lambda: client.dlq.list(filter={"message_id": result.message_id}).messages)
    assert entry.flow_control is not None
    assert (entry.flow_control.key, entry.flow_control.rate) == ("dead-key", 23)
    assert (entry.flow_control.period, entry.flow_control.parallelism) == (5403, None)


@pytest.mark.parametrize(
    "value",
    ["", "speed=3", "parallelism=abc", "rate=0", "period=8d"],
)
def test_invalid_flow_control_values_are_400(server: RunningServer, value: str) -> None:
    response = api(server).post(
        f"/v2/publish/{nowhere('/x')}",
        headers={"Upstash-Flow-Control-Key": "k", "Upstash-Flow-Control-Value": value},
    )
    assert response.status_code == 400, (value, response.text)
