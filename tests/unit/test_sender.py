"""The delivery client's own settings (what the attempt tests cannot reach in reasonable time)."""

from __future__ import annotations

import pytest

from homing.delivery.sender import Sender


@pytest.mark.asyncio
async def test_the_attempt_deadline_is_the_only_one() -> None:
    # Upstash-Timeout allows 15 minutes; aiohttp's default session timeout (5 minutes total)
    # would silently cut such an attempt short.
    sender = Sender(allow_private=True)
    await sender.start()
    try:
        assert sender._session is not None
        timeout = sender._session.timeout
        assert (timeout.total, timeout.connect, timeout.sock_read, timeout.sock_connect) == (
            None,
            None,
            None,
            None,
        )
    finally:
        await sender.close()
