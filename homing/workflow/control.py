"""Workflow control headers: what a publish says about the run it belongs to, and the headers a
run's deliveries carry. Pure: no I/O, no clock.

The SDKs send `Upstash-Workflow-*` and `Upstash-Feature-Set` raw to tell Homing what a message
is (the run's init, a step, a call to a third party); Homing consumes them and never delivers
them as such. On the way to the workflow endpoint Homing adds the run id, the run's creation
time and the run headers (the init's forwarded headers), which the SDKs stopped re-sending on
every step.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from homing.errors import InvalidRequest
from homing.headers import parse_bool
from homing.models import CallType, Headers

RUN_ID = "upstash-workflow-runid"
INIT = "upstash-workflow-init"
URL = "upstash-workflow-url"
CALL_TYPE = "upstash-workflow-calltype"
FEATURE_SET = "upstash-feature-set"
INVOKE = "upstash-workflow-invoke"

# Features (`Upstash-Feature-Set`) Homing acts on.
DETECT_TRIGGER = "WF_DetectTrigger"
TRIGGER_ON_CONFIG = "WF_TriggerOnConfig"
STEP_CONFIG = "WF_StepConfig"

# Delivery headers Homing sets on every delivery of a run to its workflow endpoint.
RUN_ID_HEADER = "Upstash-Workflow-RunId"
CREATED_AT_HEADER = "Upstash-Workflow-CreatedAt"
URL_HEADER = "Upstash-Workflow-Url"

_MAX_RUN_ID = 256


@dataclass(frozen=True, slots=True)
class Control:
    """The workflow control headers of one publish (or of a callback's configuration)."""

    run_id: str
    init: bool
    url: str | None = None
    call_type: str = CallType.STEP.value
    features: tuple[str, ...] = ()
    invoke: bool = False

    def has(self, feature: str) -> bool:
        return feature in self.features

    @property
    def takes_run_config(self) -> bool:
        """`WF_TriggerOnConfig`: the run's configuration replaces the message's own, unless the
        message asks to keep its own (`WF_StepConfig`, sent by unreleased SDK versions)."""
        return self.has(TRIGGER_ON_CONFIG) and not self.has(STEP_CONFIG)


def is_control(lowered_name: str) -> bool:
    """A raw request header that is workflow control, consumed by Homing."""
    return lowered_name.startswith("upstash-workflow-") or lowered_name == FEATURE_SET


def read(headers: Iterable[tuple[str, str]]) -> Control | None:
    """The control of a publish's headers; None for a message that belongs to no run."""
    found: dict[str, str] = {}
    for name, value in headers:
        low = name.lower()
        if is_control(low):
            found.setdefault(low, value)
    return from_mapping(found)


def from_mapping(found: Mapping[str, str]) -> Control | None:
    """`read` over lower-cased names (a callback's stored configuration has that shape)."""
    run_id = (found.get(RUN_ID) or "").strip()
    if not run_id:
        return None
    if len(run_id) > _MAX_RUN_ID or any(c in run_id for c in "/?#\r\n\x00"):
        raise InvalidRequest(f"invalid workflow run id {run_id!r}")
    features = tuple(f.strip() for f in (found.get(FEATURE_SET) or "").split(",") if f.strip())
    return Control(
        run_id=run_id,
        init=parse_bool(found.get(INIT) or "false", "Upstash-Workflow-Init"),
        url=(found.get(URL) or "").strip() or None,
        call_type=(found.get(CALL_TYPE) or "").strip() or CallType.STEP.value,
        features=features,
        invoke=parse_bool(found.get(INVOKE) or "false", "Upstash-Workflow-Invoke"),
    )


def run_headers(forwarded: Headers) -> Headers:
    """The run headers kept from the init's forwarded set: every name except
    `Upstash-Workflow-*` (a forwarded `Upstash-Workflow-Sdk-Version` on a call result or a
    failure callback makes the SDKs misread it) and `Content-Type` (each message has its own)."""
    return {
        name: list(values)
        for name, values in forwarded.items()
        if not name.lower().startswith("upstash-workflow-") and name.lower() != "content-type"
    }


def delivery_headers(
    run: Headers, own: Headers, *, run_id: str, created_ms: int, url: str | None
) -> Headers:
    """The forwarded headers of a delivery to the workflow endpoint: the run headers, then the
    message's own forwarded headers (they win on a name clash), then what Homing sets."""
    out: Headers = {}
    lowered: dict[str, str] = {}
    for source in (run, own):
        for name, values in source.items():
            previous = lowered.get(name.lower())
            if previous is not None:
                del out[previous]
            lowered[name.lower()] = name
            out[name] = list(values)
    out[RUN_ID_HEADER] = [run_id]
    out[CREATED_AT_HEADER] = [str(created_ms)]
    if url is not None and URL_HEADER.lower() not in lowered:
        out[URL_HEADER] = [url]
    return out
