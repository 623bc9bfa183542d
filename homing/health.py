"""What makes this node unready, reported by the parts that notice it.

`/readyz` answers 503 while any condition is reported here, or while the store does not answer
its ping in time. Each part reports under its own name and clears its report when it recovers,
so a node turns ready again by itself once the fault ends:

    health.fail("engine.renew", "lease renewal failing: connection refused")
    ...
    health.clear("engine.renew")

Conditions are plain strings meant for an operator reading `/readyz`; they never carry secrets.
"""

from __future__ import annotations


class Health:
    def __init__(self) -> None:
        self._problems: dict[str, str] = {}

    def fail(self, check: str, reason: str) -> None:
        self._problems[check] = reason

    def clear(self, check: str) -> None:
        self._problems.pop(check, None)

    def problems(self) -> dict[str, str]:
        """The conditions reported now, by the name of the part that reported each."""
        return dict(self._problems)

    @property
    def ok(self) -> bool:
        return not self._problems
