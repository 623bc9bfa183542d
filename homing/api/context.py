"""What every request handler needs, created once by the app's lifespan (no module globals)."""

from __future__ import annotations

from dataclasses import dataclass, field

from starlette.requests import Request

from homing.clock import Clock
from homing.config import Settings
from homing.delivery.engine import DeliveryEngine
from homing.destinations import DestinationPolicy
from homing.errors import ReadOnlyToken, Unauthorized
from homing.health import Health
from homing.metrics import Metrics
from homing.models import Principal
from homing.scheduler.loop import Scheduler
from homing.storage.base import Storage
from homing.telemetry import Telemetry


@dataclass
class Services:
    settings: Settings
    storage: Storage
    engine: DeliveryEngine
    clock: Clock
    policy: DestinationPolicy
    scheduler: Scheduler
    metrics: Metrics
    telemetry: Telemetry | None = None
    health: Health = field(default_factory=Health)
    known_queues: set[tuple[str, str]] = field(default_factory=set)  # see queues.check_quota

    async def principal(self, request: Request, *, write: bool) -> Principal:
        """Who is calling, from `Authorization: Bearer` or `?qstash_token=` (spec 1.2)."""
        token = ""
        auth = request.headers.get("authorization", "")
        if auth[:7].lower() == "bearer ":
            token = auth[7:].strip()
        if not token:
            token = request.query_params.get("qstash_token", "")
        if not token:
            raise Unauthorized()
        principal = await self.storage.authenticate(token)
        if principal is None:
            raise Unauthorized("Unauthorized: unknown token")
        if write and principal.read_only:
            raise ReadOnlyToken()
        return principal


def services(request: Request) -> Services:
    found: Services = request.state.services
    return found


async def account(request: Request, *, write: bool | None = None) -> tuple[Services, str]:
    """The services and the calling account; any method but GET needs a read-write token."""
    svc = services(request)
    is_write = request.method != "GET" if write is None else write
    principal = await svc.principal(request, write=is_write)
    return svc, principal.account_id
