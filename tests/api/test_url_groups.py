"""URL groups, called topics on the wire (spec 8, 11.6): endpoints, fan-out, removal, dedup."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
from qstash import QStash
from qstash.errors import QStashError

from tests.support.http import api, nowhere
from tests.support.receiver import Receiver
from tests.support.server import RunningServer


def three_endpoints(client: QStash, url: Callable[[str], str], group: str = "team") -> list[str]:
    urls = [url("/a"), url("/b"), url("/c?x=1")]
    client.url_group.upsert_endpoints(
        url_group=group,
        endpoints=[
            {"url": urls[0], "name": "alpha"},
            {"url": urls[1]},
            {"url": urls[2], "name": "gamma"},
        ],
    )
    return urls


# -- upsert, get, list -----------------------------------------------------------------------


def test_upsert_creates_the_group_and_get_returns_the_endpoints_in_order(client: QStash) -> None:
    before = int(time.time() * 1000)
    urls = three_endpoints(client, nowhere)
    group = client.url_group.get("team")
    assert group.name == "team"
    assert [(e.url, e.name) for e in group.endpoints] == [
        (urls[0], "alpha"),
        (urls[1], None),
        (urls[2], "gamma"),
    ]
    assert before - 1000 <= group.created_at <= group.updated_at <= time.time() * 1000 + 1000


def test_endpoint_objects_contain_only_url_and_name(client: QStash, server: RunningServer) -> None:
    urls = three_endpoints(client, nowhere)
    doc = api(server).get("/v2/topics/team").json()
    assert set(doc) >= {"name", "createdAt", "updatedAt", "endpoints"}
    assert doc["endpoints"] == [
        {"url": urls[0], "name": "alpha"},
        {"url": urls[1]},
        {"url": urls[2], "name": "gamma"},
    ]
    [listed] = api(server).get("/v2/topics").json()
    assert listed == doc


def test_list_returns_every_group(client: QStash) -> None:
    assert client.url_group.list() == []
    client.url_group.upsert_endpoints(url_group="one", endpoints=[{"url": nowhere("/1")}])
    client.url_group.upsert_endpoints(url_group="two", endpoints=[{"url": nowhere("/2")}])
    assert sorted(g.name for g in client.url_group.list()) == ["one", "two"]


def test_upserting_again_adds_new_endpoints_and_replaces_matching_ones(
    client: QStash, server: RunningServer
) -> None:
    urls = three_endpoints(client, nowhere)
    created = client.url_group.get("team").created_at
    time.sleep(0.01)
    client.url_group.upsert_endpoints(
        url_group="team",
        endpoints=[{"url": urls[1], "name": "beta"}, {"url": nowhere("/d")}],
    )
    doc = api(server).get("/v2/topics/team").json()
    assert doc["endpoints"] == [
        {"url": urls[0], "name": "alpha"},
        {"url": urls[1], "name": "beta"},
        {"url": urls[2], "name": "gamma"},
        {"url": nowhere("/d")},
    ]
    assert doc["createdAt"] == created
    assert doc["updatedAt"] > created


def test_urls_are_kept_verbatim(client: QStash, server: RunningServer) -> None:
    slash, bare = nowhere("/v/"), nowhere("/v")
    client.url_group.upsert_endpoints(url_group="exact", endpoints=[{"url": slash}, {"url": bare}])
    assert [e.url for e in client.url_group.get("exact").endpoints] == [slash, bare]


# -- publishing to a group -------------------------------------------------------------------


def test_publish_fans_out_one_message_per_endpoint_in_order(
    client: QStash, receiver: Receiver
) -> None:
    urls = three_endpoints(client, receiver.url)
    results = client.message.publish_json(url_group="team", body={"n": 1}, headers={"X-T": "t"})
    assert isinstance(results, list)
    assert [r.url for r in results] == urls
    assert len({r.message_id for r in results}) == 3

    for path, result in zip(["/a", "/b", "/c"], results, strict=True):
        [got] = receiver.wait_for(1, path)
        assert got.headers["Upstash-Message-Id"] == result.message_id
        assert got.headers["Upstash-Topic-Name"] == "team"
        assert (got.body, got.headers["X-T"]) == (b'{"n": 1}', "t")
    assert receiver.to("/c")[0].path == "/c?x=1"

    names = [client.message.get(r.message_id).endpoint for r in results]
    assert names == ["alpha", None, "gamma"]
    assert {client.message.get(r.message_id).url_group for r in results} == {"team"}


def test_raw_publish_to_a_group_returns_a_bare_array(
    client: QStash, server: RunningServer, receiver: Receiver
) -> None:
    urls = three_endpoints(client, receiver.url)
    response = api(server).post("/v2/publish/team", content=b"x")
    assert response.status_code in (200, 201)
    body = response.json()
    assert isinstance(body, list)
    assert [item["url"] for item in body] == urls
    assert all(set(item) == {"messageId", "url"} for item in body)
    doc = api(server).get(f"/v2/messages/{body[0]['messageId']}").json()
    assert (doc["topicName"], doc["endpointName"]) == ("team", "alpha")
    assert "endpointName" not in api(server).get(f"/v2/messages/{body[1]['messageId']}").json()


def test_enqueue_and_batch_to_a_group_fan_out_too(
    client: QStash, server: RunningServer, receiver: Receiver
) -> None:
    three_endpoints(client, receiver.url)
    enqueued = client.message.enqueue(queue="team-queue", url_group="team", body="q")
    assert isinstance(enqueued, list) and len(enqueued) == 3
    assert {client.message.get(r.message_id).queue for r in enqueued} == {"team-queue"}

    batch = api(server).post("/v2/batch", json=[{"destination": "team", "body": "b"}]).json()
    assert len(batch) == 1 and isinstance(batch[0], list) and len(batch[0]) == 3
    receiver.wait_for(2, "/a")  # one enqueued, one batched


def test_publish_to_an_unknown_group_is_404(client: QStash, server: RunningServer) -> None:
    assert api(server).post("/v2/publish/nobody-home", content=b"x").status_code == 404
    with pytest.raises(QStashError):
        client.message.publish(url_group="nobody-home", body="x")


def test_deduplication_applies_to_each_endpoint_on_its_own(
    client: QStash, receiver: Receiver
) -> None:
    client.url_group.upsert_endpoints(
        url_group="dedup", endpoints=[{"url": receiver.url("/d1")}, {"url": receiver.url("/d2")}]
    )
    first = client.message.publish(url_group="dedup", body="x", deduplication_id="once")
    assert not any(r.deduplicated for r in first)

    client.url_group.upsert_endpoints(url_group="dedup", endpoints=[{"url": receiver.url("/d3")}])
    again = client.message.publish(url_group="dedup", body="x", deduplication_id="once")
    assert [r.deduplicated for r in again] == [True, True, False]
    assert [r.message_id for r in again[:2]] == [r.message_id for r in first]
    assert again[2].message_id not in {r.message_id for r in first}

    receiver.wait_for(1, "/d3")
    time.sleep(0.2)
    assert [len(receiver.to(p)) for p in ("/d1", "/d2", "/d3")] == [1, 1, 1]


# -- removing endpoints and groups -----------------------------------------------------------


def test_removing_endpoints_by_url_and_by_name_leaves_only_the_rest(
    client: QStash, receiver: Receiver
) -> None:
    urls = three_endpoints(client, receiver.url)
    client.url_group.remove_endpoints(url_group="team", endpoints=[{"url": urls[1]}])
    assert [e.url for e in client.url_group.get("team").endpoints] == [urls[0], urls[2]]
    client.url_group.remove_endpoints(url_group="team", endpoints=[{"name": "alpha"}])
    assert [(e.url, e.name) for e in client.url_group.get("team").endpoints] == [(urls[2], "gamma")]

    [result] = client.message.publish(url_group="team", body="only gamma")
    assert result.url == urls[2]
    receiver.wait_for(1, "/c")
    time.sleep(0.2)
    assert receiver.to("/a") == [] and receiver.to("/b") == []


def test_raw_delete_with_a_json_body_removes_endpoints(
    client: QStash, server: RunningServer
) -> None:
    urls = three_endpoints(client, nowhere)
    response = api(server).request(
        "DELETE",
        "/v2/topics/team/endpoints",
        json={"endpoints": [{"url": urls[0]}, {"name": "gamma"}]},
    )
    assert response.status_code == 200
    assert [e.url for e in client.url_group.get("team").endpoints] == [urls[1]]


def test_removing_every_endpoint_deletes_the_group(client: QStash, server: RunningServer) -> None:
    urls = three_endpoints(client, nowhere)
    client.url_group.remove_endpoints(
        url_group="team", endpoints=[{"url": urls[0]}, {"url": urls[1]}, {"name": "gamma"}]
    )
    assert api(server).get("/v2/topics/team").status_code == 404
    assert client.url_group.list() == []
    assert api(server).post("/v2/publish/team", content=b"x").status_code == 404


def test_delete_removes_the_group_and_unknown_groups_delete_with_200(
    client: QStash, server: RunningServer
) -> None:
    three_endpoints(client, nowhere)
    client.url_group.delete("team")
    assert api(server).get("/v2/topics/team").status_code == 404
    assert client.url_group.list() == []
    client.url_group.delete("team")  # again: no error
    assert api(server).delete("/v2/topics/never-existed").status_code == 200


def test_unknown_group_get_and_endpoint_removal_are_404(
    client: QStash, server: RunningServer
) -> None:
    with pytest.raises(QStashError):
        client.url_group.get("missing")
    response = api(server).request(
        "DELETE", "/v2/topics/missing/endpoints", json={"endpoints": [{"url": nowhere("/x")}]}
    )
    assert response.status_code == 404


@pytest.mark.parametrize(
    ("group", "body"),
    [
        pytest.param("bad name", {"endpoints": [{"url": "http://127.0.0.1:9/x"}]}, id="group-name"),
        pytest.param("ok", {"endpoints": [{"url": "not a url"}]}, id="endpoint-url"),
        pytest.param("ok", {"endpoints": [{"name": "no-url"}]}, id="missing-url"),
        pytest.param("ok", {"endpoints": []}, id="no-endpoints"),
        pytest.param("ok", {"nothing": 1}, id="wrong-shape"),
    ],
)
def test_invalid_upserts_are_400(server: RunningServer, group: str, body: object) -> None:
    response = api(server).post(f"/v2/topics/{group}/endpoints", json=body)
    assert response.status_code == 400, response.text
    assert api(server).get("/v2/topics").json() == []


def test_a_group_holds_at_most_100_endpoints(server: RunningServer) -> None:
    """Spec 14: at most 100 endpoints per group; beyond that the quota answer is 412."""
    http = api(server)
    hundred = [{"url": nowhere(f"/e{i}")} for i in range(100)]
    assert http.post("/v2/topics/full/endpoints", json={"endpoints": hundred}).status_code == 200
    # Upserting endpoints that are already there replaces them: still 100.
    again = http.post("/v2/topics/full/endpoints", json={"endpoints": hundred[:10]})
    assert again.status_code == 200
    one_more = http.post("/v2/topics/full/endpoints", json={"endpoints": [{"url": nowhere("/x")}]})
    assert one_more.status_code == 412, one_more.text
    assert len(http.get("/v2/topics/full").json()["endpoints"]) == 100
    too_many = [{"url": nowhere(f"/n{i}")} for i in range(101)]
    assert http.post("/v2/topics/new/endpoints", json={"endpoints": too_many}).status_code == 412
    assert http.get("/v2/topics/new").status_code == 404


def test_an_account_holds_at_most_1000_url_groups(server: RunningServer) -> None:
    """Spec 14: a 1001st group is refused with 412; existing groups can still be changed."""
    http = api(server)
    for i in range(1000):
        created = http.post(
            f"/v2/topics/g{i}/endpoints", json={"endpoints": [{"url": nowhere("/e")}]}
        )
        assert created.status_code == 200, created.text
    refused = http.post(
        "/v2/topics/one-too-many/endpoints", json={"endpoints": [{"url": nowhere("/e")}]}
    )
    assert refused.status_code == 412, refused.text
    assert http.get("/v2/topics/one-too-many").status_code == 404
    more = http.post("/v2/topics/g7/endpoints", json={"endpoints": [{"url": nowhere("/2")}]})
    assert more.status_code == 200
