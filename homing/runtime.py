"""The runtime: the one owner of a node's parts, started in order and stopped in reverse.

    storage (opened, durability checked, accounts seeded)
      -> telemetry -> [sender -> delivery engine -> scheduler]   (roles `all` and `worker`)

The node's role says which parts run. `api` nodes answer requests and run no delivery engine,
no scheduler and no timer-driven task; `worker` nodes run those and answer only the probes and
the metrics; `all` runs everything (the only role an SQLite store allows: it belongs to one
process). Work published on an `api` node reaches the workers through the store (PostgreSQL
NOTIFY wakes them at once).

The front ends (`homing.server`) get the `Services` the use cases need and nothing else: they
reach the engine only through notices (`Services.notices`), which the runtime wires here.
"""

from __future__ import annotations

import contextlib
import logging
import secrets

from homing.actions.context import Services
from homing.clock import Clock, SystemClock
from homing.config import Settings, role_problem
from homing.delivery.engine import DeliveryEngine, EngineSettings
from homing.delivery.outcome import Policy
from homing.delivery.sender import Sender
from homing.destinations import DestinationPolicy, ResolveFunc
from homing.errors import InvalidRequest, StorageUnavailable
from homing.health import Health
from homing.metrics import Metrics
from homing.models import SigningKeys
from homing.scheduler.loop import Scheduler
from homing.scheduler.waiters import WaiterTimer
from homing.storage import open_storage
from homing.storage.base import Storage
from homing.telemetry import Telemetry

log = logging.getLogger(__name__)


async def seed_accounts(storage: Storage, settings: Settings, now_ms: int) -> None:
    for seed in settings.accounts:
        await storage.ensure_account(
            seed.account_id,
            now_ms=now_ms,
            keys=SigningKeys(seed.current_key, seed.next_key),
            token=seed.token,
            reset_keys=seed.reset_keys,
        )


class Runtime:
    """Tests inject their storage (not yet opened), clock and name resolver."""

    def __init__(
        self,
        settings: Settings,
        *,
        storage: Storage | None = None,
        clock: Clock | None = None,
        resolve: ResolveFunc | None = None,
    ) -> None:
        self.settings = settings
        self.role = settings.role
        self.clock = clock or SystemClock()
        self.node_id = "node_" + secrets.token_hex(6)
        self._storage = storage
        self._resolve = resolve
        self._stack = contextlib.AsyncExitStack()
        self.services: Services | None = None
        self.sender: Sender | None = None
        self.engine: DeliveryEngine | None = None
        self.scheduler: Scheduler | None = None
        self.waiter_timer: WaiterTimer | None = None

    @property
    def runs_work(self) -> bool:
        """Delivery, schedules and every timer-driven task run on this node."""
        return self.role in ("all", "worker")

    @property
    def serves_api(self) -> bool:
        """The QStash API and the console are served by this node."""
        return self.role in ("all", "api")

    async def start(self) -> Services:
        """Open and start every part of this node's role; on failure, close what was opened."""
        try:
            return await self._start()
        except BaseException:
            await self._stack.aclose()
            raise

    async def stop(self) -> None:
        """Stop in reverse order: scheduler, engine (attempts in flight finish or are released),
        sender, telemetry, storage."""
        await self._stack.aclose()

    async def _start(self) -> Services:
        settings = self.settings
        store = self._storage or open_storage(
            settings.store_url, sqlite_synchronous=settings.sqlite_synchronous, settings=settings
        )
        if problem := role_problem(self.role, single_node=store.single_node):
            raise InvalidRequest(problem)
        health = Health()
        store.report_to(health)  # a full disk (SQLite), LISTEN down (PostgreSQL), ...
        await store.open()
        self._stack.push_async_callback(store.close)
        warning = await store.check_durability()
        if warning is not None:
            if not settings.allow_unsafe_durability:
                raise StorageUnavailable(
                    warning + " (start with --allow-unsafe-durability to accept)"
                )
            log.warning(warning, extra={"event": "storage.unsafe_durability"})
        await seed_accounts(store, settings, self.clock.now_ms())
        registry = Metrics()
        policy = DestinationPolicy(allow_private=settings.allow_private_destinations)
        telemetry = Telemetry.from_settings(settings.otel_endpoint, node_id=self.node_id)
        if telemetry is not None:
            self._stack.push_async_callback(telemetry.aclose)
        services = Services(
            settings=settings,
            storage=store,
            clock=self.clock,
            policy=policy,
            metrics=registry,
            telemetry=telemetry,
            health=health,
        )
        if self.runs_work:
            await self._start_work(services)
        self.services = services
        log.info(
            "node %s started as %s",
            self.node_id,
            self.role,
            extra={"event": "node.started", "node_id": self.node_id, "role": self.role},
        )
        return services

    async def _start_work(self, svc: Services) -> None:
        settings = self.settings
        self.sender = sender = Sender(
            allow_private=settings.allow_private_destinations,
            max_timeout_s=settings.limits.max_timeout_s,
            resolve=self._resolve,
            policy=svc.policy,
        )
        await sender.start()
        self._stack.push_async_callback(sender.close)
        self.engine = engine = DeliveryEngine(
            svc.storage,
            sender,
            self.clock,
            node_id=self.node_id,
            metrics=svc.metrics,
            telemetry=svc.telemetry,
            health=svc.health,
            settings=EngineSettings(
                concurrency=settings.concurrency,
                lease_ms=settings.lease_ms,
                shutdown_timeout_s=settings.shutdown_timeout_s,
                retention_ms=settings.retention_ms,
                dlq_retention_ms=settings.dlq_retention_ms,
                policy=Policy(
                    backoff_scale=settings.backoff_scale, max_callback_body=settings.max_body_size
                ),
            ),
        )
        # A rotation on this node signs with the new key at once; other nodes re-read it.
        svc.notices.keys_rotated.subscribe(engine.keys.forget)
        await engine.recover()
        await engine.start()
        self._stack.push_async_callback(engine.stop)
        self.scheduler = scheduler = Scheduler(
            svc.storage,
            self.clock,
            grace_ms=settings.schedule_grace_ms,
            metrics=svc.metrics,
            health=svc.health,
        )
        await scheduler.start()
        self._stack.push_async_callback(scheduler.stop)
        # Workflow waiters whose deadline passes (context.waitForEvent timeouts).
        self.waiter_timer = waiter_timer = WaiterTimer(svc)
        await waiter_timer.start()
        self._stack.push_async_callback(waiter_timer.stop)
