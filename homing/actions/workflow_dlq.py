"""The workflow DLQ (`client.dlq`): list a failed run's entry, resume or restart the run under a
new id, re-send its failure callback, delete entries.

Each entry is taken out of the DLQ before its new run starts, so two operators resuming the same
entry at once start one run, not two.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

from homing import ids
from homing.actions.context import Services
from homing.delivery.outcome import Policy as OutcomePolicy
from homing.errors import InvalidRequest, NotFound
from homing.models import Message, MessageFilter, NewRun, Run, RunFilter
from homing.workflow import dlq, runs


@dataclass(frozen=True, slots=True)
class Selection:
    """Which workflow entries a call covers, beyond the QStash DLQ filter."""

    run_ids: tuple[str, ...] = ()
    url: str | None = None
    created_ms: int | None = None

    def matches(self, entry: Message) -> bool:
        tag = entry.spec.workflow
        if tag is None or not dlq.is_run_failure(entry):
            return False
        if self.run_ids and tag.run_id not in self.run_ids:
            return False
        if self.created_ms is not None and tag.created_ms != self.created_ms:
            return False
        return self.url is None or entry.url == self.url


@dataclass(frozen=True, slots=True)
class Entry:
    entry: Message
    run: Run | None
    callbacks: tuple[Message, ...] = ()  # the failure callback, then each re-send

    @property
    def callback(self) -> Message | None:
        return self.callbacks[-1] if self.callbacks else None


async def failure_callbacks(svc: Services, entry: Message) -> tuple[Message, ...]:
    """The sends of the failure callback of the run that `entry` failed: the first, then each
    re-send, oldest first (those still retained)."""
    found: list[Message] = []
    if entry.dlq_id is None:
        return ()
    for retry in range(dlq.MAX_CALLBACK_RETRIES + 1):
        sent = await svc.storage.get_message(
            entry.account_id, dlq.failure_callback_id(entry.dlq_id, retry)
        )
        if sent is None:
            break
        found.append(sent)
    return tuple(found)


async def _entry(svc: Services, entry: Message) -> Entry:
    return Entry(
        entry, await _run_of(svc, entry, with_steps=False), await failure_callbacks(svc, entry)
    )


@dataclass(frozen=True, slots=True)
class Started:
    run_id: str
    created_ms: int


async def _run_of(svc: Services, entry: Message, *, with_steps: bool) -> Run | None:
    tag = entry.spec.workflow
    if tag is None:
        return None
    if with_steps:
        run = await svc.storage.get_run(entry.account_id, tag.run_id)
        return run if run is not None and run.created_ms == tag.created_ms else None
    page = await svc.storage.list_runs(
        entry.account_id, filter=RunFilter(run_ids=(tag.run_id,)), cursor=None, count=5
    )
    return next((r for r in page.items if r.created_ms == tag.created_ms), None)


async def list_entries(
    svc: Services,
    account_id: str,
    base: MessageFilter,
    selection: Selection,
    *,
    cursor: str | None,
    count: int,
) -> tuple[list[Entry], str | None]:
    """The workflow entries among the next `count` DLQ entries after `cursor`, with their runs,
    and the cursor after them (None at the end). A page may hold fewer than `count` workflow
    entries (the others are plain messages): the SDKs page on until the cursor is gone."""
    page = await svc.storage.list_dlq(account_id, filter=base, cursor=cursor, count=count)
    found: dict[tuple[str, int], Message] = {}
    for e in page.items:
        tag = e.spec.workflow
        if tag is not None and selection.matches(e):
            # Two parallel steps failing together leave two QStash entries for one run; the
            # run's workflow entry is the first (both resume the same run).
            found.setdefault((tag.run_id, tag.created_ms), e)
    return [await _entry(svc, e) for e in found.values()], page.cursor


async def get_entry(svc: Services, account_id: str, dlq_id: str) -> Entry:
    entry = await svc.storage.get_dlq(account_id, dlq_id)
    if entry is None or not Selection().matches(entry):
        raise NotFound(f"workflow DLQ entry {dlq_id!r} not found")
    return await _entry(svc, entry)


async def _start_again(
    svc: Services, entry: Message, *, restart: bool, retries: int | None
) -> Started | None:
    run = await _run_of(svc, entry, with_steps=True)
    if run is None:
        return None
    source = entry
    if restart:
        init = await svc.storage.get_message(entry.account_id, run.init_message_id)
        source = init or entry
    if not await svc.storage.delete_dlq(entry.account_id, [entry.dlq_id or ""]):
        return None  # taken by a concurrent resume, restart or delete
    now = svc.clock.now_ms()
    new_run_id = "wfr_" + ids.message_id().removeprefix("msg_")
    message, copied = dlq.resumed(
        source,
        run,
        new_run_id=new_run_id,
        new_message_id=ids.message_id(),
        now_ms=now,
        retries=retries,
        restart=restart,
    )
    new_run = NewRun(
        account_id=entry.account_id,
        run_id=new_run_id,
        url=run.url,
        created_ms=now,
        payload=run.payload,
        init_message_id=copied[0].message_id if copied else message.id,
        config=run.config,
        labels=run.labels,
        caller_ip=run.caller_ip,
    )
    await svc.storage.start_run(new_run, message, now_ms=now, dedup_window_ms=0, copied=copied)
    svc.metrics.record_run("started")
    return Started(new_run_id, now)


async def start_again(
    svc: Services, entries: Sequence[Message], *, restart: bool, retries: int | None
) -> list[Started]:
    """Resume (`restart=False`) or restart each entry's run under a new run id; entries whose
    run is gone or that left the DLQ meanwhile are skipped."""
    out: list[Started] = []
    for entry in entries:
        started = await _start_again(svc, entry, restart=restart, retries=retries)
        if started is not None:
            out.append(started)
    return out


async def retry_failure_callback(svc: Services, account_id: str, dlq_id: str) -> Started:
    """Send the run's failure callback again, built as it was when the run failed; only when
    its latest send failed (an in-progress or delivered callback is not sent twice)."""
    found = await get_entry(svc, account_id, dlq_id)
    entry, run = found.entry, found.run
    if run is None or entry.last_response is None:
        raise NotFound(f"the run of workflow DLQ entry {dlq_id!r} is no longer retained")
    latest = found.callback
    if latest is not None and dlq.callback_state(latest) != "CALLBACK_FAIL":
        raise InvalidRequest(
            f"the failure callback of workflow DLQ entry {dlq_id!r} has not failed "
            f"({dlq.callback_state(latest)})"
        )
    retry = len(found.callbacks)
    if retry > dlq.MAX_CALLBACK_RETRIES:
        raise InvalidRequest(
            f"the failure callback of workflow DLQ entry {dlq_id!r} was re-sent "
            f"{dlq.MAX_CALLBACK_RETRIES} times already"
        )
    now = svc.clock.now_ms()
    callback = runs.failure_callback(
        entry,
        entry.last_response,
        run,
        dlq_id=dlq_id,
        now_ms=now,
        new_id=lambda: dlq.failure_callback_id(dlq_id, retry),
        max_body=OutcomePolicy().max_callback_body,
    )
    if callback is None:
        raise NotFound(f"the run of workflow DLQ entry {dlq_id!r} has no failure callback")
    # Two re-sends at once build the same id; the key makes the second a no-op.
    callback = dataclasses.replace(callback, dedup_key=callback.id)
    await svc.storage.insert_messages(
        [callback], now_ms=now, dedup_window_ms=svc.settings.dedup_window_ms
    )
    return Started(run.run_id, run.created_ms)


async def delete_entries(svc: Services, account_id: str, entries: Sequence[Message]) -> int:
    return await svc.storage.delete_dlq(account_id, [e.dlq_id for e in entries if e.dlq_id])
