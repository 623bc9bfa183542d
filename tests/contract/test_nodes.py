"""Several nodes on one store: everything global stays global.

Each test opens a second node on the same store; SQLite allows one process per database file,
so there these tests skip (with that reason) where the second node is opened. Concurrency on a
single node is covered by the other files (asyncio.gather on one storage).
"""

from __future__ import annotations

import asyncio

import pytest

from homing.models import FlowControl, MessageState
from homing.storage.base import Storage
from tests.contract.conftest import (
    ACCOUNT,
    KEYS,
    T0,
    StorageFactory,
    backend_of,
    claim,
    delivered,
    gather,
    ids_of,
    insert,
    new_message,
    postgres_node,
    to_dlq,
)


async def two_nodes(open_node: StorageFactory) -> tuple[Storage, Storage]:
    a = await open_node()
    await a.ensure_account(ACCOUNT, now_ms=T0, keys=KEYS)
    b = await open_node()
    return a, b


async def test_two_nodes_claim_disjoint_sets(open_node: StorageFactory) -> None:
    a, b = await two_nodes(open_node)
    ids = await insert(a, *[new_message() for _ in range(200)])

    batches = await gather(
        *[claim(node, limit=25, node=f"n{i}") for i in range(4) for node in (a, b)]
    )

    claimed = [mid for batch in batches for mid in ids_of(batch)]
    assert len(claimed) == len(set(claimed)) == 200
    assert sorted(claimed) == sorted(ids)


async def test_a_queue_admits_one_at_a_time_across_nodes(open_node: StorageFactory) -> None:
    # Given two nodes publishing to the same FIFO queue at once
    a, b = await two_nodes(open_node)
    await gather(*[insert(node, new_message(queue="fifo")) for _ in range(5) for node in (a, b)])

    # When both claim at once, only one message is running anywhere
    first = [c for batch in await gather(claim(a), claim(b)) for c in batch]
    assert len(first) == 1

    # And each outcome, on either node, lets exactly the next one start
    for step in range(9):
        node = (a, b)[step % 2]
        assert await node.record_outcomes([delivered(first[0], at=T0 + step)]) == [True]
        first = [c for batch in await gather(claim(a), claim(b)) for c in batch]
        assert len(first) == 1
    queue = await a.get_queue(ACCOUNT, "fifo")
    assert queue is not None and queue.lag == 1


async def test_a_flow_key_parallelism_is_global(open_node: StorageFactory) -> None:
    a, b = await two_nodes(open_node)
    key = FlowControl(key="global", parallelism=2)
    await insert(a, *[new_message(flow=key) for _ in range(8)])

    claims = [c for batch in await gather(claim(a), claim(b), claim(a), claim(b)) for c in batch]

    assert len(claims) == 2
    info = await b.get_flow_key(ACCOUNT, "global", now_ms=T0)
    assert info is not None
    assert (info.parallelism_count, info.wait_list_size) == (2, 6)


async def test_a_dedup_key_used_by_two_nodes_at_once_stores_one_message(
    open_node: StorageFactory,
) -> None:
    a, b = await two_nodes(open_node)
    ma, mb = new_message(dedup="same"), new_message(dedup="same")

    ra, rb = await gather(
        a.insert_messages([ma], now_ms=T0, dedup_window_ms=60_000),
        b.insert_messages([mb], now_ms=T0, dedup_window_ms=60_000),
    )

    assert sorted([ra[0].deduplicated, rb[0].deduplicated]) == [False, True]
    assert ra[0].message_id == rb[0].message_id
    assert len(await claim(a)) == 1


async def test_a_dlq_entry_replaced_by_two_nodes_at_once_is_retried_once(
    open_node: StorageFactory,
) -> None:
    a, b = await two_nodes(open_node)
    [dlq_id] = await to_dlq(a, new_message())

    ra, rb = await gather(
        a.replace_dlq(ACCOUNT, [(dlq_id, new_message())], now_ms=T0 + 1, dedup_window_ms=0),
        b.replace_dlq(ACCOUNT, [(dlq_id, new_message())], now_ms=T0 + 1, dedup_window_ms=0),
    )

    assert sorted(r[0] is None for r in (ra, rb)) == [False, True]
    assert len(await claim(b, now=T0 + 1)) == 1


async def test_a_late_node_cannot_overwrite_the_outcome_of_the_node_that_took_over(
    open_node: StorageFactory,
) -> None:
    a, b = await two_nodes(open_node)
    [mid] = await insert(a, new_message())
    [stale] = await claim(a, lease_ms=1000, node="node_a")

    # node_a stops renewing; node_b's reaper releases the message and node_b delivers it
    assert await b.release_expired_leases(now_ms=T0 + 5000) == 1
    [current] = await claim(b, now=T0 + 5000, node="node_b")
    assert await b.record_outcomes([delivered(current, at=T0 + 5100)]) == [True]

    # node_a comes back with its own result: ignored
    assert await a.record_outcomes([delivered(stale, at=T0 + 6000)]) == [False]
    stored = await a.get_message(ACCOUNT, mid)
    assert stored is not None
    assert (stored.state, stored.final_ms, stored.attempts) == (
        MessageState.DELIVERED,
        T0 + 5100,
        1,
    )


async def test_two_nodes_firing_one_tick_record_one_fire(open_node: StorageFactory) -> None:
    from tests.contract.test_schedules import MINUTE, fire_messages, schedule

    a, b = await two_nodes(open_node)
    await a.upsert_schedule(schedule())
    [ra] = await a.due_schedules(now_ms=T0 + MINUTE, limit=1)
    [rb] = await b.due_schedules(now_ms=T0 + MINUTE, limit=1)
    tick = T0 + MINUTE

    results = await gather(
        *[
            node.record_fire(
                read,
                tick_ms=tick,
                messages=fire_messages(read, tick),
                next_fire_ms=tick + MINUTE,
                error=None,
                now_ms=tick,
            )
            for node, read in ((a, ra), (b, rb))
        ]
    )

    assert sorted(results) == [False, True]


async def test_work_published_on_one_node_wakes_the_others(open_node: StorageFactory) -> None:
    a, b = await two_nodes(open_node)
    await wait_listening(b)
    woken = asyncio.Event()
    dues: list[int] = []

    def on_wake(due: int) -> None:
        dues.append(due)
        woken.set()

    b.add_wake_listener(on_wake)
    await insert(a, new_message(delay_ms=1234))

    await asyncio.wait_for(woken.wait(), timeout=5)
    assert T0 + 1234 in dues


async def test_every_burst_of_work_is_announced_to_the_other_nodes(
    open_node: StorageFactory,
) -> None:
    # Given a node that publishes many messages in quick succession
    a, b = await two_nodes(open_node)
    await wait_listening(b)
    dues: list[int] = []
    b.add_wake_listener(dues.append)

    await insert(a, new_message(delay_ms=9000))
    for delay in (8000, 7000, 6000, 5000):
        await insert(a, new_message(delay_ms=delay))

    # Then the other node hears of the earliest work too, if only once for the burst
    for _ in range(100):
        if T0 + 5000 in dues:
            break
        await asyncio.sleep(0.02)
    assert T0 + 9000 in dues
    assert min(dues) == T0 + 5000


async def test_the_listener_reconnects_when_its_connection_dies(
    open_node: StorageFactory,
) -> None:
    a, b = await two_nodes(open_node)
    await wait_listening(b)
    listener = getattr(b, "listener", None)
    assert listener is not None

    # When the server ends the listening session (a failover, an admin, a network cut)
    import asyncpg  # type: ignore[import-untyped]

    from tests.contract.conftest import POSTGRES_URL

    admin = await asyncpg.connect(POSTGRES_URL)
    try:
        assert await admin.fetchval("SELECT pg_terminate_backend($1)", listener.server_pid)
    finally:
        await admin.close()

    # Then it listens again, first announcing a catch-up wake, and wakes on new work
    dues: list[int] = []
    b.add_wake_listener(dues.append)
    for _ in range(100):
        if listener.connections >= 2 and listener.connected.is_set():
            break
        await asyncio.sleep(0.05)
    assert listener.connections >= 2
    assert 0 in dues
    await insert(a, new_message(delay_ms=4321))
    for _ in range(100):
        if T0 + 4321 in dues:
            break
        await asyncio.sleep(0.05)
    assert T0 + 4321 in dues


async def test_nodes_starting_together_migrate_once(open_node: StorageFactory) -> None:
    if backend_of(await open_node()) == "sqlite":
        pytest.skip("SQLite: one process owns the database file (single node)")
    import asyncpg

    from tests.contract.conftest import POSTGRES_URL

    admin = await asyncpg.connect(POSTGRES_URL)
    schema = "homing_ct_fresh_" + str(id(admin))
    await admin.execute(f'CREATE SCHEMA "{schema}"')
    nodes = [postgres_node(schema) for _ in range(4)]
    try:
        # Given four nodes opening a never-migrated store at the same moment
        await gather(*[n.open() for n in nodes])

        # Then all are up, see one schema, and work together
        for n in nodes:
            await n.ping()
        await nodes[0].ensure_account(ACCOUNT, now_ms=T0, keys=KEYS)
        [mid] = await insert(nodes[1], new_message())
        [c] = await claim(nodes[2])
        assert c.message.id == mid
        assert await nodes[3].record_outcomes([delivered(c)]) == [True]
    finally:
        for n in nodes:
            await n.close()
        await admin.execute(f'DROP SCHEMA "{schema}" CASCADE')
        await admin.close()


async def wait_listening(node: Storage) -> None:
    listener = getattr(node, "listener", None)
    if listener is None:
        pytest.skip("this backend has no cross-node wake-ups")
    await asyncio.wait_for(listener.connected.wait(), timeout=5)
