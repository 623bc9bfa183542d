"""Delivery edge cases found while building the reliability battery."""

from __future__ import annotations

from collections.abc import Callable

import httpx

from tests.reliability.support import SinkProcess
from tests.support.http import AUTH, log_entries
from tests.support.server import RunningServer
from tests.support.waiting import wait_until


def test_a_destination_with_a_non_ascii_path_is_delivered_percent_encoded(
    start_server: Callable[..., RunningServer],
) -> None:
    """A URL with raw non-ASCII characters (accepted from a batch item, a URL-group endpoint or a
    schedule) must reach a strict HTTP server (aiohttp here) percent-encoded as UTF-8; sent raw,
    such servers answer 400 and the message would fail."""
    server = start_server()
    sink = SinkProcess()
    try:
        url = sink.url("/u/ü?q=ä")
        with httpx.Client(base_url=server.base_url, headers=AUTH) as client:
            answer = client.post(
                "/v2/batch", json=[{"destination": url, "headers": {"Upstash-Retries": "0"}}]
            )
        assert answer.status_code == 201, answer.text
        wait_until(
            lambda: list(log_entries(server.base_url, state="FAILED")) or sink.deliveries(),
            timeout=10,
        )
        states = [e["state"] for e in log_entries(server.base_url)]
        raw_paths = [d[6] for d in sink.deliveries()]
    finally:
        sink.close()
    print(f"\nnon-ASCII destination: log states={states} sink raw paths={raw_paths}")
    assert "DELIVERED" in states
    assert raw_paths == ["/u/%C3%BC?q=%C3%A4"]
