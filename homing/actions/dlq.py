"""Retry from the dead-letter queue, as `POST /v2/dlq/retry` and the console's retry do it.

`homing.dlq.retry_replacements` rebuilds each message from its entry (with the caller's
overrides), the destination policy checks them, and `replace_dlq` swaps entry for message
atomically: an entry retried twice at once (two tabs, two operators, two nodes) is delivered
once.
"""

from __future__ import annotations

from collections.abc import Sequence

from homing import ids
from homing.actions.context import Services
from homing.actions.publish import check_destinations
from homing.dlq import retry_replacements
from homing.headers import PublishOptions, parse_options
from homing.models import InsertResult, Message


async def retry(
    svc: Services,
    account_id: str,
    entries: Sequence[Message],
    overrides: PublishOptions | None = None,
) -> list[InsertResult | None]:
    """One result per entry (entries as read from the DLQ), in order; None where the entry
    had already left the DLQ."""
    if overrides is None:
        overrides = parse_options([], limits=svc.settings.limits)
    now = svc.clock.now_ms()
    replacements = retry_replacements(entries, overrides, now_ms=now, new_id=ids.message_id)
    check_destinations(svc, [message.url for _, message in replacements], overrides)
    return await svc.storage.replace_dlq(
        account_id, replacements, now_ms=now, dedup_window_ms=svc.settings.dedup_window_ms
    )
