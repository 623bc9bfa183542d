"""Per-console state and who is looking: what every console module reads from a request."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request

from homing.actions.context import Services
from homing.console.auth import LoginThrottle, Sessions, Signer


@dataclass
class ConsoleState:
    """Per-console secrets and counters, made by `create_console()` (no module globals)."""

    signer: Signer = field(default_factory=Signer)
    sessions: Sessions = field(init=False)
    throttle: LoginThrottle = field(default_factory=LoginThrottle)
    # account id -> (monotonic time, overview snapshot): open tabs poll; the store is asked
    # at most once per `overview.CACHE_S` per account however many there are.
    overview: dict[str, tuple[float, dict[str, Any]]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.sessions = Sessions(self.signer)


@dataclass(frozen=True, slots=True)
class Viewer:
    account_id: str
    read_only: bool
    csrf: str
    mode: str


def state(request: Request) -> ConsoleState:
    found: ConsoleState = request.app.state.console
    return found


def services(request: Request) -> Services:
    found: Services = request.state.services
    return found


def secure(request: Request) -> bool:
    return request.url.scheme == "https"
