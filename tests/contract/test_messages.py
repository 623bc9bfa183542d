"""insert_messages, get_message, cancel_messages."""

from __future__ import annotations

from homing.models import MessageFilter, MessageState, NewMessage
from homing.storage.base import Storage
from tests.contract.conftest import (
    ACCOUNT,
    OTHER,
    T0,
    claim,
    delivered,
    gather,
    insert,
    log_states,
    new_message,
    retry,
)

# -- insert --------------------------------------------------------------------------------


async def test_insert_stores_messages_and_returns_results_in_input_order(storage: Storage) -> None:
    # Given three new messages
    batch = [new_message(url=f"https://example.com/{i}", labels=("a", "b")) for i in range(3)]

    # When they are inserted together
    results = await storage.insert_messages(batch, now_ms=T0, dedup_window_ms=0)

    # Then each result names its message, in input order, and each message is READY
    assert [(r.message_id, r.url, r.deduplicated) for r in results] == [
        (m.id, m.url, False) for m in batch
    ]
    for m in batch:
        stored = await storage.get_message(ACCOUNT, m.id)
        assert stored is not None
        assert stored.state is MessageState.READY
        assert (stored.url, stored.body, stored.labels, stored.attempts) == (
            m.url,
            m.body,
            ("a", "b"),
            0,
        )
        assert (stored.created_ms, stored.not_before_ms, stored.due_ms) == (T0, T0, T0)
        assert stored.spec == m.spec


async def test_a_message_is_visible_only_to_its_account(storage: Storage) -> None:
    [mid] = await insert(storage, new_message())
    assert await storage.get_message(OTHER, mid) is None
    assert await storage.get_message(ACCOUNT, "msg_missing") is None


async def test_insert_logs_created_with_the_next_delivery_time_of_delayed_messages(
    storage: Storage,
) -> None:
    now_msg = new_message()
    later = new_message(delay_ms=60_000)
    await insert(storage, now_msg, later)

    page = await storage.list_logs(
        ACCOUNT, filter=MessageFilter(), before_id=None, count=10, newest_first=False
    )
    assert [(e.message.id, e.state.value, e.time_ms, e.info) for e in page.items] == [
        (now_msg.id, "CREATED", T0, {}),
        (later.id, "CREATED", T0, {"nextDeliveryTime": T0 + 60_000}),
    ]


async def test_a_dedup_key_used_within_the_window_returns_the_original(storage: Storage) -> None:
    # Given a message published with a deduplication key and a 10 minute window
    first = new_message(dedup="key-1")
    await insert(storage, first, window_ms=600_000)

    # When the same key is used again within the window
    again = new_message(dedup="key-1")
    results = await storage.insert_messages([again], now_ms=T0 + 1000, dedup_window_ms=600_000)

    # Then nothing is stored and the result names the original
    assert results[0].message_id == first.id
    assert results[0].deduplicated
    assert await storage.get_message(ACCOUNT, again.id) is None


async def test_a_dedup_key_can_be_used_again_after_the_window(storage: Storage) -> None:
    first = new_message(dedup="key-1")
    await insert(storage, first, window_ms=1000)

    again = new_message(dedup="key-1", at=T0 + 1000)
    results = await storage.insert_messages([again], now_ms=T0 + 1000, dedup_window_ms=1000)

    assert (results[0].message_id, results[0].deduplicated) == (again.id, False)
    assert await storage.get_message(ACCOUNT, again.id) is not None


async def test_dedup_keys_are_per_account(storage: Storage) -> None:
    mine = new_message(dedup="shared")
    theirs = new_message(dedup="shared", account=OTHER)
    results = await storage.insert_messages([mine, theirs], now_ms=T0, dedup_window_ms=60_000)
    assert [r.deduplicated for r in results] == [False, False]


async def test_a_batch_deduplicates_against_itself(storage: Storage) -> None:
    a, b, c = new_message(dedup="k"), new_message(dedup="k"), new_message()
    results = await storage.insert_messages([a, b, c], now_ms=T0, dedup_window_ms=60_000)
    assert [(r.message_id, r.deduplicated) for r in results] == [
        (a.id, False),
        (a.id, True),
        (c.id, False),
    ]
    assert await storage.get_message(ACCOUNT, b.id) is None


# -- cancel --------------------------------------------------------------------------------


async def test_cancel_of_a_pending_message_makes_it_canceled(storage: Storage) -> None:
    [mid] = await insert(storage, new_message(delay_ms=60_000))

    count = await storage.cancel_messages(
        ACCOUNT, message_ids=[mid], filter=None, limit=None, now_ms=T0 + 1
    )

    assert count == 1
    stored = await storage.get_message(ACCOUNT, mid)
    assert stored is not None
    assert (stored.state, stored.final_ms, stored.due_ms) == (MessageState.CANCELED, T0 + 1, None)
    assert await log_states(storage, mid) == ["CREATED", "CANCEL_REQUESTED", "CANCELED"]
    assert await claim(storage, now=T0 + 120_000) == []


async def test_cancel_of_an_active_message_only_marks_it(storage: Storage) -> None:
    # Given a message whose attempt is running
    [mid] = await insert(storage, new_message())
    [c] = await claim(storage)

    # When it is cancelled (twice)
    first = await storage.cancel_messages(
        ACCOUNT, message_ids=[mid], filter=None, limit=None, now_ms=T0 + 1
    )
    second = await storage.cancel_messages(
        ACCOUNT, message_ids=[mid], filter=None, limit=None, now_ms=T0 + 2
    )

    # Then it is counted once, stays ACTIVE, marked; its outcome decides (here: canceled)
    assert (first, second) == (1, 0)
    stored = await storage.get_message(ACCOUNT, mid)
    assert stored is not None
    assert (stored.state, stored.cancel_requested) == (MessageState.ACTIVE, True)
    assert await storage.record_outcomes([retry(c)]) == [True]
    stored = await storage.get_message(ACCOUNT, mid)
    assert stored is not None and stored.state is MessageState.CANCELED
    assert await log_states(storage, mid) == [
        "CREATED",
        "ACTIVE",
        "CANCEL_REQUESTED",
        "ERROR",
        "CANCELED",
    ]


async def test_cancel_skips_final_messages_and_other_accounts(storage: Storage) -> None:
    [done] = await insert(storage, new_message())
    [c] = await claim(storage)
    await storage.record_outcomes([delivered(c)])
    [theirs] = await insert(storage, new_message(account=OTHER))

    count = await storage.cancel_messages(
        ACCOUNT, message_ids=[done, theirs], filter=None, limit=None, now_ms=T0 + 200
    )

    assert count == 0
    theirs_now = await storage.get_message(OTHER, theirs)
    assert theirs_now is not None and theirs_now.state is MessageState.READY


async def test_cancel_by_filter_with_a_limit_takes_the_oldest(storage: Storage) -> None:
    ids = await insert(
        storage,
        *[new_message(url="https://a.example/x", delay_ms=60_000) for _ in range(3)],
        new_message(url="https://b.example/y", delay_ms=60_000),
    )

    count = await storage.cancel_messages(
        ACCOUNT,
        message_ids=None,
        filter=MessageFilter(urls=("https://a.example/x",)),
        limit=2,
        now_ms=T0 + 1,
    )

    assert count == 2
    states = [(await storage.get_message(ACCOUNT, i)).state for i in ids]  # type: ignore[union-attr]
    assert states == [
        MessageState.CANCELED,
        MessageState.CANCELED,
        MessageState.READY,
        MessageState.READY,
    ]


async def test_cancel_without_ids_or_filter_cancels_every_pending_message(
    storage: Storage,
) -> None:
    await insert(storage, *[new_message(delay_ms=1000 * i) for i in range(4)])
    [theirs] = await insert(storage, new_message(account=OTHER))

    count = await storage.cancel_messages(
        ACCOUNT, message_ids=None, filter=None, limit=None, now_ms=T0 + 1
    )

    assert count == 4
    assert await claim(storage, now=T0 + 10_000) != []  # only the other account's message
    assert (await storage.get_message(OTHER, theirs)).state is MessageState.ACTIVE  # type: ignore[union-attr]


# -- concurrency ---------------------------------------------------------------------------


async def test_concurrent_publishes_are_each_stored_and_one_failure_fails_only_itself(
    storage: Storage,
) -> None:
    # Given a stored message, and a burst of concurrent publishes of which one reuses its id
    [taken] = await insert(storage, new_message())
    burst = [new_message() for _ in range(30)]
    clash = new_message(id=taken)

    async def publish(m: NewMessage) -> object:
        try:
            return await storage.insert_messages([m], now_ms=T0, dedup_window_ms=0)
        except Exception as exc:
            return exc

    results = await gather(*[publish(m) for m in burst[:15]], publish(clash),
                           *[publish(m) for m in burst[15:]])  # fmt: skip

    # Then only the clashing publish fails, and every other message is stored
    failures = [r for r in results if isinstance(r, Exception)]
    assert len(failures) == 1
    for m in burst:
        assert await storage.get_message(ACCOUNT, m.id) is not None
