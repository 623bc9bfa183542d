"""Publish: resolve the destination, validate everything, store every message in one call.

`resolve_targets` is the one place a destination becomes its targets; the API's publish and the
scheduler's fires both use it and decide themselves what a missing URL group means (a 404 for a
request, an error recorded on the schedule for a fire).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

from homing import ids
from homing.actions import quotas, workflows
from homing.actions.context import Services
from homing.errors import InvalidRequest, NotFound, PreconditionFailed
from homing.headers import PublishOptions, parse_options
from homing.models import InsertResult, NewMessage
from homing.publish import Destination, Endpoint, build_messages, parse_destination
from homing.storage.base import Storage
from homing.workflow import control as workflow_control


@dataclass(frozen=True, slots=True)
class Targets:
    endpoints: tuple[Endpoint, ...]
    problem: str | None = None  # why there are none, for an operator to read


async def resolve_targets(storage: Storage, account_id: str, destination: Destination) -> Targets:
    if destination.url is not None:
        return Targets((Endpoint(destination.url),))
    assert destination.group is not None
    group = await storage.get_url_group(account_id, destination.group)
    if group is None or not group.endpoints:
        return Targets((), f"URL group {destination.group!r} does not exist")
    return Targets(tuple(group.endpoints))


def check_destinations(svc: Services, urls: Sequence[str], options: PublishOptions) -> None:
    """Refuse forbidden destinations and callbacks before anything is stored."""
    for url in urls:
        svc.policy.check_url(url)
    for cb in (options.callback, options.failure_callback):
        if cb is not None:
            svc.policy.check_url(cb.url)


@dataclass(frozen=True, slots=True)
class Draft:
    """One publish as the caller gave it: nothing checked yet."""

    destination: str
    headers: list[tuple[str, str]]
    config: list[tuple[str, str]]
    body: bytes
    queue: str | None = None


@dataclass(frozen=True, slots=True)
class Published:
    messages: list[NewMessage]
    results: list[InsertResult]
    is_group: bool

    @property
    def all_deduplicated(self) -> bool:
        return bool(self.results) and all(r.deduplicated for r in self.results)


@dataclass(frozen=True, slots=True)
class _Prepared:
    messages: list[NewMessage]
    is_group: bool
    run: workflows.RunPlan | None = None  # a message of an Upstash Workflow run


async def _prepare(
    svc: Services, account_id: str, draft: Draft, *, caller: str, now_ms: int
) -> _Prepared:
    # Only a message that names its run belongs to one: most do not, and need not be read.
    in_run = any(name.lower() == workflow_control.RUN_ID for name, _ in draft.headers)
    control = workflow_control.read(draft.headers) if in_run else None
    if control is None:
        return await _prepare_plain(svc, account_id, draft, caller=caller, now_ms=now_ms)
    try:
        prepared = await _prepare_plain(svc, account_id, draft, caller=caller, now_ms=now_ms)
        if prepared.is_group:
            raise InvalidRequest("a workflow message must be published to a URL")
        options = parse_options(draft.headers, draft.config, limits=svc.settings.limits)
    except InvalidRequest as exc:
        # Inside a run, a 400 reads as "the run has ended" to the JS SDK, which then stops
        # quietly; a limit or a refused call must fail the run visibly instead.
        raise PreconditionFailed(exc.message) from None
    plan = await workflows.plan(svc, account_id, control, prepared.messages[0], options)
    return _Prepared([plan.message], is_group=False, run=plan)


async def _prepare_plain(
    svc: Services, account_id: str, draft: Draft, *, caller: str, now_ms: int
) -> _Prepared:
    dest = parse_destination(draft.destination)
    options = parse_options(draft.headers, draft.config, limits=svc.settings.limits)
    if options.delay_s and options.not_before_s is None:
        # The delay counts from the moment the request arrived, which a millisecond clock
        # rounded down would place up to 1 ms too early: "2 s later" must never be 1.9995 s.
        now_ms = max(now_ms, svc.clock.now_ms_ceil())
    targets = await resolve_targets(svc.storage, account_id, dest)
    if targets.problem is not None:
        raise NotFound(targets.problem)
    check_destinations(svc, [t.url for t in targets.endpoints], options)
    messages = build_messages(
        account_id=account_id,
        targets=targets.endpoints,
        options=options,
        body=draft.body,
        now_ms=now_ms,
        new_id=ids.message_id,
        caller_ip=caller,
        topic_name=dest.group,
        queue_name=draft.queue,
    )
    return _Prepared(messages, is_group=dest.group is not None)


async def _store(
    svc: Services, account_id: str, messages: list[NewMessage], now_ms: int
) -> list[InsertResult]:
    """Insert (durable on return), and count what was accepted."""
    started = time.monotonic()
    results = await svc.storage.insert_messages(
        messages, now_ms=now_ms, dedup_window_ms=svc.settings.dedup_window_ms
    )
    svc.metrics.commit_publish.observe(time.monotonic() - started)
    svc.metrics.record_publish(account_id, [r.url for r in results if not r.deduplicated])
    return results


def _traced(
    svc: Services, account_id: str, published: Published, destination: str, started_ns: int
) -> None:
    if svc.telemetry is not None:
        svc.telemetry.published(
            trace=published.messages[0].spec.trace,
            account=account_id,
            message_ids=[r.message_id for r in published.results],
            destination=destination,
            start_ns=started_ns,
            end_ns=time.time_ns(),
            status=202 if published.all_deduplicated else 201,
        )


async def publish(
    svc: Services, account_id: str, draft: Draft, *, caller: str, started_ns: int
) -> Published:
    """Publish one request (a URL: one message; a URL group: one per endpoint)."""
    now = svc.clock.now_ms()
    if draft.queue is not None:
        await quotas.check_queues(svc, account_id, [draft.queue])
    prepared = await _prepare(svc, account_id, draft, caller=caller, now_ms=now)
    if prepared.run is not None:
        results = await workflows.store(svc, account_id, [prepared.run], now)
    else:
        results = await _store(svc, account_id, prepared.messages, now)
    if draft.queue is not None:
        quotas.remember_queues(svc, account_id, [draft.queue])
    published = Published(prepared.messages, results, prepared.is_group)
    _traced(svc, account_id, published, draft.destination, started_ns)
    return published


async def publish_batch(
    svc: Services, account_id: str, drafts: Sequence[Draft], *, caller: str, started_ns: int
) -> list[Published]:
    """Publish every draft, or none: all are validated before one insert stores them all."""
    now = svc.clock.now_ms()
    prepared: list[_Prepared] = []
    for index, draft in enumerate(drafts):
        try:
            prepared.append(await _prepare(svc, account_id, draft, caller=caller, now_ms=now))
        except InvalidRequest as exc:
            raise type(exc)(f"batch item {index}: {exc.message}") from None
    named = {m.queue_name for p in prepared for m in p.messages if m.queue_name}
    await quotas.check_queues(svc, account_id, named)
    # Workflow messages first: a step of a run that has ended refuses the whole request.
    plans = [p.run for p in prepared if p.run is not None]
    run_results = iter(await workflows.store(svc, account_id, plans, now) if plans else [])
    plain = [m for p in prepared if p.run is None for m in p.messages]
    results = iter(await _store(svc, account_id, plain, now) if plain else [])
    quotas.remember_queues(svc, account_id, named)
    out: list[Published] = []
    for p in prepared:
        source = run_results if p.run is not None else results
        mine = [next(source) for _ in p.messages]
        published = Published(p.messages, mine, p.is_group)
        first = p.messages[0]
        _traced(svc, account_id, published, first.topic_name or first.url, started_ns)
        out.append(published)
    return out
