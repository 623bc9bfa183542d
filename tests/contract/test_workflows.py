"""Workflow runs: created by their init, steps appended in acceptance order, ended once."""

from __future__ import annotations

import asyncio

from homing.models import (
    NewMessage,
    NewRun,
    RunAppend,
    RunConfig,
    RunFilter,
    RunState,
)
from homing.storage.base import Storage
from tests.contract.conftest import ACCOUNT, KEYS, OTHER, T0, StorageFactory, claim, new_message

URL = "https://app.example/api/wf"


def new_run(
    run_id: str = "wfr_one",
    *,
    at: int = T0,
    payload: bytes = b'{"n":1}',
    labels: tuple[str, ...] = (),
) -> tuple[NewRun, NewMessage]:
    init = new_message(url=URL, at=at, body=payload)
    run = NewRun(
        account_id=ACCOUNT,
        run_id=run_id,
        url=URL,
        created_ms=at,
        payload=payload,
        init_message_id=init.id,
        config=RunConfig(headers={"Ci-Test-Route": ["a"]}, features=("LazyFetch",), retries=1),
        labels=labels,
    )
    return run, init


async def start(
    storage: Storage, run_id: str = "wfr_one", *, at: int = T0, labels: tuple[str, ...] = ()
) -> str:
    run, init = new_run(run_id, at=at, labels=labels)
    result = await storage.start_run(run, init, now_ms=T0, dedup_window_ms=0)
    assert not result.deduplicated
    return result.message_id


def step(body: bytes, key: str | None = None, *, call_type: str = "step") -> RunAppend:
    return RunAppend(new_message(url=URL, body=body), call_type, step_key=key)


async def test_an_init_creates_a_run_with_its_payload_as_first_step_and_a_deliverable_message(
    storage: Storage,
) -> None:
    init_id = await start(storage)

    run = await storage.get_run(ACCOUNT, "wfr_one")
    assert run is not None
    assert (run.state, run.url, run.created_ms, run.payload) == (
        RunState.STARTED,
        URL,
        T0,
        b'{"n":1}',
    )
    assert run.config.headers == {"Ci-Test-Route": ["a"]} and run.config.retries == 1
    assert [(s.position, s.message_id, s.call_type, s.body) for s in run.steps] == [
        (0, init_id, "step", b'{"n":1}')
    ]
    [claimed] = await claim(storage)
    assert claimed.message.id == init_id
    assert await storage.get_run(OTHER, "wfr_one") is None


async def test_a_second_init_of_an_active_run_is_deduplicated_to_the_original(
    storage: Storage,
) -> None:
    init_id = await start(storage)
    run, init = new_run()

    again = await storage.start_run(run, init, now_ms=T0, dedup_window_ms=0)

    assert (again.message_id, again.deduplicated) == (init_id, True)
    assert len(await claim(storage)) == 1


async def test_steps_are_listed_in_acceptance_order_and_a_prefix_ends_at_a_given_message(
    storage: Storage,
) -> None:
    init_id = await start(storage)
    [first] = (
        await storage.append_to_run(
            ACCOUNT, "wfr_one", [step(b"s1", "s:1")], now_ms=T0 + 1, dedup_window_ms=0
        )
        or []
    )
    second, third = (
        await storage.append_to_run(
            ACCOUNT,
            "wfr_one",
            [step(b"p2", "t:2"), step(b"p3", "t:3")],
            now_ms=T0 + 2,
            dedup_window_ms=0,
        )
        or []
    )

    upto = await storage.run_steps(ACCOUNT, "wfr_one", upto_message_id=second.message_id)
    assert [s.message_id for s in upto or []] == [init_id, first.message_id, second.message_id]
    whole = await storage.run_steps(ACCOUNT, "wfr_one", upto_message_id=None)
    assert [s.body for s in whole or []] == [b'{"n":1}', b"s1", b"p2", b"p3"]
    assert third.message_id == whole[-1].message_id  # type: ignore[index]


async def test_a_repeated_step_result_is_accepted_but_neither_stored_nor_listed(
    storage: Storage,
) -> None:
    await start(storage)
    [first] = (
        await storage.append_to_run(
            ACCOUNT, "wfr_one", [step(b"s1", "s:1")], now_ms=T0, dedup_window_ms=0
        )
        or []
    )

    [again] = (
        await storage.append_to_run(
            ACCOUNT, "wfr_one", [step(b"s1 again", "s:1")], now_ms=T0, dedup_window_ms=0
        )
        or []
    )

    assert (again.message_id, again.deduplicated) == (first.message_id, True)
    assert len(await storage.run_steps(ACCOUNT, "wfr_one", upto_message_id=None) or []) == 2
    assert len(await claim(storage)) == 2  # the init and the first result only


async def test_appending_to_an_unknown_or_ended_run_stores_nothing(storage: Storage) -> None:
    assert (
        await storage.append_to_run(ACCOUNT, "wfr_none", [step(b"x")], now_ms=T0, dedup_window_ms=0)
        is None
    )
    await start(storage)
    await storage.end_run(ACCOUNT, "wfr_one", state=RunState.CANCELED, now_ms=T0 + 5)

    assert (
        await storage.append_to_run(ACCOUNT, "wfr_one", [step(b"x")], now_ms=T0, dedup_window_ms=0)
        is None
    )
    assert await storage.run_steps(ACCOUNT, "wfr_one", upto_message_id=None) is None


async def test_a_run_ends_once_with_its_result_and_lists_its_messages(storage: Storage) -> None:
    init_id = await start(storage)

    first = await storage.end_run(
        ACCOUNT, "wfr_one", state=RunState.SUCCESS, now_ms=T0 + 9, result=b'"done"'
    )
    second = await storage.end_run(ACCOUNT, "wfr_one", state=RunState.CANCELED, now_ms=T0 + 10)

    assert (first.found, first.state, first.changed, first.message_ids) == (
        True,
        RunState.SUCCESS,
        True,
        (init_id,),
    )
    assert (second.state, second.changed) == (RunState.SUCCESS, False)
    run = await storage.get_run(ACCOUNT, "wfr_one")
    assert run is not None
    assert (run.state, run.ended_ms, run.result) == (RunState.SUCCESS, T0 + 9, b'"done"')
    unknown = await storage.end_run(ACCOUNT, "wfr_x", state=RunState.CANCELED, now_ms=T0)
    assert (unknown.found, unknown.changed) == (False, False)


async def test_an_ended_run_id_may_start_a_new_run(storage: Storage) -> None:
    await start(storage)
    await storage.end_run(ACCOUNT, "wfr_one", state=RunState.FAILED, now_ms=T0, failure="boom")

    new_init = await start(storage, at=T0 + 50)

    run = await storage.get_run(ACCOUNT, "wfr_one")
    assert run is not None and (run.state, run.init_message_id, run.created_ms) == (
        RunState.STARTED,
        new_init,
        T0 + 50,
    )


async def test_runs_are_listed_newest_first_by_page_and_filter(storage: Storage) -> None:
    for i in range(5):
        await start(storage, f"wfr_{i}", labels=("even",) if i % 2 == 0 else ())
    await storage.end_run(ACCOUNT, "wfr_3", state=RunState.CANCELED, now_ms=T0)

    page = await storage.list_runs(ACCOUNT, filter=RunFilter(), cursor=None, count=3)
    assert [r.run_id for r in page.items] == ["wfr_4", "wfr_3", "wfr_2"]
    rest = await storage.list_runs(ACCOUNT, filter=RunFilter(), cursor=page.cursor, count=3)
    assert [r.run_id for r in rest.items] == ["wfr_1", "wfr_0"] and rest.cursor is None

    async def ids(f: RunFilter) -> list[str]:
        return [
            r.run_id
            for r in (await storage.list_runs(ACCOUNT, filter=f, cursor=None, count=10)).items
        ]

    assert await ids(RunFilter(states=(RunState.CANCELED,))) == ["wfr_3"]
    assert await ids(RunFilter(labels=("even",))) == ["wfr_4", "wfr_2", "wfr_0"]
    assert await ids(RunFilter(run_ids=("wfr_1", "wfr_x"))) == ["wfr_1"]
    assert await ids(RunFilter(url="https://app.example/")) == [
        f"wfr_{i}" for i in range(4, -1, -1)
    ]
    assert await ids(RunFilter(url="https://app.example/", url_exact=True)) == []
    assert await ids(RunFilter(url=URL, url_exact=True)) != []
    assert (await storage.list_runs(OTHER, filter=RunFilter(), cursor=None, count=10)).items == []


async def test_two_nodes_starting_and_ending_one_run_agree(open_node: StorageFactory) -> None:
    a = await open_node()
    await a.ensure_account(ACCOUNT, now_ms=T0, keys=KEYS)
    b = await open_node()
    runs = [new_run("wfr_race") for _ in range(4)]

    started = await asyncio.gather(
        *(
            (a if i % 2 else b).start_run(run, init, now_ms=T0, dedup_window_ms=0)
            for i, (run, init) in enumerate(runs)
        )
    )
    assert sum(not r.deduplicated for r in started) == 1
    assert len({r.message_id for r in started}) == 1

    ends = await asyncio.gather(
        *(
            (a if i % 2 else b).end_run(ACCOUNT, "wfr_race", state=RunState.FAILED, now_ms=T0)
            for i in range(4)
        )
    )
    assert sum(e.changed for e in ends) == 1


async def test_ended_runs_are_purged_after_the_retention_with_their_steps(storage: Storage) -> None:
    await start(storage, "wfr_old")
    await start(storage, "wfr_live")
    await storage.end_run(ACCOUNT, "wfr_old", state=RunState.SUCCESS, now_ms=T0 + 10)

    await storage.purge(now_ms=T0 + 1_000, retention_ms=500, dlq_retention_ms=500)

    assert await storage.get_run(ACCOUNT, "wfr_old") is None
    live = await storage.get_run(ACCOUNT, "wfr_live")
    assert live is not None and len(live.steps) == 1


async def test_ending_a_run_stores_its_failure_callback_only_with_the_transition(
    open_node: StorageFactory,
) -> None:
    a = await open_node()
    await a.ensure_account(ACCOUNT, now_ms=T0, keys=KEYS)
    await start(a, "wfr_cb")
    b = a if a.single_node else await open_node()  # SQLite: one node, concurrent calls
    callbacks = [new_message(url="https://app.example/failure") for _ in range(4)]

    ends = await asyncio.gather(
        *(
            (a if i % 2 else b).end_run(
                ACCOUNT, "wfr_cb", state=RunState.FAILED, now_ms=T0, new_messages=[cb]
            )
            for i, cb in enumerate(callbacks)
        )
    )

    assert sum(e.changed for e in ends) == 1
    stored = [await a.get_message(ACCOUNT, cb.id) for cb in callbacks]
    assert sum(m is not None for m in stored) == 1
