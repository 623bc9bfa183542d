"""Retry from the dead-letter queue, as `POST /v2/dlq/retry` and the console's retry do it.

`retry_from_dlq` rebuilds each message from its entry (with the caller's overrides), the
destination policy checks it, and `replace_dlq` swaps entry for message atomically: an entry
retried twice at once (two tabs, two operators, two nodes) is delivered once.
"""

from __future__ import annotations

from collections.abc import Sequence

from homing import ids
from homing.actions.context import Services
from homing.actions.publish import check_destinations
from homing.headers import PublishOptions, parse_options
from homing.models import InsertResult, Message
from homing.publish import retry_from_dlq


async def retry(
    svc: Services,
    account_id: str,
    entries: Sequence[Message],
    overrides: PublishOptions | None = None,
) -> list[InsertResult | None]:
    """One result per entry, in order; None where the entry had already left the DLQ."""
    if overrides is None:
        overrides = parse_options([], limits=svc.settings.limits)
    now = svc.clock.now_ms()
    replacements = []
    for entry in entries:
        message = retry_from_dlq(entry, overrides, now_ms=now, new_id=ids.message_id)
        check_destinations(svc, [message.url], overrides)
        replacements.append((entry.dlq_id or "", message))
    return await svc.storage.replace_dlq(
        account_id, replacements, now_ms=now, dedup_window_ms=svc.settings.dedup_window_ms
    )
