"""URL groups' membership rules: which endpoints a group holds after an add or a remove.

Pure: both storage backends read a group's endpoints, ask `merge` or `remove`, and write back
what they return (deleting a group left empty).
"""

from __future__ import annotations

from collections.abc import Sequence

from homing.publish import Endpoint


def _same(old: Endpoint, new: Endpoint) -> bool:
    return old.url == new.url or (new.name is not None and old.name == new.name)


def merge(current: Sequence[Endpoint], added: Sequence[Endpoint]) -> list[Endpoint]:
    """An added endpoint with the url of a member, or its name when it has one, replaces that
    member in place (keeping the group's order); any other is appended."""
    out = list(current)
    for new in added:
        for i, old in enumerate(out):
            if _same(old, new):
                out[i] = new
                break
        else:
            out.append(new)
    return out


def remove(current: Sequence[Endpoint], removed: Sequence[Endpoint]) -> list[Endpoint]:
    """The members left once every member matching a removed endpoint by url or by name is
    gone. An empty url or name matches nothing, so `Endpoint("", "a")` removes by name only."""
    return [
        e
        for e in current
        if not any((r.url and r.url == e.url) or (r.name and r.name == e.name) for r in removed)
    ]
