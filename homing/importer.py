"""`homing import`: copy schedules, URL groups and queues from a QStash-compatible API.

Works against the hosted service or another Homing, through the public API on both sides, so
the target applies its own validation. Idempotent: what already matches is left alone, so a
second run changes nothing. A schedule whose fields come back redacted cannot be recreated
faithfully and is skipped with a warning.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Any

import httpx

# Schedule fields that are configuration headers on create (`Upstash-*` of `POST /v2/schedules`).
_SCHEDULE_FIELDS = (
    "cron", "destination", "method", "header", "body", "retries", "delay", "timeout",
    "callback", "failureCallback", "callbackHeader", "failureCallbackHeader", "queueName",
    "flowControlKey", "parallelism", "rate", "period", "retryDelayExpression", "labels",
    "isPaused",
)  # fmt: skip


@dataclass
class Plan:
    actions: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def _client(url: str, token: str) -> httpx.Client:
    return httpx.Client(
        base_url=url.rstrip("/"),
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
        trust_env=False,
    )


def _get(client: httpx.Client, path: str) -> Any:
    response = client.get(path)
    response.raise_for_status()
    return response.json()


def _is_redacted(value: Any) -> bool:
    if isinstance(value, str):
        return value.startswith("REDACTED:")
    if isinstance(value, dict):
        return any(_is_redacted(v) for v in value.values())
    if isinstance(value, list):
        return any(_is_redacted(v) for v in value)
    return False


def _comparable(schedule: dict[str, Any]) -> dict[str, Any]:
    return {k: schedule.get(k) for k in _SCHEDULE_FIELDS}


def schedule_headers(s: dict[str, Any]) -> dict[str, str]:
    """The create-request headers that reproduce a schedule read from the API."""
    headers = {"Upstash-Cron": s["cron"], "Upstash-Schedule-Id": s["scheduleId"]}
    if s.get("method"):
        headers["Upstash-Method"] = s["method"]
    for name, values in (s.get("header") or {}).items():
        key = "Content-Type" if name.lower() == "content-type" else f"Upstash-Forward-{name}"
        headers[key] = ",".join(values)
    if s.get("retries") is not None:
        headers["Upstash-Retries"] = str(s["retries"])
    if s.get("delay"):
        headers["Upstash-Delay"] = f"{s['delay']}s"
    if s.get("timeout"):
        headers["Upstash-Timeout"] = f"{s['timeout']}s"
    if s.get("retryDelayExpression"):
        headers["Upstash-Retry-Delay"] = s["retryDelayExpression"]
    for field_name, header in (
        ("callback", "Upstash-Callback"),
        ("failureCallback", "Upstash-Failure-Callback"),
    ):
        if s.get(field_name):
            headers[header] = s[field_name]
            for name, values in (s.get(field_name + "Header") or {}).items():
                headers[f"{header}-Forward-{name}"] = ",".join(values)
    if s.get("queueName"):
        headers["Upstash-Queue-Name"] = s["queueName"]
    if s.get("flowControlKey"):
        parts = []
        if s.get("parallelism"):
            parts.append(f"parallelism={s['parallelism']}")
        if s.get("rate"):
            parts.append(f"rate={s['rate']}")
        parts.append(f"period={s.get('period') or 1}s")
        headers["Upstash-Flow-Control-Key"] = s["flowControlKey"]
        headers["Upstash-Flow-Control-Value"] = ", ".join(parts)
    if s.get("labels"):
        headers["Upstash-Label"] = ",".join(s["labels"])
    return headers


def plan_and_apply(source: httpx.Client, target: httpx.Client, *, dry_run: bool) -> Plan:
    plan = Plan()
    existing_queues = {q["name"]: q for q in _get(target, "/v2/queues")}
    for queue in _get(source, "/v2/queues"):
        have = existing_queues.get(queue["name"])
        if have and (have["parallelism"], have["paused"]) == (
            queue["parallelism"],
            queue["paused"],
        ):
            continue
        plan.actions.append(
            f"queue {queue['name']}: parallelism {queue['parallelism']}, paused {queue['paused']}"
        )
        if not dry_run:
            body = {
                "queueName": queue["name"],
                "parallelism": queue["parallelism"],
                "paused": queue["paused"],
            }
            target.post("/v2/queues", json=body).raise_for_status()

    existing_groups = {g["name"]: g for g in _get(target, "/v2/topics")}
    for group in _get(source, "/v2/topics"):
        have = {
            (e["url"], e.get("name"))
            for e in existing_groups.get(group["name"], {}).get("endpoints", [])
        }
        missing = [e for e in group["endpoints"] if (e["url"], e.get("name")) not in have]
        if not missing:
            continue
        plan.actions.append(f"URL group {group['name']}: add {len(missing)} endpoint(s)")
        if not dry_run:
            target.post(
                f"/v2/topics/{group['name']}/endpoints", json={"endpoints": missing}
            ).raise_for_status()

    existing_schedules = {s["scheduleId"]: s for s in _get(target, "/v2/schedules")}
    for schedule in _get(source, "/v2/schedules"):
        sid = schedule["scheduleId"]
        if _is_redacted(schedule.get("header")) or _is_redacted(schedule.get("body")):
            plan.warnings.append(f"schedule {sid}: skipped, its headers or body come back redacted")
            continue
        have = existing_schedules.get(sid)
        if have is not None and _comparable(have) == _comparable(schedule):
            continue
        plan.actions.append(f"schedule {sid}: {schedule['cron']} -> {schedule['destination']}")
        if dry_run:
            continue
        body = schedule.get("body", "")
        response = target.post(
            f"/v2/schedules/{schedule['destination']}",
            headers=schedule_headers(schedule),
            content=body.encode() if isinstance(body, str) else b"",
        )
        response.raise_for_status()
        if schedule.get("isPaused"):
            target.patch(f"/v2/schedules/{sid}/pause").raise_for_status()
    return plan


def run_import(*, from_url: str, from_token: str, to_url: str, to_token: str, dry_run: bool) -> int:
    try:
        with _client(from_url, from_token) as source, _client(to_url, to_token) as target:
            plan = plan_and_apply(source, target, dry_run=dry_run)
    except httpx.HTTPError as exc:
        print(f"homing import: {exc}", file=sys.stderr)
        return 1
    verb = "would" if dry_run else "did"
    for warning in plan.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    if not plan.actions:
        print("nothing to do: the target already matches the source")
    for action in plan.actions:
        print(f"{verb}: {action}")
    return 0
