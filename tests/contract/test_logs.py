"""Logs: every state transition, paged newest first by id, with filters."""

from __future__ import annotations

from homing.models import LogState, MessageFilter
from homing.storage.base import Storage
from tests.contract.conftest import (
    ACCOUNT,
    OTHER,
    T0,
    claim,
    delivered,
    failed,
    insert,
    new_message,
    retry,
)


async def entries(
    storage: Storage, f: MessageFilter | None = None, *, newest_first: bool = True
) -> list[tuple[str, str]]:
    page = await storage.list_logs(
        ACCOUNT, filter=f or MessageFilter(), before_id=None, count=100, newest_first=newest_first
    )
    return [(e.message.id, e.state.value) for e in page.items]


async def test_logs_page_newest_first_with_a_cursor(storage: Storage) -> None:
    # Given one message taken through CREATED, ACTIVE, ERROR, RETRY, ACTIVE, DELIVERED
    [mid] = await insert(storage, new_message())
    [c] = await claim(storage, now=T0 + 1)
    await storage.record_outcomes([retry(c, at=T0 + 2, retry_at=T0 + 3)])
    [c] = await claim(storage, now=T0 + 3)
    await storage.record_outcomes([delivered(c, at=T0 + 4)])

    # When the log is read two entries at a time
    seen: list[str] = []
    cursor: int | None = None
    pages = 0
    while True:
        page = await storage.list_logs(ACCOUNT, filter=MessageFilter(), before_id=cursor, count=2)
        pages += 1
        seen += [e.state.value for e in page.items]
        ids = [e.id for e in page.items]
        assert ids == sorted(ids, reverse=True)
        if page.cursor is None:
            break
        cursor = int(page.cursor)

    # Then every transition is there, newest first, and the cursor ends with the log
    assert seen == ["DELIVERED", "ACTIVE", "RETRY", "ERROR", "ACTIVE", "CREATED"]
    assert pages == 3
    assert mid


async def test_logs_oldest_first(storage: Storage) -> None:
    a, b = await insert(storage, new_message(), new_message(delay_ms=1))
    await claim(storage, now=T0 + 1, limit=1)
    await claim(storage, now=T0 + 1, limit=1)
    assert await entries(storage, newest_first=False) == [
        (a, "CREATED"),
        (b, "CREATED"),
        (a, "ACTIVE"),
        (b, "ACTIVE"),
    ]


async def test_an_entry_carries_the_message_and_its_info(storage: Storage) -> None:
    [mid] = await insert(storage, new_message(body=b"hello"))
    [c] = await claim(storage)
    await storage.record_outcomes([failed(c, at=T0 + 9, status=503)])

    page = await storage.list_logs(ACCOUNT, filter=MessageFilter(), before_id=None, count=2)
    failed_entry, error_entry = page.items
    assert (failed_entry.state, failed_entry.time_ms) == (LogState.FAILED, T0 + 9)
    assert failed_entry.message.id == mid and failed_entry.message.body == b"hello"
    assert error_entry.info["responseStatus"] == 503
    assert failed_entry.info["error"] == error_entry.info["error"]


async def test_logs_are_per_account(storage: Storage) -> None:
    await insert(storage, new_message(account=OTHER))
    assert await entries(storage) == []


async def test_filter_by_state(storage: Storage) -> None:
    a, b = await insert(storage, new_message(), new_message(delay_ms=10_000))
    await claim(storage)
    assert await entries(storage, MessageFilter(states=(LogState.ACTIVE,))) == [(a, "ACTIVE")]
    assert sorted(
        await entries(storage, MessageFilter(states=(LogState.CREATED, LogState.ACTIVE)))
    ) == sorted([(a, "ACTIVE"), (a, "CREATED"), (b, "CREATED")])


async def test_filter_by_label_url_host_and_path(storage: Storage) -> None:
    a, b, c = await insert(
        storage,
        new_message(url="https://api.example.com/v1/users", labels=("billing", "eu")),
        new_message(url="https://api.example.com/v2/orders", labels=("eu",)),
        new_message(url="https://other.example.org/v1/users"),
    )

    async def ids(f: MessageFilter) -> list[str]:
        return sorted(mid for mid, _ in await entries(storage, f))

    assert await ids(MessageFilter(labels=("billing",))) == [a]
    assert await ids(MessageFilter(labels=("eu", "nope"))) == sorted([a, b])
    assert await ids(MessageFilter(urls=("https://api.example.com/v2/orders",))) == [b]
    assert await ids(MessageFilter(hosts=("api.example.com",))) == sorted([a, b])
    assert await ids(MessageFilter(paths=("/v1/users",))) == sorted([a, c])
    assert await ids(MessageFilter(hosts=("api.example.com",), paths=("/v1/users",))) == [a]


async def test_filter_by_message_queue_topic_schedule_and_caller(storage: Storage) -> None:
    a, b, c = await insert(
        storage,
        new_message(queue="q1", caller_ip="10.0.0.1"),
        new_message(topic="group", schedule_id="scd_1"),
        new_message(),
    )

    async def ids(f: MessageFilter) -> list[str]:
        return sorted(mid for mid, _ in await entries(storage, f))

    assert await ids(MessageFilter(message_ids=(a, c))) == sorted([a, c])
    assert await ids(MessageFilter(queue_names=("q1",))) == [a]
    assert await ids(MessageFilter(topic_names=("group",))) == [b]
    assert await ids(MessageFilter(schedule_ids=("scd_1",))) == [b]
    assert await ids(MessageFilter(caller_ips=("10.0.0.1",))) == [a]


async def test_filter_by_time_range(storage: Storage) -> None:
    [mid] = await insert(storage, new_message())
    await claim(storage, now=T0 + 1000)

    in_range = await entries(storage, MessageFilter(from_ms=T0 + 500, to_ms=T0 + 1000))
    assert in_range == [(mid, "ACTIVE")]
    assert await entries(storage, MessageFilter(to_ms=T0)) == [(mid, "CREATED")]
    assert await entries(storage, MessageFilter(from_ms=T0 + 1001)) == []
