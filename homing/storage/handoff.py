"""What both backends share for handing just-stored messages to the local engine (`Taker`).

Which messages an insert may store already claimed, and the `Message` the engine then gets:
built from the `NewMessage` in hand, since reading the row back would cost what the hand-off
saves.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from homing.models import Claimed, Lease, Message, MessageState, NewMessage

if TYPE_CHECKING:
    from homing.storage.base import Taker


def eligible(m: NewMessage, now_ms: int) -> bool:
    """Due at once, and nothing decides its turn but the clock: no queue admits it, no
    flow-control key limits it, it holds no queue slot of a parent."""
    return (
        m.not_before_ms <= now_ms
        and m.queue_name is None
        and m.queue_slot is None
        and m.flow is None
    )


def claimed(stored: Sequence[NewMessage], lease: Lease) -> list[Claimed]:
    """The messages stored ACTIVE under `lease`, as a claim would have returned them."""
    return [
        Claimed(
            Message(
                id=m.id,
                account_id=m.account_id,
                url=m.url,
                body=m.body,
                spec=m.spec,
                state=MessageState.ACTIVE,
                created_ms=m.created_ms,
                not_before_ms=m.not_before_ms,
                due_ms=m.not_before_ms,
                attempts=0,
                caller_ip=m.caller_ip,
                queue_name=None,
                topic_name=m.topic_name,
                endpoint_name=m.endpoint_name,
                schedule_id=m.schedule_id,
                labels=m.labels,
                flow=None,
            ),
            lease.token,
        )
        for m in stored
    ]


def reserve(taker: Taker | None, messages: Sequence[NewMessage], now_ms: int) -> Lease | None:
    """Room from `taker` for the messages of an insert it may take, or None."""
    if taker is None:
        return None
    wanted = sum(1 for m in messages if eligible(m, now_ms))
    return taker.reserve(wanted) if wanted else None


def settle(
    taker: Taker | None, lease: Lease | None, taken: Sequence[NewMessage], *, durable: bool
) -> None:
    """After the insert: hand what it stored under `lease` over, or give the room back."""
    if taker is None or lease is None:
        return
    if durable:
        taker.take(lease, claimed(taken, lease))
    else:
        taker.release(lease)
