"""What an operator reads when an attempt got no answer: the short texts of
docs/operations.md ("Errors of delivery attempts"), in the logs of the API, for messages that
then sit in the DLQ."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
from qstash import QStash
from qstash.log import LogState

from tests.support.http import log_entries, nowhere
from tests.support.server import RunningServer
from tests.support.waiting import eventually


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts connections (the kernel completes the handshake) and never answers."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(16)
        yield s.getsockname()[1]


def failed_attempt_texts(server: RunningServer, message_id: str) -> dict[str, str]:
    """state -> error text of the message's ERROR and FAILED log entries, once both exist."""

    def entries() -> dict[str, str] | None:
        found = {
            e["state"]: e.get("error", "")
            for e in log_entries(server.base_url, messageId=message_id)
            if e["state"] in (LogState.ERROR.value, LogState.FAILED.value)
        }
        return found if len(found) == 2 else None

    texts: dict[str, str] = eventually(entries, timeout=10)
    return texts


def in_dlq(client: QStash, message_id: str) -> bool:
    return any(m.message_id == message_id for m in client.dlq.list().messages)


def test_a_closed_port_reads_connection_refused(server: RunningServer, client: QStash) -> None:
    message_id = client.message.publish(url=nowhere("/hook"), body="x", retries=0).message_id
    texts = failed_attempt_texts(server, message_id)
    assert texts == {
        "ERROR": "connection refused (127.0.0.1:9)",
        "FAILED": "connection refused (127.0.0.1:9)",
    }
    assert eventually(lambda: in_dlq(client, message_id))


def test_a_destination_that_never_answers_reads_timed_out(
    server: RunningServer, client: QStash, silent_port: int
) -> None:
    message_id = client.message.publish(
        url=f"http://127.0.0.1:{silent_port}/slow", body="x", retries=0, timeout="1s"
    ).message_id
    texts = failed_attempt_texts(server, message_id)
    assert texts == {"ERROR": "timed out after 1 s", "FAILED": "timed out after 1 s"}
    assert eventually(lambda: in_dlq(client, message_id))
