"""Console sessions, CSRF tokens, the same-origin check and the sign-in throttle.

A session is a cookie signed with HMAC-SHA256 under a secret drawn at random when the console is
created, or derived from `--console-secret`: it holds the account id, the id of the token used
to sign in (never the token itself), whether it was read-only, an expiry and a nonce. Every
request checks that the token is still unrevoked, so revoking a token ends its console sessions
on every node at once. Without a configured secret, restarting the process signs everyone out;
with one, a session holds across nodes and restarts, and a sign-out ends it for good in the
browser (the cookie is deleted) and on the node that served it.

Every state-changing request must carry a CSRF token derived from the session (or, for the
sign-in form, from a nonce cookie set with the form), and must not come from another origin.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from collections import deque
from dataclasses import dataclass
from urllib.parse import urlsplit

import orjson
from starlette.requests import Request

SESSION_COOKIE = "homing_session"
LOGIN_COOKIE = "homing_login"
SESSION_SECONDS = 8 * 3600
COOKIE_PATH = "/console"


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _equal(a: str, b: str) -> bool:
    """Constant-time comparison that also accepts non-ASCII input from a client."""
    return hmac.compare_digest(a.encode(), b.encode())


@dataclass(frozen=True, slots=True)
class Session:
    account_id: str
    read_only: bool
    expires_s: int
    nonce: str
    token_id: str | None = None  # None: the dev-mode session that needs no sign-in


class Signer:
    """Signs and checks small JSON values; one random key per console instance."""

    def __init__(self, key: bytes | None = None) -> None:
        self._key = key or secrets.token_bytes(32)

    def _mac(self, purpose: str, payload: str) -> str:
        msg = f"{purpose}|{payload}".encode()
        return _b64(hmac.new(self._key, msg, hashlib.sha256).digest())

    def sign(self, purpose: str, value: object) -> str:
        payload = _b64(orjson.dumps(value))
        return f"{payload}.{self._mac(purpose, payload)}"

    def unsign(self, purpose: str, token: str) -> object | None:
        payload, _, mac = token.partition(".")
        if not mac or not _equal(mac, self._mac(purpose, payload)):
            return None
        try:
            value: object = orjson.loads(_unb64(payload))
        except (ValueError, orjson.JSONDecodeError):
            return None
        return value

    def derive(self, purpose: str, value: str) -> str:
        """A token bound to `value` that only this process can compute (CSRF tokens)."""
        return self._mac(purpose, value)


class Sessions:
    """Issue, read and revoke session cookies."""

    def __init__(self, signer: Signer) -> None:
        self._signer = signer
        # Sign-out must end a session even though the cookie is stateless: remember revoked
        # nonces until their sessions would have expired anyway.
        self._revoked: dict[str, int] = {}

    def issue(
        self, account_id: str, *, read_only: bool, token_id: str | None = None
    ) -> tuple[Session, str]:
        session = Session(
            account_id,
            read_only,
            int(time.time()) + SESSION_SECONDS,
            secrets.token_urlsafe(12),
            token_id,
        )
        value = {
            "a": account_id,
            "r": read_only,
            "e": session.expires_s,
            "n": session.nonce,
            "t": token_id,
        }
        return session, self._signer.sign("session", value)

    def read(self, cookie: str | None) -> Session | None:
        if not cookie:
            return None
        value = self._signer.unsign("session", cookie)
        if not isinstance(value, dict):
            return None
        try:
            token_id = value.get("t")
            session = Session(
                str(value["a"]),
                bool(value["r"]),
                int(value["e"]),
                str(value["n"]),
                None if token_id is None else str(token_id),
            )
        except (KeyError, TypeError, ValueError):
            return None
        if session.expires_s <= time.time() or session.nonce in self._revoked:
            return None
        return session

    def revoke(self, session: Session) -> None:
        now = time.time()
        self._revoked = {n: e for n, e in self._revoked.items() if e > now}
        self._revoked[session.nonce] = session.expires_s

    def csrf_token(self, cookie: str) -> str:
        return self._signer.derive("csrf", cookie)

    def login_token(self, nonce: str) -> str:
        return self._signer.derive("login", nonce)

    def check(self, expected: str, given: str | None) -> bool:
        return bool(given) and _equal(expected, given or "")


def same_origin(request: Request) -> bool:
    """False when the browser says the request comes from another site.

    Browsers send `Origin` on every POST (and `Sec-Fetch-Site`); a request with neither (curl,
    an old browser) is judged by the CSRF token alone.
    """
    site = request.headers.get("sec-fetch-site")
    if site is not None and site not in ("same-origin", "none"):
        return False
    source = request.headers.get("origin") or request.headers.get("referer")
    if source is None:
        return True
    parts = urlsplit(source)
    host = request.headers.get("host", "")
    return parts.scheme == request.url.scheme and parts.netloc.lower() == host.lower()


class LoginThrottle:
    """At most `limit` sign-in attempts per client address in any `window_s` seconds."""

    def __init__(self, limit: int = 5, window_s: float = 60.0) -> None:
        self.limit = limit
        self.window_s = window_s
        self._attempts: dict[str, deque[float]] = {}

    def allow(self, client: str) -> bool:
        """Count an attempt; False when the client is over its budget (the attempt is refused
        and not counted, so a client that waits gets in)."""
        now = time.monotonic()
        if len(self._attempts) > 10_000:  # bounded memory under a spray of addresses
            self._attempts.clear()
        attempts = self._attempts.setdefault(client, deque())
        while attempts and now - attempts[0] >= self.window_s:
            attempts.popleft()
        if len(attempts) >= self.limit:
            return False
        attempts.append(now)
        return True
