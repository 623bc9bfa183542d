"""Per-account limits, checked alike by the API and the console."""

from __future__ import annotations

from collections.abc import Iterable

from homing.actions.context import Services
from homing.errors import QuotaExceeded

MAX_QUEUES = 1000
MAX_PARALLELISM = 1000
MAX_SCHEDULES = 1000
MAX_GROUPS = 1000
MAX_ENDPOINTS = 100  # per URL group


async def check_queues(svc: Services, account_id: str, names: Iterable[str]) -> None:
    """Refuse queues that would take the account past its quota: enqueue, batch and schedules
    create queues as well as upsert.

    Queues known to exist (`remember_queues`, after they were stored) skip the check, so only a
    request naming a new queue pays for listing them. The quota is soft: two first messages into
    two new queues at the same moment may both pass at 999, and a node does not see another
    node's deletes in its memory.
    """
    unknown = {name for name in names if (account_id, name) not in svc.known_queues}
    if not unknown:
        return
    existing = {q.name for q in await svc.storage.list_queues(account_id)}
    if len(existing | unknown) > MAX_QUEUES:
        raise QuotaExceeded(f"an account may have at most {MAX_QUEUES} queues")


def remember_queues(svc: Services, account_id: str, names: Iterable[str]) -> None:
    """Queues that now exist (their messages or settings were stored)."""
    if len(svc.known_queues) >= 100_000:
        svc.known_queues.clear()
    svc.known_queues.update((account_id, name) for name in names)


def forget_queue(svc: Services, account_id: str, name: str) -> None:
    svc.known_queues.discard((account_id, name))
