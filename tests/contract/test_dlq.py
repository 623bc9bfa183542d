"""The dead-letter queue: list (paged, filtered), get, delete, replace."""

from __future__ import annotations

from homing.models import MessageFilter, MessageState
from homing.storage.base import Storage
from tests.contract.conftest import ACCOUNT, OTHER, T0, claim, new_message, to_dlq


async def dlq_ids(
    storage: Storage, *, count: int = 100, cursor: str | None = None, newest_first: bool = False
) -> tuple[list[str], str | None]:
    page = await storage.list_dlq(
        ACCOUNT, filter=MessageFilter(), cursor=cursor, count=count, newest_first=newest_first
    )
    return [m.dlq_id or "" for m in page.items], page.cursor


async def test_list_pages_with_a_cursor_that_survives_deletion(storage: Storage) -> None:
    # Given five DLQ entries
    ids = await to_dlq(storage, *[new_message() for _ in range(5)])

    # When the first page of two is read
    first, cursor = await dlq_ids(storage, count=2)
    assert first == ids[:2]
    assert cursor is not None

    # And entries before the cursor are deleted meanwhile
    assert await storage.delete_dlq(ACCOUNT, ids[:2]) == 2

    # Then the next pages continue right after the last entry returned
    second, cursor = await dlq_ids(storage, count=2, cursor=cursor)
    assert second == ids[2:4]
    third, cursor = await dlq_ids(storage, count=2, cursor=cursor)
    assert (third, cursor) == (ids[4:], None)


async def test_list_newest_first(storage: Storage) -> None:
    ids = await to_dlq(storage, *[new_message() for _ in range(3)])
    page, cursor = await dlq_ids(storage, count=2, newest_first=True)
    assert page == [ids[2], ids[1]]
    rest, _ = await dlq_ids(storage, count=2, cursor=cursor, newest_first=True)
    assert rest == [ids[0]]


async def test_list_filters(storage: Storage) -> None:
    a, b = await to_dlq(
        storage,
        new_message(url="https://a.example/one", labels=("red",)),
        new_message(url="https://b.example/two", labels=("blue",)),
    )
    await to_dlq(storage, new_message(account=OTHER))

    async def matching(f: MessageFilter) -> list[str]:
        page = await storage.list_dlq(ACCOUNT, filter=f, cursor=None, count=10)
        return [m.dlq_id or "" for m in page.items]

    assert await matching(MessageFilter()) == [a, b]
    assert await matching(MessageFilter(urls=("https://b.example/two",))) == [b]
    assert await matching(MessageFilter(hosts=("a.example",))) == [a]
    assert await matching(MessageFilter(labels=("blue", "green"))) == [b]
    assert await matching(MessageFilter(dlq_ids=(a,))) == [a]
    assert await matching(MessageFilter(response_statuses=(500,))) == [a, b]
    assert await matching(MessageFilter(response_statuses=(404,))) == []


async def test_get_and_delete(storage: Storage) -> None:
    [dlq_id] = await to_dlq(storage, new_message(body=b"lost"))

    entry = await storage.get_dlq(ACCOUNT, dlq_id)
    assert entry is not None
    assert (entry.body, entry.state, entry.dlq_id) == (b"lost", MessageState.FAILED, dlq_id)
    assert entry.last_response is not None and entry.last_response.status == 500
    assert await storage.get_dlq(OTHER, dlq_id) is None

    assert await storage.delete_dlq(ACCOUNT, [dlq_id, "missing"]) == 1
    assert await storage.delete_dlq(ACCOUNT, [dlq_id]) == 0
    assert await storage.get_dlq(ACCOUNT, dlq_id) is None


async def test_replace_removes_the_entry_and_inserts_the_retry_exactly_once(
    storage: Storage,
) -> None:
    # Given a DLQ entry
    [dlq_id] = await to_dlq(storage, new_message())
    retry_msg = new_message(at=T0 + 1000)
    again = new_message(at=T0 + 1000)

    # When it is replaced twice (a retried request, or two nodes)
    first = await storage.replace_dlq(
        ACCOUNT, [(dlq_id, retry_msg)], now_ms=T0 + 1000, dedup_window_ms=0
    )
    second = await storage.replace_dlq(
        ACCOUNT, [(dlq_id, again)], now_ms=T0 + 1000, dedup_window_ms=0
    )

    # Then the first inserts the new message and the second does nothing
    assert first[0] is not None and first[0].message_id == retry_msg.id
    assert second == [None]
    assert await storage.get_dlq(ACCOUNT, dlq_id) is None
    assert await storage.get_message(ACCOUNT, again.id) is None
    [c] = await claim(storage, now=T0 + 1000)
    assert c.message.id == retry_msg.id


async def test_replace_in_bulk_yields_one_result_per_entry(storage: Storage) -> None:
    x, y = await to_dlq(storage, new_message(), new_message())
    mx, my, dup = new_message(at=T0 + 5), new_message(at=T0 + 5), new_message(at=T0 + 5)

    results = await storage.replace_dlq(
        ACCOUNT, [(x, mx), ("missing", new_message()), (y, my), (x, dup)], now_ms=T0 + 5,
        dedup_window_ms=0,
    )  # fmt: skip

    assert [r.message_id if r else None for r in results] == [mx.id, None, my.id, None]
    assert await dlq_ids(storage) == ([], None)
