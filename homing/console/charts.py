"""Overview statistics and chart geometry, computed on the server.

A chart is a list of SVG primitives (`{"tag", "attrs", "text"}`): the template draws them on the
first render, and the overview script redraws them from the JSON endpoint, so the drawing logic
lives only here.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from homing.console.render import utc

# (log state, series name, CSS class) in drawing order.
SERIES = (
    ("CREATED", "published", "s-published"),
    ("DELIVERED", "delivered", "s-delivered"),
    ("RETRY", "retrying", "s-retrying"),
    ("FAILED", "failed", "s-failed"),
)
WIDTH, HEIGHT = 560, 210
LEFT, RIGHT, TOP = 40, 8, 10
RATE_BOTTOM = 140  # the rates panel ends here; the success-ratio strip sits below
RATIO_TOP, RATIO_BOTTOM = 158, 188


@dataclass(frozen=True, slots=True)
class Window:
    name: str  # "hour" / "day"
    buckets: int
    bucket_ms: int
    unit: str  # what one bucket's count is "per"

    def start(self, now_ms: int) -> int:
        return (now_ms // self.bucket_ms - (self.buckets - 1)) * self.bucket_ms


HOUR = Window("hour", 60, 60_000, "min")
DAY = Window("day", 24, 3_600_000, "hour")


def bucketed(
    rows: Sequence[tuple[int, str, int]], window: Window, now_ms: int
) -> dict[str, list[int]]:
    """event_counts rows -> one count per bucket for every log state in the window."""
    start = window.start(now_ms)
    out: dict[str, list[int]] = {}
    for bucket, log_state, count in rows:
        index = (bucket - start) // window.bucket_ms
        if 0 <= index < window.buckets:
            out.setdefault(log_state, [0] * window.buckets)[index] += count
    return out


def success_ratios(counts: dict[str, list[int]], buckets: int) -> list[float | None]:
    """Per bucket: delivered / (delivered + failed attempts); None where nothing finished.

    Every attempt ends in DELIVERED or ERROR, so this is the share of attempts that worked.
    """
    delivered = counts.get("DELIVERED", [0] * buckets)
    errors = counts.get("ERROR", [0] * buckets)
    return [d / (d + e) if d + e else None for d, e in zip(delivered, errors, strict=True)]


def overall_ratio(counts: dict[str, list[int]]) -> float | None:
    delivered = sum(counts.get("DELIVERED", []))
    errors = sum(counts.get("ERROR", []))
    return delivered / (delivered + errors) if delivered + errors else None


def percentiles(values: Sequence[int], points: Sequence[int] = (50, 90, 99)) -> dict[str, int]:
    """Nearest-rank percentiles; empty when there are no values."""
    if not values:
        return {}
    ordered = sorted(values)
    return {
        f"p{p}": ordered[min(len(ordered) - 1, max(0, math.ceil(p / 100 * len(ordered)) - 1))]
        for p in points
    }


def _nice_max(value: int) -> int:
    """The smallest 1/2/5 x 10^n at or above `value` (at least 1), for a readable axis."""
    if value <= 1:
        return 1
    magnitude = int(10 ** (len(str(value)) - 1))
    for step in (1, 2, 5, 10):
        if step * magnitude >= value:
            return step * magnitude
    return 10 * magnitude


def _x(index: int, buckets: int) -> float:
    return LEFT + (WIDTH - LEFT - RIGHT) * index / max(1, buckets - 1)


def _prim(tag: str, text: str = "", **attrs: Any) -> dict[str, Any]:
    return {
        "tag": tag,
        "attrs": {k.rstrip("_").replace("_", "-"): v for k, v in attrs.items()},
        "text": text,
    }


def _axes(window: Window, now_ms: int, top: int) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for frac in (0.0, 0.5, 1.0):
        y = TOP + (RATE_BOTTOM - TOP) * frac
        out.append(_prim("line", x1=LEFT, x2=WIDTH - RIGHT, y1=y, y2=y, class_="grid"))
        label = str(round(top * (1 - frac)))
        out.append(_prim("text", label, x=LEFT - 6, y=y + 4, class_="tick", text_anchor="end"))
    start = window.start(now_ms)
    for index in (0, window.buckets // 2, window.buckets - 1):
        text = utc(start + index * window.bucket_ms, seconds=False)[11:]
        anchor = "start" if index == 0 else "end" if index == window.buckets - 1 else "middle"
        x = _x(index, window.buckets)
        out.append(_prim("text", text, x=x, y=HEIGHT - 4, class_="tick", text_anchor=anchor))
    return out


def _ratio_strip(ratios: list[float | None], buckets: int) -> list[dict[str, Any]]:
    out = [
        _prim("rect", x=LEFT, y=RATIO_TOP, width=WIDTH - LEFT - RIGHT,
              height=RATIO_BOTTOM - RATIO_TOP, class_="ratio-bg"),
        _prim("text", "100%", x=LEFT - 6, y=RATIO_TOP + 8, class_="tick", text_anchor="end"),
        _prim("text", "0%", x=LEFT - 6, y=RATIO_BOTTOM, class_="tick", text_anchor="end"),
    ]  # fmt: skip
    span = RATIO_BOTTOM - RATIO_TOP
    segment: list[str] = []
    for index, ratio in enumerate([*ratios, None]):
        if ratio is None:
            if len(segment) == 1:  # a lone point: draw it as a dot
                x, y = segment[0].split(",")
                out.append(_prim("circle", cx=x, cy=y, r=2, class_="s-ratio-dot"))
            elif segment:
                out.append(_prim("polyline", points=" ".join(segment), class_="s-ratio"))
            segment = []
            continue
        segment.append(f"{_x(index, buckets):.1f},{RATIO_BOTTOM - ratio * span:.1f}")
    return out


def chart(counts: dict[str, list[int]], window: Window, now_ms: int) -> list[dict[str, Any]]:
    """The SVG primitives of one window: rate lines, axes, and the success-ratio strip."""
    peak = max([max(counts.get(state, [0])) for state, _, _ in SERIES] + [0])
    top = _nice_max(peak)
    out = _axes(window, now_ms, top)
    for log_state, _, css in SERIES:
        values = counts.get(log_state, [0] * window.buckets)
        points = " ".join(
            f"{_x(i, window.buckets):.1f},{RATE_BOTTOM - (RATE_BOTTOM - TOP) * v / top:.1f}"
            for i, v in enumerate(values)
        )
        out.append(_prim("polyline", points=points, class_=f"line {css}"))
    out.extend(_ratio_strip(success_ratios(counts, window.buckets), window.buckets))
    return out


def totals(counts: dict[str, list[int]]) -> dict[str, int]:
    return {name: sum(counts.get(log_state, [])) for log_state, name, _ in SERIES}
