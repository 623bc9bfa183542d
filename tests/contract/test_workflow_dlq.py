"""What the workflow DLQ and `context.invoke` ask of a store: a resumed run starts with the
failed run's steps copied (never delivered again) and the failed message after them; a child
run keeps who invoked it."""

from __future__ import annotations

import dataclasses

from homing.models import Invoker, RunConfig, RunStep
from homing.storage.base import Storage
from tests.contract.conftest import ACCOUNT, T0, claim, new_message
from tests.contract.test_workflows import URL, new_run, start, step


async def test_a_resumed_run_lists_the_copied_steps_and_delivers_only_the_failed_message(
    storage: Storage,
) -> None:
    await start(storage, "wfr_failed")
    await storage.append_to_run(
        ACCOUNT, "wfr_failed", [step(b'{"stepId":1}', "1")], now_ms=T0, dedup_window_ms=0
    )
    failed = await storage.get_run(ACCOUNT, "wfr_failed")
    assert failed is not None
    for claimed in await claim(storage, limit=10):
        del claimed  # the failed run's own deliveries are not the point here
    run, _ = new_run("wfr_resumed", at=T0 + 5)
    again = new_message(url=URL, at=T0 + 5, body=b'{"stepId":2}')
    copied: list[RunStep] = list(failed.steps)

    result = await storage.start_run(run, again, now_ms=T0 + 5, dedup_window_ms=0, copied=copied)

    assert result.message_id == again.id and not result.deduplicated
    resumed = await storage.get_run(ACCOUNT, "wfr_resumed")
    assert resumed is not None
    assert [(s.position, s.message_id, s.body) for s in resumed.steps] == [
        (0, failed.steps[0].message_id, b'{"n":1}'),
        (1, failed.steps[1].message_id, b'{"stepId":1}'),
        (2, again.id, b'{"stepId":2}'),
    ]
    assert resumed.step_count == 3
    [delivered] = await claim(storage, now=T0 + 5, limit=10)
    assert delivered.message.id == again.id
    listed = await storage.run_steps(ACCOUNT, "wfr_resumed", upto_message_id=again.id)
    assert listed is not None and [s.message_id for s in listed][-1] == again.id


async def test_a_child_run_keeps_its_invoker(storage: Storage) -> None:
    invoker = Invoker(
        run_id="wfr_parent",
        url="https://app.example/api/parent",
        created_ms=T0 - 1,
        headers={"Upstash-Workflow-RunId": ["wfr_parent"]},
        step=b'{"stepId":1,"stepName":"invoke","stepType":"Invoke","concurrent":1}',
    )
    run, init = new_run("wfr_child")
    run = dataclasses.replace(run, config=RunConfig(invoker=invoker))

    await storage.start_run(run, init, now_ms=T0, dedup_window_ms=0)

    stored = await storage.get_run(ACCOUNT, "wfr_child")
    assert stored is not None and stored.config.invoker == invoker
