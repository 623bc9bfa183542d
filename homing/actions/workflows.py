"""Upstash Workflow use cases: a publish that starts or continues a run, the run end, cancel,
and the step list a workflow endpoint may fetch.

The rules are in `homing.workflow` (pure); this module reads what they need from storage and
stores what they decided.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

from homing.actions.context import Services
from homing.actions.workflow_dlq import failure_callbacks
from homing.delivery.workflows import route_to_invoker
from homing.headers import PublishOptions
from homing.models import (
    CallType,
    InsertResult,
    LogEntry,
    Message,
    MessageFilter,
    NewMessage,
    NewRun,
    Page,
    Run,
    RunAppend,
    RunFilter,
    RunState,
    RunStep,
)
from homing.workflow import invoke, runs, steps
from homing.workflow.control import Control

log = logging.getLogger(__name__)

# Runs ended per round of a bulk cancel.
_CANCEL_PAGE = 500
# Log entries read for a run's last message (its attempts: retries are at most a few dozen).
_LOG_ENTRIES = 200


@dataclass(frozen=True, slots=True)
class RunPlan:
    """What one workflow publish becomes: a new run with its init, or a message of a run."""

    run_id: str
    message: NewMessage
    new_run: NewRun | None = None
    append: RunAppend | None = None


async def active_run(svc: Services, account_id: str, run_id: str) -> Run | None:
    """The account's active run of this id, without its steps."""
    page = await svc.storage.list_runs(
        account_id,
        filter=RunFilter(run_ids=(run_id,), states=(RunState.STARTED,)),
        cursor=None,
        count=1,
    )
    return page.items[0] if page.items else None


async def plan(
    svc: Services,
    account_id: str,
    control: Control,
    message: NewMessage,
    options: PublishOptions,
) -> RunPlan:
    """Decide what a publish carrying workflow control headers stores."""
    if control.init:
        config = runs.config_of(options, control.features, message.spec.headers)
        if control.invoke:
            invoker, payload = invoke.read_request(message.body, message.spec.headers)
            config = dataclasses.replace(config, invoker=invoker)
            message = dataclasses.replace(message, body=payload)
        init = runs.init_message(message, control, config)
        new_run = NewRun(
            account_id=account_id,
            run_id=control.run_id,
            url=message.url,
            created_ms=message.created_ms,
            payload=message.body,
            init_message_id=init.id,
            config=config,
            labels=message.labels,
            caller_ip=message.caller_ip,
        )
        return RunPlan(control.run_id, init, new_run=new_run)
    run = await active_run(svc, account_id, control.run_id)
    if run is None:
        raise runs.not_appendable(control.run_id)
    m = runs.run_message(message, control, run)
    key = steps.step_key(m.body) if control.call_type == CallType.STEP.value else None
    return RunPlan(control.run_id, m, append=RunAppend(m, control.call_type, step_key=key))


async def store(
    svc: Services, account_id: str, plans: Sequence[RunPlan], now_ms: int
) -> list[InsertResult]:
    """Store planned workflow messages (durable on return); results in input order.

    Messages of one run in one request are appended together, in order, in one transaction.
    """
    window = svc.settings.dedup_window_ms
    results: dict[int, InsertResult] = {}
    groups: dict[str, list[int]] = {}
    started = time.monotonic()
    for index, p in enumerate(plans):
        if p.new_run is not None:
            result = await svc.storage.start_run(
                p.new_run, p.message, now_ms=now_ms, dedup_window_ms=window
            )
            invoker = p.new_run.config.invoker
            if not result.deduplicated:
                svc.metrics.record_run("started")
                if invoker is not None:
                    svc.metrics.record_invoke("started")
                    log.info(
                        "workflow run %s invoked by %s",
                        p.run_id,
                        invoker.run_id,
                        extra={
                            "event": "workflow.invoke_started",
                            "run_id": p.run_id,
                            "invoker_run_id": invoker.run_id,
                        },
                    )
            results[index] = result
        else:
            groups.setdefault(p.run_id, []).append(index)
    for run_id, indexes in groups.items():
        items = [plans[i].append for i in indexes]
        stored = await svc.storage.append_to_run(
            account_id,
            run_id,
            [i for i in items if i is not None],
            now_ms=now_ms,
            dedup_window_ms=window,
        )
        if stored is None:  # the run ended between the check and the append
            raise runs.not_appendable(run_id)
        results.update(zip(indexes, stored, strict=True))
    svc.metrics.commit_publish.observe(time.monotonic() - started)
    ordered = [results[i] for i in range(len(plans))]
    svc.metrics.record_publish(account_id, [r.url for r in ordered if not r.deduplicated])
    return ordered


async def end_run(
    svc: Services, account_id: str, run_id: str, *, cancel: bool, result: bytes
) -> None:
    """`DELETE /v2/workflows/runs/{id}`: the run end (`cancel=false`, with the workflow's
    result) or `context.cancel()`. Raises what the request answers unless it is a 200."""
    now = svc.clock.now_ms()
    state = RunState.CANCELED if cancel else RunState.SUCCESS
    end = await svc.storage.end_run(
        account_id, run_id, state=state, now_ms=now, result=None if cancel else result
    )
    if end.changed:
        svc.metrics.record_run("canceled" if cancel else "succeeded")
        if cancel:
            await _cancel_pending(svc, account_id, end.message_ids, now)
        ended = await svc.storage.list_runs(
            account_id, filter=RunFilter(run_ids=(run_id,)), cursor=None, count=1
        )
        if ended.items:
            await _to_invoker(svc, ended.items[0], state, None if cancel else result)
    runs.end_answer(end, state)


async def _to_invoker(svc: Services, run: Run, state: RunState, result: bytes | None) -> None:
    await route_to_invoker(
        svc.storage,
        run,
        state,
        result,
        now_ms=svc.clock.now_ms(),
        limits=svc.settings.limits,
        metrics=svc.metrics,
    )


async def _cancel_pending(
    svc: Services, account_id: str, message_ids: Sequence[str], now_ms: int
) -> None:
    if message_ids:
        await svc.storage.cancel_messages(
            account_id, message_ids=message_ids, filter=None, limit=None, now_ms=now_ms
        )


async def cancel_runs(svc: Services, account_id: str, filter: RunFilter, limit: int | None) -> int:
    """`DELETE /v2/workflows/runs`: cancel the matching active runs, at most `limit`; returns
    how many this call canceled."""
    active = RunFilter(
        run_ids=filter.run_ids,
        url=filter.url,
        url_exact=filter.url_exact,
        states=(RunState.STARTED,),
        labels=filter.labels,
        caller_ips=filter.caller_ips,
        flow_control_keys=filter.flow_control_keys,
        from_ms=filter.from_ms,
        to_ms=filter.to_ms,
    )
    canceled = 0
    cursor: str | None = None
    while limit is None or canceled < limit:
        page_size = _CANCEL_PAGE if limit is None else min(_CANCEL_PAGE, limit - canceled)
        page = await svc.storage.list_runs(
            account_id, filter=active, cursor=cursor, count=page_size
        )
        now = svc.clock.now_ms()
        for run in page.items:
            end = await svc.storage.end_run(
                account_id, run.run_id, state=RunState.CANCELED, now_ms=now
            )
            if end.changed:
                canceled += 1
                await _cancel_pending(svc, account_id, end.message_ids, now)
                await _to_invoker(svc, run, RunState.CANCELED, None)
        if page.cursor is None:
            break
        cursor = page.cursor
    svc.metrics.record_run("canceled", canceled)
    return canceled


async def step_list(svc: Services, account_id: str, run_id: str) -> list[RunStep] | None:
    """The whole step list of an active run (`GET /v2/workflows/runs/{id}`), None when the run
    is unknown or has ended."""
    return await svc.storage.run_steps(account_id, run_id, upto_message_id=None)


@dataclass(frozen=True, slots=True)
class RunLog:
    """What the logs show of one run: the run with its steps, the log entries (oldest first) of
    its last step-list message, and the latest send of its failure callback."""

    run: Run
    entries: list[LogEntry]
    callback: Message | None = None


async def run_logs(
    svc: Services,
    account_id: str,
    filter: RunFilter,
    *,
    created_ms: int | None,
    cursor: str | None,
    count: int,
) -> Page[RunLog]:
    """A page of runs, newest first, as `client.logs` shows them."""
    page = await svc.storage.list_runs(account_id, filter=filter, cursor=cursor, count=count)
    out: list[RunLog] = []
    for run in page.items:
        if created_ms is not None and run.created_ms != created_ms:
            continue
        found = await svc.storage.get_run(account_id, run.run_id)
        if found is not None and found.created_ms == run.created_ms:
            run = found
        entries: list[LogEntry] = []
        if run.steps:
            logged = await svc.storage.list_logs(
                account_id,
                filter=MessageFilter(message_ids=(run.steps[-1].message_id,)),
                before_id=None,
                count=_LOG_ENTRIES,
                newest_first=False,
            )
            entries = list(logged.items)
        callback = None
        if run.state is RunState.FAILED and entries and entries[-1].message.dlq_id:
            sent = await failure_callbacks(svc, entries[-1].message)
            callback = sent[-1] if sent else None
        out.append(RunLog(run, entries, callback))
    return Page(out, page.cursor)
