"""In-process announcements between parts that must not know each other.

A use case says what happened (`notices.keys_rotated.publish(account_id)`); the runtime wires
the parts that care (the delivery engine forgets its cached keys). On a node that runs no such
part nothing is subscribed and the announcement is simply dropped: other nodes notice through
the store (the engine's key cache re-reads the keys at most a second later).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T")


class Notice(Generic[T]):
    def __init__(self) -> None:
        self._subscribers: list[Callable[[T], None]] = []

    def subscribe(self, subscriber: Callable[[T], None]) -> None:
        self._subscribers.append(subscriber)

    def publish(self, value: T) -> None:
        for subscriber in list(self._subscribers):
            subscriber(value)


@dataclass
class Notices:
    """Every announcement a node makes, one field each."""

    keys_rotated: Notice[str] = field(default_factory=Notice)  # account id
