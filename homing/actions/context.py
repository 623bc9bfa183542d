"""What every use case needs, made once by the runtime (no module globals) and handed to the
API and the console with each request."""

from __future__ import annotations

from dataclasses import dataclass, field

from homing.clock import Clock
from homing.config import Settings
from homing.destinations import DestinationPolicy
from homing.errors import ReadOnlyToken, Unauthorized
from homing.health import Health
from homing.metrics import Metrics
from homing.models import Principal
from homing.notices import Notices
from homing.storage.base import Storage
from homing.telemetry import Telemetry


@dataclass
class Services:
    settings: Settings
    storage: Storage
    clock: Clock
    policy: DestinationPolicy  # the node's one policy, shared with its sender
    metrics: Metrics
    telemetry: Telemetry | None = None
    health: Health = field(default_factory=Health)
    notices: Notices = field(default_factory=Notices)
    known_queues: set[tuple[str, str]] = field(default_factory=set)  # see quotas.check_queues

    async def authenticate(self, token: str, *, write: bool) -> Principal:
        """The account a token speaks for; a write needs a read-write token."""
        if not token:
            raise Unauthorized()
        principal = await self.storage.authenticate(token)
        if principal is None:
            raise Unauthorized("Unauthorized: unknown token")
        if write and principal.read_only:
            raise ReadOnlyToken()
        return principal
