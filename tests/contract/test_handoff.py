"""Messages handed straight to the local delivery engine by the insert that stores them
(`Storage.attach_taker`): stored already claimed, given over once durable, fenced like a claim."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from homing.models import Claimed, FlowControl, Lease, MessageState
from homing.storage.base import Storage
from tests.contract.conftest import (
    ACCOUNT,
    T0,
    claim,
    delivered,
    ids_of,
    insert,
    log_states,
    new_message,
)


class Engine:
    """Stands for the delivery engine of this process: room for `room` messages."""

    def __init__(self, room: int) -> None:
        self.room = room
        self.reserved = 0
        self.taken: list[Claimed] = []
        self.released: list[Lease] = []

    def reserve(self, count: int) -> Lease | None:
        slots = min(count, self.room - self.reserved)
        if slots <= 0:
            return None
        self.reserved += slots
        return Lease("node_here", T0 + 30_000, 4242, slots)

    def take(self, lease: Lease, claimed: Sequence[Claimed]) -> None:
        assert len(claimed) <= lease.slots
        self.reserved -= lease.slots
        self.taken.extend(claimed)

    def release(self, lease: Lease) -> None:
        self.reserved -= lease.slots
        self.released.append(lease)


async def test_a_message_due_now_is_handed_over_as_stored_and_is_not_claimable(
    storage: Storage,
) -> None:
    engine = Engine(room=10)
    storage.attach_taker(engine)
    m = new_message(labels=("a",), topic="group", caller_ip="10.0.0.1")

    await insert(storage, m)

    [handed] = engine.taken
    stored = await storage.get_message(ACCOUNT, m.id)
    assert stored is not None and stored.state is MessageState.ACTIVE
    assert handed.message == stored  # exactly what a claim would have returned
    assert handed.lease_token == 4242
    assert engine.reserved == 0
    assert await claim(storage, now=T0 + 10) == []  # nobody else gets it
    assert await log_states(storage, m.id) == ["CREATED", "ACTIVE"]


async def test_a_handed_over_message_is_recorded_like_a_claimed_one(storage: Storage) -> None:
    engine = Engine(room=10)
    storage.attach_taker(engine)
    m = new_message()
    await insert(storage, m)
    [handed] = engine.taken

    stale = Claimed(handed.message, handed.lease_token + 1)
    assert await storage.record_outcomes([delivered(stale)]) == [False]  # fenced
    assert await storage.record_outcomes([delivered(handed)]) == [True]

    stored = await storage.get_message(ACCOUNT, m.id)
    assert stored is not None and stored.state is MessageState.DELIVERED
    assert await log_states(storage, m.id) == ["CREATED", "ACTIVE", "DELIVERED"]


async def test_only_messages_the_clock_alone_decides_are_handed_over(storage: Storage) -> None:
    engine = Engine(room=10)
    storage.attach_taker(engine)
    now = new_message()
    later = new_message(delay_ms=5_000)
    queued = new_message(queue="orders")
    limited = new_message(flow=FlowControl(key="k", parallelism=1, rate=None, period_s=1))
    held_slot = new_message(queue_slot="orders")

    await insert(storage, now, later, queued, limited, held_slot)

    assert ids_of(engine.taken) == [now.id]
    for m in (later, limited, held_slot):
        stored = await storage.get_message(ACCOUNT, m.id)
        assert stored is not None and stored.state is not MessageState.ACTIVE


async def test_what_does_not_fit_the_engine_waits_to_be_claimed(storage: Storage) -> None:
    engine = Engine(room=2)
    storage.attach_taker(engine)
    messages = [new_message() for _ in range(5)]

    await insert(storage, *messages)

    assert ids_of(engine.taken) == sorted(m.id for m in messages[:2])
    claimed = await claim(storage, now=T0 + 1)
    assert ids_of(claimed) == sorted(m.id for m in messages[2:])


async def test_a_deduplicated_message_is_not_handed_over_and_its_room_comes_back(
    storage: Storage,
) -> None:
    first = new_message(dedup="same")
    await insert(storage, first, window_ms=60_000)
    engine = Engine(room=10)
    storage.attach_taker(engine)

    await insert(storage, replace(new_message(dedup="same"), url=first.url), window_ms=60_000)

    assert engine.taken == []
    assert engine.reserved == 0


async def test_an_insert_that_fails_gives_the_room_back(storage: Storage) -> None:
    engine = Engine(room=10)
    storage.attach_taker(engine)
    m = new_message()
    await insert(storage, m)

    try:
        await insert(storage, new_message(), m)  # the same id again: the whole insert fails
    except Exception:
        pass
    else:
        raise AssertionError("inserting a message id twice must fail")

    assert ids_of(engine.taken) == [m.id]
    assert engine.reserved == 0
