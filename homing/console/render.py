"""Templates: one Jinja2 environment with autoescape on, its filters, and page responses.

Autoescape is on for every template, so a payload, URL or header a publisher stored is text on
the page and never markup; nothing here marks a value safe.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jinja2
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from homing.console import masking

TEMPLATES = Path(__file__).parent / "templates"
BODY_PREVIEW = 4096  # bytes of a body or response shown before "… N more bytes"


def utc(ms: int | None, seconds: bool = True) -> str:
    if ms is None:
        return "—"
    shown = datetime.fromtimestamp(ms / 1000, UTC)
    return shown.strftime("%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M")


def relative(ms: int | None, now_ms: int) -> str:
    """`3 min ago` / `in 2 h`: what an operator scanning a table wants first."""
    if ms is None:
        return ""
    delta = (ms - now_ms) / 1000
    size = abs(delta)
    if size < 1:
        return "now"
    for unit, seconds in (("d", 86400), ("h", 3600), ("min", 60), ("s", 1)):
        if size >= seconds:
            text = f"{int(size // seconds)} {unit}"
            break
    return f"in {text}" if delta > 0 else f"{text} ago"


def duration_ms(ms: float | None) -> str:
    if ms is None:
        return "—"
    if ms < 1000:
        return f"{ms:.0f} ms"
    if ms < 60_000:
        return f"{ms / 1000:.1f} s"
    return f"{ms / 60_000:.1f} min"


@dataclass(frozen=True, slots=True)
class Body:
    """A body prepared for display: text, or a note that it is binary, truncated."""

    text: str
    binary: bool
    more: int  # bytes not shown
    size: int


def body(raw: bytes | None, limit: int = BODY_PREVIEW) -> Body:
    raw = raw or b""
    shown = raw[:limit]
    try:
        text = shown.decode("utf-8")
        binary = False
    except UnicodeDecodeError as exc:
        if exc.start >= len(shown) - 3 and len(raw) > limit:  # cut inside a character
            text, binary = shown[: exc.start].decode("utf-8"), False
            shown = shown[: exc.start]
        else:
            text, binary = base64.b64encode(shown).decode(), True
    return Body(text, binary, len(raw) - len(shown), len(raw))


def b64_body(encoded: str | None) -> Body:
    """A body stored base64-encoded (log entries keep response bodies that way)."""
    try:
        return body(base64.b64decode(encoded or ""))
    except ValueError:
        return body(b"")


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,  # every template, whatever its name
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        utc=utc,
        duration=duration_ms,
        mask_url=masking.mask_url,
        mask_secret=masking.mask_secret,
        mask_headers=masking.mask_headers,
        body=body,
        b64_body=b64_body,
    )
    env.globals.update(relative=relative)
    return env


ENV = _environment()


def render(request: Request, template: str, context: dict[str, Any], status: int = 200) -> Response:
    html = ENV.get_template(template).render(request=request, **context)
    return HTMLResponse(html, status_code=status)
