"""Turn per-repetition results into figures (min/median/max, ratio to ceiling) and targets."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from bench.common import Spread

Reps = list[dict[str, Any]]


@dataclass
class Row:
    section: str
    name: str
    unit: str
    spread: Spread
    ceiling_name: str = ""
    ceiling: float = math.nan
    target: str = ""
    passed: bool | None = None  # None: no target, or not measured
    note: str = ""
    # For costs (CPU per message) the ratio is ceiling / figure, so that for every row a ratio
    # of 1.0 means "as good as the ceiling" and lower is worse.
    cost: bool = False

    @property
    def ratio(self) -> float:
        if math.isnan(self.ceiling) or self.ceiling == 0 or math.isnan(self.spread.median):
            return math.nan
        if self.cost:
            return self.ceiling / self.spread.median if self.spread.median else math.nan
        return self.spread.median / self.ceiling

    def as_dict(self) -> dict[str, Any]:
        return {
            "section": self.section,
            "name": self.name,
            "unit": self.unit,
            **self.spread.as_dict(),
            "ceiling_name": self.ceiling_name or None,
            "ceiling_median": None if math.isnan(self.ceiling) else self.ceiling,
            "ratio": None if math.isnan(self.ratio) else self.ratio,
            "target": self.target or None,
            "passed": self.passed,
            "note": self.note or None,
        }


def _values(reps: Reps, get: Callable[[dict[str, Any]], float]) -> list[float]:
    out: list[float] = []
    for r in reps:
        try:
            out.append(float(get(r)))
        except (KeyError, TypeError):
            out.append(math.nan)
    return out


def spread(reps: Reps, get: Callable[[dict[str, Any]], float]) -> Spread:
    return Spread.of(_values(reps, get))


def ceiling_rows(ceilings: dict[str, Reps]) -> list[Row]:
    rows = []
    if ceilings.get("sink"):
        rows.append(
            Row(
                "ceiling",
                "aiohttp client -> sink",
                "req/s",
                spread(ceilings["sink"], lambda r: r["rps"]),
            )
        )
    if ceilings.get("framework"):
        fw = ceilings["framework"]
        rows.append(
            Row(
                "ceiling",
                "Starlette/uvicorn publish-shaped endpoint",
                "req/s",
                spread(fw, lambda r: r["rps"]),
            )
        )
    if ceilings.get("sink"):
        rows.append(
            Row(
                "ceiling",
                "aiohttp client CPU per request (to the sink)",
                "ms",
                spread(ceilings["sink"], lambda r: r["client_cpu_ms_per_request"]),
            )
        )
    if ceilings.get("framework"):
        rows.append(
            Row(
                "ceiling",
                "framework server CPU per request",
                "ms",
                spread(ceilings["framework"], lambda r: r["server_cpu_ms_per_request"]),
            )
        )
    if ceilings.get("floor"):
        fl = ceilings["floor"]
        rows.append(
            Row(
                "ceiling",
                "one publish-shaped round trip @rate, p50",
                "ms",
                spread(fl, lambda r: r["request_ms"]["p50"]),
            )
        )
        rows.append(
            Row(
                "ceiling",
                "one publish-shaped round trip @rate, p99",
                "ms",
                spread(fl, lambda r: r["request_ms"]["p99"]),
            )
        )
    return rows


def _pass(value: float, ok: Callable[[float], bool]) -> bool | None:
    return None if math.isnan(value) else ok(value)


def reference_rows(reference: dict[str, Reps], ceilings: dict[str, Reps]) -> list[Row]:
    """The naive relay (bench/relay.py): its own ratio to the client->sink ceiling shows a
    relay that ran slow in this run, which would flatter Homing's ratio to it."""
    sec = "reference: naive durable relay"
    rows: list[Row] = []
    sink_ceiling = spread(ceilings.get("sink", []), lambda r: r["rps"]).median
    fw_ceiling = spread(ceilings.get("framework", []), lambda r: r["rps"]).median
    if pub := reference.get("publish"):
        # Not a target: what a durable publish costs with nothing but an insert behind it,
        # beside Homing's publish figure (which has the ">= 0.5x framework" target).
        rows.append(
            Row(
                sec,
                "publish throughput (deliveries held back)",
                "msg/s",
                spread(pub, lambda r: r["rps"]),
                "framework",
                fw_ceiling,
            )
        )
        rows.append(
            Row(
                sec,
                "relay CPU per published message",
                "ms",
                spread(pub, lambda r: r["homing_cpu_ms_per_message"]),
            )
        )
    if e2e := reference.get("e2e"):
        rows.append(
            Row(
                sec,
                "end-to-end delivered (publish -> 2xx at sink)",
                "msg/s",
                spread(e2e, lambda r: r["rps"]),
                "client->sink",
                sink_ceiling,
                note=f"lost {sum(r['lost'] for r in e2e)}",
            )
        )
        rows.append(
            Row(
                sec,
                "relay CPU per message, publish to delivery",
                "ms",
                spread(e2e, lambda r: r["homing_cpu_ms_per_message"]),
            )
        )
    if lat := reference.get("latency"):
        for q in ("p50", "p99", "max"):
            rows.append(
                Row(
                    sec,
                    f"latency publish->delivery @rate, {q}",
                    "ms",
                    spread(lat, lambda r, q=q: r["latency_ms"][q]),
                )
            )
    return rows


def homing_rows(
    backend: str,
    results: dict[str, Reps],
    ceilings: dict[str, Reps],
    *,
    reference: dict[str, Reps] | None = None,
    queued_target: int,
) -> list[Row]:
    sec = f"homing ({backend})"
    rows: list[Row] = []
    reference = reference or {}
    sink_ceiling = spread(ceilings.get("sink", []), lambda r: r["rps"]).median
    fw_ceiling = spread(ceilings.get("framework", []), lambda r: r["rps"]).median
    # CPU floors: serving one publish-shaped request, and making one aiohttp request.
    fw_cpu = spread(ceilings.get("framework", []), lambda r: r["server_cpu_ms_per_request"]).median
    client_cpu = spread(ceilings.get("sink", []), lambda r: r["client_cpu_ms_per_request"]).median

    if pub := results.get("publish"):
        row = Row(
            sec,
            "publish throughput (deliveries held back)",
            "msg/s",
            spread(pub, lambda r: r["rps"]),
            "framework",
            fw_ceiling,
            ">= 0.5x framework",
        )
        row.passed = _pass(row.ratio, lambda x: x >= 0.5)
        failed = sum(r["count"] - r["ok"] for r in pub)
        if failed:
            row.note = f"{failed} publishes failed"
        rows.append(row)
        rows.append(
            Row(
                sec,
                "publish request latency p50 (closed loop)",
                "ms",
                spread(pub, lambda r: r["request_ms"]["p50"]),
            )
        )
        rows.append(
            Row(sec, "Homing CPU during publish", "cores", spread(pub, lambda r: r["homing_cores"]))
        )
        rows.append(
            Row(
                sec,
                "  of which the event-loop thread",
                "cores",
                spread(pub, lambda r: r["homing_loop_thread_cores"]),
            )
        )
        rows.append(
            Row(
                sec,
                "Homing CPU per published message",
                "ms",
                spread(pub, lambda r: r["homing_cpu_ms_per_message"]),
                "framework CPU",
                fw_cpu,
                cost=True,
            )
        )

    if e2e := results.get("e2e"):
        row = Row(
            sec,
            "end-to-end delivered (publish -> 2xx at sink)",
            "msg/s",
            spread(e2e, lambda r: r["rps"]),
            "client->sink",
            sink_ceiling,
            ">= 0.5x client->sink",
        )
        row.passed = _pass(row.ratio, lambda x: x >= 0.5)
        rows.append(row)
        if ref := reference.get("e2e"):
            vs = Row(
                sec,
                "end-to-end delivered, against the naive relay",
                "msg/s",
                spread(e2e, lambda r: r["rps"]),
                "relay",
                spread(ref, lambda r: r["rps"]).median,
                ">= 1.6x relay",
            )
            vs.passed = _pass(vs.ratio, lambda x: x >= 1.6)
            rows.append(vs)
        lost = sum(r["lost"] for r in e2e)
        dup = sum(r["duplicates"] for r in e2e)
        n = sum(r["published"] for r in e2e)
        rows.append(
            Row(
                sec,
                "end-to-end messages lost",
                "msgs",
                spread(e2e, lambda r: r["lost"]),
                target="0 lost",
                passed=lost == 0,
                note=f"{n} published over all reps, {dup} duplicate deliveries",
            )
        )
        rows.append(
            Row(
                sec,
                "Homing CPU during end-to-end",
                "cores",
                spread(e2e, lambda r: r["homing_cores"]),
            )
        )
        rows.append(
            Row(
                sec,
                "  of which the event-loop thread",
                "cores",
                spread(e2e, lambda r: r["homing_loop_thread_cores"]),
            )
        )
        # A cost row's ratio is floor / figure: "<= 2x the floor" is a ratio >= 0.5.
        cpu = Row(
            sec,
            "Homing CPU per message, publish to delivery",
            "ms",
            spread(e2e, lambda r: r["homing_cpu_ms_per_message"]),
            "framework+client CPU",
            fw_cpu + client_cpu,
            "<= 2x framework+client (ratio >= 0.5)",
            cost=True,
        )
        cpu.passed = _pass(cpu.ratio, lambda x: x >= 0.5)
        rows.append(cpu)

    if lat := results.get("latency"):
        p50 = Row(
            sec,
            "latency publish->delivery @rate, p50",
            "ms",
            spread(lat, lambda r: r["latency_ms"]["p50"]),
            target="<= 2 ms",
        )
        p50.passed = _pass(p50.spread.median, lambda x: x <= 2)
        p99 = Row(
            sec,
            "latency publish->delivery @rate, p99",
            "ms",
            spread(lat, lambda r: r["latency_ms"]["p99"]),
            target="<= 10 ms",
        )
        p99.passed = _pass(p99.spread.median, lambda x: x <= 10)
        mx = Row(
            sec,
            "latency publish->delivery @rate, max",
            "ms",
            spread(lat, lambda r: r["latency_ms"]["max"]),
        )
        lost = sum(r["lost"] for r in lat)
        notes = [f"{lost} messages never arrived"] if lost else []
        overloaded = [
            f"{r['delivered_rps']:.0f}/s"
            for r in lat
            if r.get("delivered_rps", r["offered_rps"]) < 0.95 * r["offered_rps"]
        ]
        if overloaded:
            notes.append(
                "Homing delivered below the offered rate in some repetitions "
                f"({', '.join(overloaded)}): a queue built up, latency is mostly queueing"
            )
        p50.note = "; ".join(notes)
        rows += [p50, p99, mx]
        if ref := reference.get("latency"):
            vs = Row(
                sec,
                "latency p50 @rate, against the naive relay",
                "ms",
                spread(lat, lambda r: r["latency_ms"]["p50"]),
                "relay p50",
                spread(ref, lambda r: r["latency_ms"]["p50"]).median,
                "<= 2x relay p50 (ratio >= 0.5)",
                cost=True,
            )
            vs.passed = _pass(vs.ratio, lambda x: x >= 0.5)
            rows.append(vs)

    if high := results.get("latency_high"):
        rate = high[0]["offered_rps"]
        for q, target in (("p50", ""), ("p99", "<= 20 ms"), ("max", "")):
            row = Row(
                sec,
                f"latency publish->delivery @{rate:.0f}/s, {q}",
                "ms",
                spread(high, lambda r, q=q: r["latency_ms"][q]),
                target=target,
            )
            if target:
                row.passed = _pass(row.spread.median, lambda x: x <= 20)
            rows.append(row)

    if dl := results.get("delayed"):
        vs = "lateness_vs_send_ms"
        vn = "lateness_vs_not_before_ms"
        mins = spread(dl, lambda r: r[vs]["min"])
        mins_nb = spread(dl, lambda r: r[vn]["min"])
        early = Row(
            sec, "delayed: lateness vs send+delay, min", "ms", mins, target="never early (>= 0)"
        )
        early.passed = _pass(mins.min, lambda x: x >= 0)
        early_nb = Row(
            sec, "delayed: lateness vs notBefore, min", "ms", mins_nb, target="never early (>= 0)"
        )
        early_nb.passed = _pass(mins_nb.min, lambda x: x >= 0)
        p50 = Row(
            sec, "delayed: lateness vs send+delay, p50", "ms", spread(dl, lambda r: r[vs]["p50"])
        )
        p99 = Row(
            sec,
            "delayed: lateness vs send+delay, p99",
            "ms",
            spread(dl, lambda r: r[vs]["p99"]),
            target="<= 5 ms",
        )
        p99.passed = _pass(p99.spread.median, lambda x: x <= 5)
        mx = Row(
            sec,
            "delayed: lateness vs send+delay, max",
            "ms",
            spread(dl, lambda r: r[vs]["max"]),
            target="<= 100 ms (worst rep)",
        )
        mx.passed = _pass(mx.spread.max, lambda x: x <= 100)
        nb50 = Row(
            sec, "delayed: lateness vs notBefore, p50", "ms", spread(dl, lambda r: r[vn]["p50"])
        )
        nb99 = Row(
            sec, "delayed: lateness vs notBefore, p99", "ms", spread(dl, lambda r: r[vn]["p99"])
        )
        nbmx = Row(
            sec, "delayed: lateness vs notBefore, max", "ms", spread(dl, lambda r: r[vn]["max"])
        )
        lost = sum(r["lost"] for r in dl)
        if lost:
            p50.note = f"{lost} messages never arrived"
        rows += [early, early_nb, p50, p99, mx, nb50, nb99, nbmx]

    if fl := results.get("failures"):
        baseline = spread(e2e or [], lambda r: r["first_attempt_rps"]).median
        row = Row(
            sec,
            "first-attempt throughput, 10% of first attempts fail",
            "msg/s",
            spread(fl, lambda r: r["first_attempt_rps"]),
            "failure-free",
            baseline,
            ">= 0.8x failure-free",
        )
        row.passed = _pass(row.ratio, lambda x: x >= 0.8)
        lost = sum(r["lost"] for r in fl)
        failed = sum(r["failed_first_attempts"] for r in fl)
        row.note = f"{failed} first attempts failed; {lost} never delivered"
        rows.append(row)
        rows.append(
            Row(
                sec,
                "first-attempt throughput, failure-free (from end-to-end)",
                "msg/s",
                spread(e2e or [], lambda r: r["first_attempt_rps"]),
                "client->sink",
                sink_ceiling,
            )
        )

    if mem := results.get("memory"):
        queued = min(r["queued"] for r in mem)
        row = Row(
            sec,
            f"RSS with {queued:,} messages queued 1h ahead",
            "MiB",
            spread(mem, lambda r: r["rss_mib"]),
            target="<= 150 MiB",
        )
        row.passed = _pass(row.spread.median, lambda x: x <= 150)
        if queued < queued_target:
            row.note = f"only {queued:,} queued: the target is for {queued_target:,}"
            row.passed = None if row.passed is None else row.passed
        rows.append(row)
        rows.append(
            Row(
                sec,
                "RSS peak during the fill (VmHWM)",
                "MiB",
                spread(mem, lambda r: r["rss_peak_mib"]),
            )
        )
        rows.append(
            Row(sec, "RSS idle before the fill", "MiB", spread(mem, lambda r: r["rss_idle_mib"]))
        )
        rows.append(
            Row(
                sec,
                "store size (data dir / database)",
                "MiB",
                spread(mem, lambda r: r["store_mib"]),
            )
        )
        rows.append(
            Row(
                sec,
                "fill rate through /v2/batch",
                "msg/s",
                spread(mem, lambda r: r["fill_msgs_per_s"]),
            )
        )
    return rows


def backend_rows(results: dict[str, dict[str, Reps]]) -> list[Row]:
    """PostgreSQL (one node) against SQLite, end to end, both measured in this run."""
    sqlite, postgres = results.get("sqlite", {}), results.get("postgresql", {})
    if not (sqlite.get("e2e") and postgres.get("e2e")):
        return []
    row = Row(
        "backends",
        "PostgreSQL one node: end-to-end delivered",
        "msg/s",
        spread(postgres["e2e"], lambda r: r["rps"]),
        "SQLite end-to-end",
        spread(sqlite["e2e"], lambda r: r["rps"]).median,
        ">= 0.7x SQLite",
    )
    row.passed = _pass(row.ratio, lambda x: x >= 0.7)
    return [row]


def nodes_rows(postgres: dict[str, Reps], *, nodes: int) -> list[Row]:
    """Several nodes on one PostgreSQL database against one node (the `e2e` run of the same
    backend in this run), end to end. Informational: what a user gets past one core."""
    multi = postgres.get("e2e_nodes")
    if not multi:
        return []
    one = postgres.get("e2e", [])
    sec = f"{nodes} nodes on one machine (postgresql)"
    lost = sum(r["lost"] for r in multi)
    dup = sum(r["duplicates"] for r in multi)
    n = sum(r["published"] for r in multi)
    return [
        Row(
            sec,
            f"{nodes} nodes: end-to-end delivered",
            "msg/s",
            spread(multi, lambda r: r["rps"]),
            "one node",
            spread(one, lambda r: r["rps"]).median,
            note=f"{n} published over all reps, {lost} lost, {dup} duplicate deliveries",
        ),
        Row(
            sec,
            f"{nodes} nodes: Homing CPU (all nodes)",
            "cores",
            spread(multi, lambda r: r["homing_cores"]),
            "one node",
            spread(one, lambda r: r["homing_cores"]).median,
        ),
        Row(
            sec,
            f"{nodes} nodes: Homing CPU per message (all nodes)",
            "ms",
            spread(multi, lambda r: r["homing_cpu_ms_per_message"]),
            "one node",
            spread(one, lambda r: r["homing_cpu_ms_per_message"]).median,
            cost=True,
        ),
        Row(sec, f"{nodes} nodes: messages lost", "msgs", spread(multi, lambda r: r["lost"])),
        Row(
            sec,
            f"{nodes} nodes: duplicate deliveries",
            "msgs",
            spread(multi, lambda r: r["duplicates"]),
        ),
    ]


def _fmt(x: float) -> str:
    if math.isnan(x):
        return "-"
    if abs(x) >= 1000:
        return f"{x:,.0f}"
    if abs(x) >= 100:
        return f"{x:.0f}"
    if abs(x) >= 10:
        return f"{x:.1f}"
    return f"{x:.2f}"


def table(rows: Sequence[Row]) -> str:
    header = ["figure", "unit", "min", "median", "max", "ratio", "target", "result"]
    lines: list[list[str]] = []
    section = None
    out_sections: list[tuple[str | None, list[list[str]]]] = []
    for row in rows:
        if row.section != section:
            section = row.section
            lines = []
            out_sections.append((section, lines))
        ratio = "" if math.isnan(row.ratio) else f"{row.ratio:.2f}x {row.ceiling_name}"
        result = {True: "PASS", False: "FAIL", None: ""}[row.passed]
        if row.note and row.passed is None and row.target:
            result = "n/a"
        lines.append(
            [
                row.name,
                row.unit,
                _fmt(row.spread.min),
                _fmt(row.spread.median),
                _fmt(row.spread.max),
                ratio,
                row.target,
                result,
            ]
        )
    every = [header] + [line for _, ls in out_sections for line in ls]
    widths = [max(len(r[i]) for r in every) for i in range(len(header))]

    def fmt_line(cells: list[str]) -> str:
        parts = []
        for i, c in enumerate(cells):
            parts.append(c.rjust(widths[i]) if 2 <= i <= 4 else c.ljust(widths[i]))
        return "  ".join(parts).rstrip()

    text = [fmt_line(header), "-" * (sum(widths) + 2 * (len(widths) - 1))]
    for name, ls in out_sections:
        text.append(f"[{name}]")
        text += [fmt_line(line) for line in ls]
    notes = [f"  - [{r.section}] {r.name}: {r.note}" for r in rows if r.note]
    if notes:
        text += ["notes:", *notes]
    return "\n".join(text)


def markdown(rows: Sequence[Row]) -> str:
    out = [
        "| figure | unit | min | median | max | ratio to ceiling | target | result |",
        "|---|---|---:|---:|---:|---|---|---|",
    ]
    section = None
    for row in rows:
        if row.section != section:
            section = row.section
            out.append(f"| **{section}** | | | | | | | |")
        ratio = "" if math.isnan(row.ratio) else f"{row.ratio:.2f}x {row.ceiling_name}"
        result = {True: "PASS", False: "**FAIL**", None: ""}[row.passed]
        cells = [
            row.name,
            row.unit,
            *(_fmt(x) for x in (row.spread.min, row.spread.median, row.spread.max)),
        ]
        out.append("| " + " | ".join([*cells, ratio, row.target, result]) + " |")
    return "\n".join(out)


def noise_notes(
    ceilings: dict[str, Reps], results: dict[str, dict[str, Reps]], *, threshold: float = 0.2
) -> list[str]:
    """Runs during which other processes on the machine used noticeable CPU."""
    noisy: list[str] = []
    runs = [(f"ceiling {k}", v) for k, v in ceilings.items()]
    runs += [(f"{b} {k}", v) for b, per in results.items() for k, v in per.items()]
    for name, reps in runs:
        for i, r in enumerate(reps):
            foreign = r.get("cpu", {}).get("foreign_cores", 0.0)
            if foreign > threshold:
                noisy.append(f"{name} rep {i + 1}: {foreign:.2f}")
    if not noisy:
        return []
    return [
        "other processes used CPU during some measurements (cores): "
        + ", ".join(noisy)
        + " -- those figures are pessimistic"
    ]
