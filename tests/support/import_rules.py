"""The house rules of `homing/` as data, and a checker that reads every module's imports.

The checker parses source with `ast` (nothing is imported or run), so it sees imports inside
functions and `TYPE_CHECKING` blocks too: a dependency used only for typing is still a
dependency of the layer. docs/architecture.md explains each rule; tests/unit/test_architecture.py
applies them to `homing/` and proves that the checker catches a violation.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Rule:
    """Modules under any of `sources` may not import anything under `forbidden`."""

    why: str
    sources: tuple[str, ...]
    forbidden: tuple[str, ...]
    # The clock may be read only through homing/clock.py: calls such as `time.time()` or
    # `datetime.now()` in a source module break the rule as much as an import would.
    forbid_clock_calls: bool = False


@dataclass(frozen=True)
class Violation:
    module: str
    line: int
    target: str
    rule: Rule

    def __str__(self) -> str:
        return f"{self.module}:{self.line} uses {self.target}: {self.rule.why}"


def under(name: str, prefixes: Iterable[str]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def modules(root: Path, package: str) -> Iterator[tuple[str, Path]]:
    """(dotted name, file) of every module of the package rooted at `root`."""
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        yield ".".join([package, *parts]), path


def imports(module: str, path: Path) -> Iterator[tuple[int, str]]:
    """(line, imported module) for each import, relative ones resolved; `from a import b`
    yields both `a` and `a.b`, since `b` may be a submodule."""
    is_package = path.name == "__init__.py"
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".")
                anchor = anchor[: len(anchor) - node.level + (1 if is_package else 0)]
                base = ".".join([*anchor, base] if base else anchor)
            yield node.lineno, base
            for alias in node.names:
                yield node.lineno, f"{base}.{alias.name}"


_CLOCK_CALLS = {("time", "time"), ("time", "time_ns"), ("time", "monotonic"),
                ("datetime", "now"), ("datetime", "utcnow"), ("datetime", "today"),
                ("date", "today")}  # fmt: skip


def clock_calls(path: Path) -> Iterator[tuple[int, str]]:
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and isinstance(node.func.value, ast.Name)
            and (node.func.value.id, node.func.attr) in _CLOCK_CALLS
        ):
            yield node.lineno, f"{node.func.value.id}.{node.func.attr}()"


def check(root: Path, package: str, rules: Iterable[Rule]) -> list[Violation]:
    found: list[Violation] = []
    rules = list(rules)
    for module, path in modules(root, package):
        applicable = [r for r in rules if under(module, r.sources)]
        if not applicable:
            continue
        seen: set[tuple[int, Rule]] = set()  # one report per import statement and rule
        for line, target in imports(module, path):
            for rule in applicable:
                if under(target, rule.forbidden) and (line, rule) not in seen:
                    seen.add((line, rule))
                    found.append(Violation(module, line, target, rule))
        for rule in applicable:
            if rule.forbid_clock_calls:
                calls = clock_calls(path)
                found.extend(Violation(module, line, call, rule) for line, call in calls)
    return found
