"""Attempt counters are tallied between scrapes: every scrape shows all attempts so far."""

from __future__ import annotations

from typing import Any, cast

import pytest

from homing.delivery import outcome
from homing.metrics import Metrics
from homing.models import DeliverySpec, Message, MessageState, Response
from homing.storage.base import Storage


class _EmptyStore:
    async def state_counts(self, account: str | None) -> dict[str, int]:
        return {}

    async def list_accounts(self) -> list[Any]:
        return []


def _message(url: str) -> Message:
    return Message(
        id="msg_1",
        account_id="acct",
        url=url,
        body=b"",
        spec=DeliverySpec(max_retries=1),
        state=MessageState.ACTIVE,
        created_ms=0,
        not_before_ms=0,
        due_ms=0,
        attempts=0,
    )


def _record(metrics: Metrics, url: str, status: int) -> None:
    message = _message(url)
    decision = outcome.decide(
        message, 1, Response(status=status), now_ms=10, new_id=str, new_dlq_id=str
    )
    metrics.record_attempt(message, decision, 0.002)


@pytest.mark.asyncio
async def test_every_scrape_counts_every_attempt_so_far() -> None:
    metrics = Metrics()
    store = cast(Storage, _EmptyStore())
    for _ in range(3):
        _record(metrics, "http://a.example/x", 200)
    _record(metrics, "http://a.example/y", 500)
    text = (await metrics.render(store)).decode()
    assert 'homing_messages_delivered_total{account="acct",host="a.example"} 3.0' in text
    assert 'homing_messages_retried_total{account="acct",host="a.example"} 1.0' in text
    assert 'homing_attempts_total{account="acct",host="a.example",outcome="delivered"} 3.0' in text
    assert 'homing_attempts_total{account="acct",host="a.example",outcome="retry"} 1.0' in text
    assert "homing_attempt_duration_seconds_count 4.0" in text
    for i in range(2000):  # more keys than the tally keeps between scrapes
        _record(metrics, f"http://b.example/{i}", 200)
    text = (await metrics.render(store)).decode()
    assert 'homing_messages_delivered_total{account="acct",host="b.example"} 2000.0' in text
    assert 'homing_messages_delivered_total{account="acct",host="a.example"} 3.0' in text
