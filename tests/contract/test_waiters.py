"""Workflow waiters: registered once per run step, reached by an event account-wide or for one
run, kept events consumed by the run's next wait (oldest first), due waiters found by deadline."""

from __future__ import annotations

import asyncio
import dataclasses

from homing.models import NewWaiter, RunState
from homing.storage.base import Storage
from tests.contract.conftest import ACCOUNT, KEYS, OTHER, T0, StorageFactory
from tests.contract.test_workflows import new_run

URL = "https://app.example/api/wf"


def waiter(
    n: int,
    *,
    run_id: str = "wfr_one",
    event_id: str = "order-1",
    account_id: str = ACCOUNT,
    deadline_ms: int = T0 + 60_000,
    step_key: str | None = None,
) -> NewWaiter:
    return NewWaiter(
        id=f"w{n}",
        account_id=account_id,
        run_id=run_id,
        event_id=event_id,
        step_key=step_key or f"s:{n}",
        url=URL,
        deadline_ms=deadline_ms,
        headers={"Upstash-Workflow-RunId": [run_id], "Content-Type": ["application/json"]},
        timeout_url=URL + "?t",
        timeout_headers={"Upstash-Workflow-Runid": [run_id]},
        step=b'{"stepId":%d,"stepType":"Wait","stepName":"w","concurrent":1}' % n,
        timeout="10d",
        created_ms=T0 + n,
    )


async def runs(storage: Storage, *run_ids: str, account_id: str = ACCOUNT) -> None:
    """Active runs of these ids (only an active run's waiters are reached)."""
    for run_id in run_ids:
        run, init = new_run(run_id)
        run = dataclasses.replace(run, account_id=account_id)
        init = dataclasses.replace(init, account_id=account_id)
        await storage.start_run(run, init, now_ms=T0, dedup_window_ms=0)


async def test_a_waiter_reads_back_as_registered_and_once_per_run_step(storage: Storage) -> None:
    await runs(storage, "wfr_one")
    first = await storage.add_waiter(waiter(1))
    again = await storage.add_waiter(waiter(9, step_key="s:1"))

    assert (first.duplicate, first.event) == (False, None)
    assert again.duplicate and again.waiter == waiter(1)
    assert await storage.list_waiters(ACCOUNT, "order-1", limit=10) == [waiter(1)]
    assert await storage.list_waiters(OTHER, "order-1", limit=10) == []


async def test_an_account_wide_event_reaches_every_waiter_of_the_account_and_keeps_nothing(
    storage: Storage,
) -> None:
    await runs(storage, "wfr_a", "wfr_b", "wfr_c", "wfr_e")
    await runs(storage, "wfr_d", account_id=OTHER)
    await storage.add_waiter(waiter(1, run_id="wfr_a"))
    await storage.add_waiter(waiter(2, run_id="wfr_b"))
    await storage.add_waiter(waiter(3, run_id="wfr_c", event_id="other"))
    await storage.add_waiter(waiter(4, run_id="wfr_d", account_id=OTHER))

    reached = await storage.waiters_to_notify(
        ACCOUNT, "order-1", run_id=None, keep=None, now_ms=T0, limit=10
    )
    nobody = await storage.waiters_to_notify(
        ACCOUNT, "no-such", run_id=None, keep=None, now_ms=T0, limit=10
    )

    assert [w.id for w in reached] == ["w1", "w2"]
    assert nobody == []
    # Still there: a waiter leaves once its result is in the run.
    assert len(await storage.list_waiters(ACCOUNT, "order-1", limit=10)) == 2
    assert (await storage.add_waiter(waiter(5, run_id="wfr_e", event_id="no-such"))).event is None


async def test_a_run_scoped_event_without_a_waiter_is_kept_for_the_runs_next_waits_in_order(
    storage: Storage,
) -> None:
    for data in (b"first", b"second"):
        kept = await storage.waiters_to_notify(
            ACCOUNT, "order-1", run_id="wfr_one", keep=data, now_ms=T0, limit=10
        )
        assert kept == []

    other_run = await storage.add_waiter(waiter(1, run_id="wfr_two"))
    first = await storage.add_waiter(waiter(2))
    await storage.remove_waiter("w2")
    second = await storage.add_waiter(waiter(3))
    third = await storage.add_waiter(waiter(4, step_key="s:4", event_id="order-1", run_id="wfr_x"))

    assert other_run.event is None
    assert (first.event, second.event, third.event) == (b"first", b"second", None)


async def test_a_run_scoped_event_reaches_the_runs_waiter_and_is_not_kept(
    storage: Storage,
) -> None:
    await runs(storage, "wfr_one", "wfr_two")
    await storage.add_waiter(waiter(1))
    await storage.add_waiter(waiter(2, run_id="wfr_two"))

    reached = await storage.waiters_to_notify(
        ACCOUNT, "order-1", run_id="wfr_one", keep=b"data", now_ms=T0, limit=10
    )
    await storage.remove_waiter("w1")

    assert [w.id for w in reached] == ["w1"]
    assert (await storage.add_waiter(waiter(3))).event is None


async def test_due_waiters_are_found_by_deadline_and_removed_once(storage: Storage) -> None:
    assert await storage.next_waiter_deadline() is None
    await storage.add_waiter(waiter(1, deadline_ms=T0 + 2_000))
    await storage.add_waiter(waiter(2, deadline_ms=T0 + 1_000, account_id=OTHER))
    await storage.add_waiter(waiter(3, deadline_ms=T0 + 9_000))

    assert await storage.next_waiter_deadline() == T0 + 1_000
    due = await storage.due_waiters(now_ms=T0 + 2_000, limit=10)
    assert [w.id for w in due] == ["w2", "w1"]
    assert [await storage.remove_waiter("w2") for _ in range(2)] == [True, False]
    assert await storage.next_waiter_deadline() == T0 + 2_000


async def test_kept_events_are_forgotten_after_their_time(storage: Storage) -> None:
    await storage.waiters_to_notify(
        ACCOUNT, "order-1", run_id="wfr_one", keep=b"old", now_ms=T0, limit=10
    )
    await storage.waiters_to_notify(
        ACCOUNT, "order-1", run_id="wfr_one", keep=b"new", now_ms=T0 + 500, limit=10
    )

    assert await storage.expire_events(before_ms=T0 + 100) == 1
    assert (await storage.add_waiter(waiter(1))).event == b"new"


async def test_a_wait_and_a_run_scoped_notify_racing_on_two_nodes_always_meet(
    open_node: StorageFactory,
) -> None:
    a = await open_node()
    await a.ensure_account(ACCOUNT, now_ms=T0, keys=KEYS)
    b = await open_node()
    met = 0
    rounds = 20
    await runs(a, *(f"wfr_race{n}" for n in range(rounds)))
    for n in range(rounds):
        run_id = f"wfr_race{n}"
        registered, reached = await asyncio.gather(
            a.add_waiter(waiter(n, run_id=run_id)),
            b.waiters_to_notify(
                ACCOUNT, "order-1", run_id=run_id, keep=b"data", now_ms=T0, limit=10
            ),
        )
        # Either the notify saw the waiter, or the wait consumed the kept event; never both,
        # never neither.
        met += (registered.event is not None) + len(reached)
    assert met == rounds


async def test_waiters_of_a_run_that_ended_are_neither_reached_nor_listed_but_still_due(
    storage: Storage,
) -> None:
    await runs(storage, "wfr_one", "wfr_two")
    await storage.add_waiter(waiter(1, deadline_ms=T0 + 10))
    await storage.add_waiter(waiter(2, run_id="wfr_two"))
    await storage.end_run(ACCOUNT, "wfr_one", state=RunState.CANCELED, now_ms=T0)

    reached = await storage.waiters_to_notify(
        ACCOUNT, "order-1", run_id=None, keep=None, now_ms=T0, limit=10
    )
    scoped = await storage.waiters_to_notify(
        ACCOUNT, "order-1", run_id="wfr_one", keep=None, now_ms=T0, limit=10
    )

    assert [w.id for w in reached] == ["w2"] and scoped == []
    assert [w.id for w in await storage.list_waiters(ACCOUNT, "order-1", limit=10)] == ["w2"]
    # The timeout round still finds it, and forgets it (its run takes no result).
    assert [w.id for w in await storage.due_waiters(now_ms=T0 + 10, limit=10)] == ["w1"]


async def test_an_account_wide_event_kept_on_request_goes_to_the_first_wait_within_its_time(
    storage: Storage,
) -> None:
    await runs(storage, "wfr_one", "wfr_two", "wfr_three")
    for data, at in ((b"stale", T0), (b"fresh", T0 + 5_000)):
        kept = await storage.waiters_to_notify(
            ACCOUNT, "order-1", run_id=None, keep=data, now_ms=at, limit=10
        )
        assert kept == []

    first = await storage.add_waiter(waiter(1), unmatched_since_ms=T0 + 1_000)
    second = await storage.add_waiter(waiter(2, run_id="wfr_two"), unmatched_since_ms=T0 + 1_000)
    without = await storage.add_waiter(waiter(3, run_id="wfr_three"))

    assert (first.event, second.event, without.event) == (b"fresh", None, None)


async def test_a_runs_waiters_are_listed_oldest_first(storage: Storage) -> None:
    await runs(storage, "wfr_a", "wfr_b")
    await storage.add_waiter(waiter(2, run_id="wfr_a", event_id="shipped"))
    await storage.add_waiter(waiter(1, run_id="wfr_a"))
    await storage.add_waiter(waiter(3, run_id="wfr_b"))

    assert [w.id for w in await storage.run_waiters(ACCOUNT, "wfr_a", limit=10)] == ["w1", "w2"]
    assert [w.id for w in await storage.run_waiters(ACCOUNT, "wfr_a", limit=1)] == ["w1"]
    assert await storage.run_waiters(OTHER, "wfr_a", limit=10) == []
