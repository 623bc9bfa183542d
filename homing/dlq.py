"""Retrying dead-letter entries: the new message each retried entry becomes. Pure.

`POST /v2/dlq/retry` and the console's retry button both call `retry_replacements` and hand
the pairs to `Storage.replace_dlq`, which takes each entry out of the DLQ and inserts its new
message in one step (an entry already gone inserts nothing, so a retry never runs twice). How
one entry becomes a message is `homing.publish.retry_from_dlq`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from homing.headers import PublishOptions
from homing.models import Message, NewMessage
from homing.publish import retry_from_dlq


def retry_replacements(
    entries: Sequence[Message],
    overrides: PublishOptions,
    *,
    now_ms: int,
    new_id: Callable[[], str],
) -> list[tuple[str, NewMessage]]:
    """(DLQ id, new message) for each entry still in the DLQ, in the given order: the original
    request and configuration, overridden by the configuration the retry request gave."""
    return [
        (entry.dlq_id, retry_from_dlq(entry, overrides, now_ms=now_ms, new_id=new_id))
        for entry in entries
        if entry.dlq_id is not None
    ]
