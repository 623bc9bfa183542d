"""Queues: FIFO admission with parallelism, pause/resume, delete, slots held by callbacks."""

from __future__ import annotations

from homing.models import MessageState
from homing.storage.base import Storage
from tests.contract.conftest import (
    ACCOUNT,
    T0,
    claim,
    delivered,
    failed,
    ids_of,
    insert,
    log_states,
    new_message,
    retry,
)


async def state_of(storage: Storage, message_id: str) -> MessageState:
    stored = await storage.get_message(ACCOUNT, message_id)
    assert stored is not None
    return stored.state


async def test_a_queue_is_created_with_parallelism_one_and_admits_in_fifo_order(
    storage: Storage,
) -> None:
    # Given three messages published to a queue that does not exist yet
    ids = await insert(storage, *[new_message(queue="jobs") for _ in range(3)])

    # Then the queue exists with parallelism 1 and only the first message may start
    queue = await storage.get_queue(ACCOUNT, "jobs")
    assert queue is not None
    assert (queue.name, queue.parallelism, queue.paused, queue.lag) == ("jobs", 1, False, 3)
    assert [await state_of(storage, i) for i in ids] == [
        MessageState.READY,
        MessageState.QUEUED,
        MessageState.QUEUED,
    ]

    # When each is delivered, the next one is admitted
    for i, mid in enumerate(ids):
        [c] = await claim(storage, now=T0 + i)
        assert c.message.id == mid
        assert await claim(storage, now=T0 + i) == []
        assert await storage.record_outcomes([delivered(c, at=T0 + i)]) == [True]
    assert (await storage.get_queue(ACCOUNT, "jobs")).lag == 0  # type: ignore[union-attr]


async def test_a_retrying_message_keeps_its_queue_slot(storage: Storage) -> None:
    first, second = await insert(storage, new_message(queue="jobs"), new_message(queue="jobs"))
    [c] = await claim(storage)

    await storage.record_outcomes([retry(c, retry_at=T0 + 5000)])

    assert await state_of(storage, second) is MessageState.QUEUED
    [again] = await claim(storage, now=T0 + 5000)
    assert again.message.id == first
    await storage.record_outcomes([failed(again, at=T0 + 5001)])
    assert await state_of(storage, second) is MessageState.READY


async def test_a_queue_with_parallelism_n_runs_n_at_once(storage: Storage) -> None:
    await storage.upsert_queue(ACCOUNT, "wide", parallelism=2, paused=False, now_ms=T0)
    ids = await insert(storage, *[new_message(queue="wide") for _ in range(5)])

    first = await claim(storage)
    assert ids_of(first) == sorted(ids[:2])

    await storage.record_outcomes([delivered(first[0])])
    [next_one] = await claim(storage)
    assert next_one.message.id == ids[2]


async def test_raising_parallelism_admits_more_at_once(storage: Storage) -> None:
    ids = await insert(storage, *[new_message(queue="jobs") for _ in range(4)])
    woken: list[int] = []
    storage.add_wake_listener(woken.append)

    await storage.upsert_queue(ACCOUNT, "jobs", parallelism=3, paused=False, now_ms=T0 + 1)

    assert ids_of(await claim(storage)) == sorted(ids[:3])
    assert woken
    queue = await storage.get_queue(ACCOUNT, "jobs")
    assert queue is not None
    assert (queue.parallelism, queue.created_ms, queue.updated_ms) == (3, T0, T0 + 1)


async def test_a_paused_queue_starts_nothing_until_resumed(storage: Storage) -> None:
    ids = await insert(storage, *[new_message(queue="jobs") for _ in range(2)])

    assert await storage.set_queue_paused(ACCOUNT, "jobs", paused=True, now_ms=T0 + 1)
    assert (await storage.get_queue(ACCOUNT, "jobs")).paused  # type: ignore[union-attr]
    assert await claim(storage) == []
    assert [await state_of(storage, i) for i in ids] == [MessageState.QUEUED] * 2

    assert await storage.set_queue_paused(ACCOUNT, "jobs", paused=False, now_ms=T0 + 2)
    assert ids_of(await claim(storage)) == [ids[0]]


async def test_pausing_an_unknown_queue_is_refused(storage: Storage) -> None:
    assert not await storage.set_queue_paused(ACCOUNT, "nope", paused=True, now_ms=T0)
    assert await storage.get_queue(ACCOUNT, "nope") is None


async def test_upsert_can_create_a_paused_queue(storage: Storage) -> None:
    await storage.upsert_queue(ACCOUNT, "held", parallelism=4, paused=True, now_ms=T0)
    await insert(storage, new_message(queue="held"))
    assert await claim(storage) == []
    await storage.upsert_queue(ACCOUNT, "held", parallelism=4, paused=False, now_ms=T0 + 1)
    assert len(await claim(storage)) == 1


async def test_list_queues_by_name(storage: Storage) -> None:
    await storage.upsert_queue(ACCOUNT, "b", parallelism=1, paused=False, now_ms=T0)
    await storage.upsert_queue(ACCOUNT, "a", parallelism=2, paused=True, now_ms=T0)
    await storage.upsert_queue("acct_other", "c", parallelism=1, paused=False, now_ms=T0)
    assert [(q.name, q.parallelism, q.paused) for q in await storage.list_queues(ACCOUNT)] == [
        ("a", 2, True),
        ("b", 1, False),
    ]


async def test_deleting_a_queue_cancels_its_messages_that_have_not_started(
    storage: Storage,
) -> None:
    running, waiting = await insert(storage, new_message(queue="jobs"), new_message(queue="jobs"))
    [c] = await claim(storage)

    await storage.delete_queue(ACCOUNT, "jobs", now_ms=T0 + 10)

    assert await storage.get_queue(ACCOUNT, "jobs") is None
    assert await state_of(storage, waiting) is MessageState.CANCELED
    assert (await log_states(storage, waiting))[-1] == "CANCELED"
    assert await state_of(storage, running) is MessageState.ACTIVE
    assert await storage.record_outcomes([delivered(c)]) == [True]


async def test_cancelling_a_queued_message_admits_the_next(storage: Storage) -> None:
    first, second, third = await insert(
        storage, *[new_message(queue="jobs", delay_ms=1000) for _ in range(3)]
    )

    await storage.cancel_messages(
        ACCOUNT, message_ids=[first], filter=None, limit=None, now_ms=T0 + 1
    )

    assert await state_of(storage, second) is MessageState.READY
    assert await state_of(storage, third) is MessageState.QUEUED


async def test_a_callback_holds_its_parents_queue_slot_until_it_is_final(
    storage: Storage,
) -> None:
    # Given a FIFO queue with two messages, the first with a callback
    first, second = await insert(
        storage,
        new_message(queue="jobs", callback="https://example.com/cb"),
        new_message(queue="jobs"),
    )
    [c] = await claim(storage)

    # When the first is delivered and its callback created in the parent's slot
    cb = new_message(url="https://example.com/cb", at=T0 + 100, queue_slot="jobs")
    await storage.record_outcomes([delivered(c, new=(cb,))])

    # Then the second waits for the callback to be final
    assert await state_of(storage, second) is MessageState.QUEUED
    [cb_claim] = await claim(storage, now=T0 + 100)
    assert cb_claim.message.id == cb.id
    await storage.record_outcomes([delivered(cb_claim, at=T0 + 200)])
    assert await state_of(storage, second) is MessageState.READY
    assert first != second
