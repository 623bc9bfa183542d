"""Schedules: upsert, read, pause, delete, due, and exactly one fire per tick."""

from __future__ import annotations

import time
from dataclasses import replace

import pytest

from homing.models import DeliverySpec, FlowControl, Schedule, ScheduleState
from homing.storage.base import Storage
from tests.contract.conftest import (
    ACCOUNT,
    OTHER,
    T0,
    backend_of,
    claim,
    delivered,
    failed,
    gather,
    new_message,
)

MINUTE = 60_000


def schedule(id: str = "scd_1", **overrides: object) -> Schedule:
    base = Schedule(
        id=id,
        account_id=ACCOUNT,
        cron="* * * * *",
        destination="https://example.com/cron",
        body=b"tick",
        spec=DeliverySpec(max_retries=2),
        created_ms=T0,
        caller_ip="10.1.1.1",
        delay_s=5,
        queue_name=None,
        labels=("nightly",),
        flow=FlowControl(key="cron", parallelism=2),
        next_fire_ms=T0 + MINUTE,
    )
    return replace(base, **overrides)  # type: ignore[arg-type]


def fire_messages(s: Schedule, tick: int, n: int = 1) -> list:  # type: ignore[type-arg]
    return [
        new_message(url=s.destination, at=tick, schedule_id=s.id, flow=s.flow) for _ in range(n)
    ]


async def test_upsert_then_get_returns_every_field(storage: Storage) -> None:
    s = schedule()
    await storage.upsert_schedule(s)

    got = await storage.get_schedule(ACCOUNT, "scd_1")

    assert got is not None
    assert replace(got, version=0) == s
    assert await storage.get_schedule(OTHER, "scd_1") is None


async def test_overwriting_keeps_the_creation_time_and_changes_the_version(
    storage: Storage,
) -> None:
    await storage.upsert_schedule(schedule())
    before = await storage.get_schedule(ACCOUNT, "scd_1")
    assert before is not None

    await storage.upsert_schedule(
        schedule(cron="*/5 * * * *", created_ms=T0 + 99, body=b"new", flow=None, labels=())
    )

    after = await storage.get_schedule(ACCOUNT, "scd_1")
    assert after is not None
    assert (after.cron, after.body, after.flow, after.labels) == ("*/5 * * * *", b"new", None, ())
    assert after.created_ms == T0
    assert after.version != before.version


async def test_list_delete_and_pause(storage: Storage) -> None:
    await storage.upsert_schedule(schedule("scd_a"))
    await storage.upsert_schedule(schedule("scd_b", created_ms=T0 + 1))
    assert [s.id for s in await storage.list_schedules(ACCOUNT)] == ["scd_a", "scd_b"]

    assert await storage.set_schedule_paused(ACCOUNT, "scd_a", paused=True, next_fire_ms=None)
    assert (await storage.get_schedule(ACCOUNT, "scd_a")).paused  # type: ignore[union-attr]
    assert await storage.set_schedule_paused(
        ACCOUNT, "scd_a", paused=False, next_fire_ms=T0 + 5 * MINUTE
    )
    resumed = await storage.get_schedule(ACCOUNT, "scd_a")
    assert resumed is not None
    assert (resumed.paused, resumed.next_fire_ms) == (False, T0 + 5 * MINUTE)

    assert await storage.delete_schedule(ACCOUNT, "scd_a")
    assert not await storage.delete_schedule(ACCOUNT, "scd_a")
    assert not await storage.set_schedule_paused(ACCOUNT, "scd_a", paused=True, next_fire_ms=None)
    assert [s.id for s in await storage.list_schedules(ACCOUNT)] == ["scd_b"]


async def test_due_schedules_and_the_next_fire_time(storage: Storage) -> None:
    await storage.upsert_schedule(schedule("soon", next_fire_ms=T0 + MINUTE))
    await storage.upsert_schedule(schedule("later", next_fire_ms=T0 + 2 * MINUTE))
    await storage.upsert_schedule(schedule("paused", next_fire_ms=T0, paused=True))

    assert await storage.next_schedule_ms() == T0 + MINUTE
    assert await storage.due_schedules(now_ms=T0 + MINUTE - 1, limit=10) == []
    due = await storage.due_schedules(now_ms=T0 + 2 * MINUTE, limit=10)
    assert [s.id for s in due] == ["soon", "later"]
    assert [s.id for s in await storage.due_schedules(now_ms=T0 + 2 * MINUTE, limit=1)] == ["soon"]


async def test_a_fire_is_recorded_once_per_tick(storage: Storage) -> None:
    # Given a schedule due at its first tick
    s = schedule()
    await storage.upsert_schedule(s)
    [read] = await storage.due_schedules(now_ms=T0 + MINUTE, limit=10)
    tick = T0 + MINUTE
    first = fire_messages(read, tick, n=2)

    # When it fires, and the same tick is fired again (a retry, another node)
    fired = await storage.record_fire(
        read, tick_ms=tick, messages=first, next_fire_ms=tick + MINUTE, error=None, now_ms=tick
    )
    again = await storage.record_fire(
        read,
        tick_ms=tick,
        messages=fire_messages(read, tick),
        next_fire_ms=tick + MINUTE,
        error=None,
        now_ms=tick,
    )

    # Then only the first is recorded, with its messages
    assert (fired, again) == (True, False)
    got = await storage.get_schedule(ACCOUNT, s.id)
    assert got is not None
    assert (got.last_fire_ms, got.next_fire_ms) == (tick, tick + MINUTE)
    assert got.last_states == {m.id: ScheduleState.IN_PROGRESS for m in first}
    claims = await claim(storage, now=tick)
    assert sorted(c.message.id for c in claims) == sorted(m.id for m in first)

    # And the states of the fire's messages follow their outcomes
    await storage.record_outcomes([delivered(claims[0]), failed(claims[1])])
    got = await storage.get_schedule(ACCOUNT, s.id)
    assert got is not None
    assert sorted(got.last_states.values()) == sorted([ScheduleState.SUCCESS, ScheduleState.FAIL])


async def test_two_nodes_firing_the_same_tick_at_once_record_one_fire(storage: Storage) -> None:
    s = schedule()
    await storage.upsert_schedule(s)
    [read] = await storage.due_schedules(now_ms=T0 + MINUTE, limit=10)
    tick = T0 + MINUTE
    a, b = fire_messages(read, tick), fire_messages(read, tick)

    results = await gather(
        storage.record_fire(
            read, tick_ms=tick, messages=a, next_fire_ms=tick + MINUTE, error=None, now_ms=tick
        ),
        storage.record_fire(
            read, tick_ms=tick, messages=b, next_fire_ms=tick + MINUTE, error=None, now_ms=tick
        ),
    )

    assert sorted(results) == [False, True]
    assert len(await claim(storage, now=tick)) == 1


async def test_a_fire_of_a_stale_read_is_refused(storage: Storage) -> None:
    await storage.upsert_schedule(schedule("replaced"))
    await storage.upsert_schedule(schedule("paused"))
    await storage.upsert_schedule(schedule("deleted"))
    reads = {s.id: s for s in await storage.due_schedules(now_ms=T0 + MINUTE, limit=10)}
    tick = T0 + MINUTE

    # When each is changed after it was read
    await storage.upsert_schedule(schedule("replaced", cron="0 * * * *"))
    await storage.set_schedule_paused(ACCOUNT, "paused", paused=True, next_fire_ms=None)
    await storage.delete_schedule(ACCOUNT, "deleted")

    # Then none of them fires
    for sid, read in reads.items():
        fired = await storage.record_fire(
            read,
            tick_ms=tick,
            messages=fire_messages(read, tick),
            next_fire_ms=tick + MINUTE,
            error=None,
            now_ms=tick,
        )
        assert not fired, sid
    assert await claim(storage, now=tick + 10_000) == []


async def test_a_skipped_tick_only_moves_the_next_fire_time(storage: Storage) -> None:
    await storage.upsert_schedule(schedule())
    [read] = await storage.due_schedules(now_ms=T0 + MINUTE, limit=10)

    fired = await storage.record_fire(
        read, tick_ms=None, messages=[], next_fire_ms=T0 + 3 * MINUTE, error=None,
        now_ms=T0 + MINUTE,
    )  # fmt: skip

    assert not fired
    got = await storage.get_schedule(ACCOUNT, "scd_1")
    assert got is not None
    assert (got.last_fire_ms, got.next_fire_ms) == (None, T0 + 3 * MINUTE)


async def test_a_fire_with_an_error_records_it(storage: Storage) -> None:
    await storage.upsert_schedule(schedule(destination="missing-group"))
    [read] = await storage.due_schedules(now_ms=T0 + MINUTE, limit=10)

    fired = await storage.record_fire(
        read, tick_ms=T0 + MINUTE, messages=[], next_fire_ms=T0 + 2 * MINUTE,
        error="URL group 'missing-group' does not exist", now_ms=T0 + MINUTE,
    )  # fmt: skip

    assert fired
    got = await storage.get_schedule(ACCOUNT, "scd_1")
    assert got is not None
    assert (got.error, got.last_states, got.last_fire_ms) == (
        "URL group 'missing-group' does not exist",
        {},
        T0 + MINUTE,
    )


async def test_db_now_is_the_clock_all_nodes_share(storage: Storage) -> None:
    if backend_of(storage) == "sqlite":
        assert await storage.db_now_ms() is None
        pytest.skip("SQLite: a single node, so no shared clock (db_now_ms() is None)")
    before = time.time() * 1000
    now = await storage.db_now_ms()
    after = time.time() * 1000
    # The database server runs on this machine in the tests: the same clock, give or take.
    assert now is not None and before - 1000 <= now <= after + 1000
