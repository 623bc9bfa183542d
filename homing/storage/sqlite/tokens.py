"""The principals of valid tokens, remembered between requests and forgotten as soon as any
token changes, in this process or another.

Every request is authenticated, and reading its token from SQLite cost more than all of
Homing's own work on a publish (15-30 us against ~30 us): each commit of the writer empties the
reading connection's page cache, so that lookup read its pages again every time. Remembering
the answer is only right if a revocation still takes effect at once, and revocations are made
by another process (`homing tokens revoke` beside the running server). So whoever changes a
token appends one byte to `<db>.tokens` once the change is committed; every lookup first reads
that file's size (one `stat`) and forgets everything it remembers when the size moved. A
request that starts after a revocation has returned is therefore refused, as before.

Only tokens found valid are remembered (an unknown token is read from the store every time,
so a flood of wrong tokens costs what it did), keyed by their SHA-256, at most `MAX_ENTRIES`.
"""

from __future__ import annotations

import os

from homing.errors import StorageUnavailable
from homing.models import Principal

MAX_ENTRIES = 1024

# The stamp of `<db>.tokens` (device, inode, size); its size only grows, a byte per change.
Stamp = tuple[int, int, int]
_UNKNOWN: Stamp = (-1, -1, -1)  # the file could not be read: remember nothing


class TokenCache:
    def __init__(self, path: str) -> None:
        self.path = path
        self._seen: Stamp | None = _UNKNOWN
        self._principals: dict[str, Principal] = {}

    def _stamp(self) -> Stamp | None:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return None  # no token was changed since the store was created
        except OSError:
            return _UNKNOWN
        return (st.st_dev, st.st_ino, st.st_size)

    def get(self, digest: str) -> tuple[Principal | None, Stamp | None]:
        """The remembered principal of a token (None if there is none), and the stamp to
        `put` what the store says of it under."""
        stamp = self._stamp()
        if stamp != self._seen:
            self._principals.clear()
            self._seen = stamp
        return self._principals.get(digest), stamp

    def put(self, digest: str, principal: Principal, stamp: Stamp | None) -> None:
        """Remember what the store said of a token, read after `get` returned `stamp`: not if
        a token changed meanwhile (the read may predate the change)."""
        if stamp != self._seen or stamp == _UNKNOWN:
            return
        if len(self._principals) >= MAX_ENTRIES:
            del self._principals[next(iter(self._principals))]  # the oldest
        self._principals[digest] = principal

    def changed(self) -> None:
        """Tell every process on this store that a token changed (call after the commit)."""
        self._principals.clear()
        try:
            with open(self.path, "ab") as stamp:
                stamp.write(b".")
        except OSError as exc:
            raise StorageUnavailable(
                f"the token change is stored, but {self.path} could not be written to tell a "
                f"running server about it ({exc.strerror or exc}): restart the server"
            ) from exc
