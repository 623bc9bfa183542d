"""Named SQL queries: `-- name: <name>` blocks in a backend's `queries.sql`."""

from __future__ import annotations

import re
from importlib import resources

_BLOCK = re.compile(r"^--\s*name:\s*(\w+)\s*$", re.MULTILINE)


def _trim(sql: str) -> str:
    """The block without the comment lines that end it (a heading of the next section)."""
    lines = sql.strip().splitlines()
    while lines and (not lines[-1].strip() or lines[-1].lstrip().startswith("--")):
        lines.pop()
    return "\n".join(lines)


def load_queries(package: str) -> dict[str, str]:
    text = resources.files(package).joinpath("queries.sql").read_text()
    parts = _BLOCK.split(text)
    return {name: _trim(sql) for name, sql in zip(parts[1::2], parts[2::2], strict=True)}


def load_migrations(package: str) -> list[tuple[int, str]]:
    """(version, sql) of every `NNNN_*.sql` file in `<package>.migrations`, in order."""
    folder = resources.files(package).joinpath("migrations")
    found = []
    for entry in folder.iterdir():
        if entry.name.endswith(".sql") and entry.name[:4].isdigit():
            found.append((int(entry.name[:4]), entry.read_text()))
    return sorted(found)
