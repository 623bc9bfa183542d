"""Flow control: per-key parallelism and rate, the waitlist, pause, pin, reset (spec 9.10)."""

from __future__ import annotations

from homing.models import FlowControl, MessageState
from homing.storage.base import Storage
from tests.contract.conftest import (
    ACCOUNT,
    T0,
    claim,
    delivered,
    ids_of,
    insert,
    new_message,
    retry,
)

PAR1 = FlowControl(key="par1", parallelism=1)
RATE2 = FlowControl(key="rate2", rate=2, period_s=10)


async def states(storage: Storage, ids: list[str]) -> list[MessageState]:
    out = []
    for i in ids:
        stored = await storage.get_message(ACCOUNT, i)
        assert stored is not None
        out.append(stored.state)
    return out


async def test_a_key_at_its_parallelism_puts_due_messages_on_its_waitlist(
    storage: Storage,
) -> None:
    # Given three due messages of a key with parallelism 1
    ids = await insert(storage, *[new_message(flow=PAR1) for _ in range(3)])

    # When they are claimed
    claims = await claim(storage)

    # Then one starts and the others wait, oldest first, without being looked at again
    assert ids_of(claims) == [ids[0]]
    assert await states(storage, ids) == [
        MessageState.ACTIVE,
        MessageState.WAITING,
        MessageState.WAITING,
    ]
    info = await storage.get_flow_key(ACCOUNT, "par1", now_ms=T0)
    assert info is not None
    assert (info.parallelism_max, info.parallelism_count, info.wait_list_size) == (1, 1, 2)
    assert await claim(storage, now=T0 + 1) == []

    # When the running one ends, the next one (only) is promoted and can start
    woken: list[int] = []
    storage.add_wake_listener(woken.append)
    assert await storage.record_outcomes([delivered(claims[0], at=T0 + 50)]) == [True]
    assert await states(storage, ids[1:]) == [MessageState.READY, MessageState.WAITING]
    assert woken
    assert ids_of(await claim(storage, now=T0 + 50)) == [ids[1]]


async def test_a_retry_frees_the_keys_slot_for_the_next_waiting_message(
    storage: Storage,
) -> None:
    first, second = await insert(storage, new_message(flow=PAR1), new_message(flow=PAR1))
    [c] = await claim(storage)

    await storage.record_outcomes([retry(c, retry_at=T0 + 60_000)])

    assert ids_of(await claim(storage, now=T0 + 1)) == [second]
    assert await states(storage, [first]) == [MessageState.READY]


async def test_a_rate_limited_key_waits_for_its_next_window(storage: Storage) -> None:
    # Given a key allowing 2 starts per 10 s, and 3 due messages
    ids = await insert(storage, *[new_message(flow=RATE2) for _ in range(3)])

    # When claimed: two start, the third waits
    claims = await claim(storage)
    assert ids_of(claims) == sorted(ids[:2])
    info = await storage.get_flow_key(ACCOUNT, "rate2", now_ms=T0 + 1)
    assert info is not None
    assert (info.rate_max, info.rate_count, info.rate_period_s, info.rate_period_start_ms) == (
        2,
        2,
        10,
        T0,
    )
    assert info.wait_list_size == 1

    # When both end within the window, the window's end becomes the next due time
    await storage.record_outcomes([delivered(c, at=T0 + 100) for c in claims])
    assert await claim(storage, now=T0 + 100) == []
    assert await storage.next_due_ms() == T0 + 10_000

    # Then the third starts when the window rolls over, and not before
    assert await claim(storage, now=T0 + 9_999) == []
    assert ids_of(await claim(storage, now=T0 + 10_000)) == [ids[2]]
    info = await storage.get_flow_key(ACCOUNT, "rate2", now_ms=T0 + 10_000)
    assert info is not None
    assert (info.rate_count, info.rate_period_start_ms, info.wait_list_size) == (1, T0 + 10_000, 0)


async def test_the_rate_count_reads_zero_once_its_window_has_passed(storage: Storage) -> None:
    await insert(storage, new_message(flow=RATE2))
    await claim(storage)
    info = await storage.get_flow_key(ACCOUNT, "rate2", now_ms=T0 + 10_000)
    assert info is not None
    assert (info.rate_count, info.rate_period_start_ms) == (0, T0 + 10_000)


async def test_a_paused_key_starts_nothing_until_resumed(storage: Storage) -> None:
    ids = await insert(storage, new_message(flow=PAR1))
    assert await storage.set_flow_paused(ACCOUNT, "par1", paused=True, now_ms=T0)

    assert await claim(storage) == []
    assert await states(storage, ids) == [MessageState.WAITING]
    assert (await storage.get_flow_key(ACCOUNT, "par1", now_ms=T0)).paused  # type: ignore[union-attr]

    assert await storage.set_flow_paused(ACCOUNT, "par1", paused=False, now_ms=T0 + 1)
    assert ids_of(await claim(storage, now=T0 + 1)) == ids


async def test_unknown_keys_are_refused(storage: Storage) -> None:
    assert await storage.get_flow_key(ACCOUNT, "nope", now_ms=T0) is None
    assert not await storage.set_flow_paused(ACCOUNT, "nope", paused=True, now_ms=T0)
    assert not await storage.pin_flow(
        ACCOUNT, "nope", parallelism=1, rate=None, period_s=None, now_ms=T0
    )
    assert not await storage.unpin_flow(ACCOUNT, "nope", parallelism=True, rate=True)
    assert not await storage.reset_flow_rate(ACCOUNT, "nope", now_ms=T0)


async def test_a_key_exists_from_the_first_publish_and_follows_later_ones(
    storage: Storage,
) -> None:
    await insert(storage, new_message(flow=FlowControl(key="k", parallelism=3)))
    await insert(storage, new_message(flow=FlowControl(key="k", parallelism=5, rate=7)))

    info = await storage.get_flow_key(ACCOUNT, "k", now_ms=T0)
    assert info is not None
    assert (info.parallelism_max, info.rate_max, info.pinned_parallelism) == (5, 7, False)
    await insert(storage, new_message(flow=FlowControl(key="other", parallelism=1)))
    await insert(storage, new_message(flow=FlowControl(key="other2", parallelism=1)))
    listed = await storage.list_flow_keys(ACCOUNT, search=None, now_ms=T0)
    assert [i.key for i in listed] == ["k", "other", "other2"]
    searched = await storage.list_flow_keys(ACCOUNT, search="other", now_ms=T0)
    assert [i.key for i in searched] == ["other", "other2"]


async def test_a_pinned_parallelism_is_kept_until_unpinned(storage: Storage) -> None:
    ids = await insert(storage, *[new_message(flow=PAR1) for _ in range(3)])
    await claim(storage)  # one active, two waiting

    # When parallelism is pinned to 2, the waitlist is promoted at once
    assert await storage.pin_flow(
        ACCOUNT, "par1", parallelism=2, rate=None, period_s=None, now_ms=T0 + 1
    )
    assert ids_of(await claim(storage, now=T0 + 1)) == [ids[1]]

    # And a publish asking for parallelism 1 does not change it
    await insert(storage, new_message(flow=PAR1))
    info = await storage.get_flow_key(ACCOUNT, "par1", now_ms=T0 + 1)
    assert info is not None
    assert (info.parallelism_max, info.pinned_parallelism) == (2, True)

    # Until unpinned: then the next publish sets it again
    assert await storage.unpin_flow(ACCOUNT, "par1", parallelism=True, rate=False)
    await insert(storage, new_message(flow=PAR1))
    info = await storage.get_flow_key(ACCOUNT, "par1", now_ms=T0 + 1)
    assert info is not None
    assert (info.parallelism_max, info.pinned_parallelism) == (1, False)


async def test_pinning_the_rate_restarts_its_window(storage: Storage) -> None:
    ids = await insert(storage, *[new_message(flow=RATE2) for _ in range(3)])
    await claim(storage)

    assert await storage.pin_flow(
        ACCOUNT, "rate2", parallelism=None, rate=3, period_s=60, now_ms=T0 + 500
    )

    info = await storage.get_flow_key(ACCOUNT, "rate2", now_ms=T0 + 500)
    assert info is not None
    assert (info.rate_max, info.rate_period_s, info.rate_count, info.pinned_rate) == (
        3,
        60,
        0,
        True,
    )
    assert info.rate_period_start_ms == T0 + 500
    assert ids_of(await claim(storage, now=T0 + 500)) == [ids[2]]


async def test_resetting_the_rate_starts_a_new_window_now(storage: Storage) -> None:
    ids = await insert(storage, *[new_message(flow=RATE2) for _ in range(3)])
    await claim(storage)

    assert await storage.reset_flow_rate(ACCOUNT, "rate2", now_ms=T0 + 10)

    info = await storage.get_flow_key(ACCOUNT, "rate2", now_ms=T0 + 10)
    assert info is not None
    assert (info.rate_count, info.rate_period_start_ms) == (0, T0 + 10)
    assert ids_of(await claim(storage, now=T0 + 10)) == [ids[2]]


async def test_active_count_is_the_accounts_deliveries_in_flight(storage: Storage) -> None:
    await insert(storage, *[new_message() for _ in range(3)])
    await insert(storage, new_message(account="acct_other"))
    assert await storage.active_count(ACCOUNT) == 0
    claims = await claim(storage)
    assert await storage.active_count(ACCOUNT) == 3
    await storage.record_outcomes([delivered(c) for c in claims if c.message.account_id == ACCOUNT])
    assert await storage.active_count(ACCOUNT) == 0
