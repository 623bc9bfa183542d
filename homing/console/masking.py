"""Masking of secrets before anything reaches a page.

Tokens, signing keys, credential-bearing headers, userinfo in URLs and credential-looking query
parameters are shown as a short prefix and an ellipsis: enough to tell two apart, not enough to
use. Escaping is the templates' job (autoescape); this module only decides what is secret.
"""

from __future__ import annotations

from urllib.parse import unquote_plus, urlsplit, urlunsplit

from homing.models import Headers

MASK = "•••"
# Header or query names that carry credentials, matched as substrings of the lower-cased name.
_SECRET_WORDS = (
    "authorization", "cookie", "token", "secret", "password", "passwd", "api-key", "apikey",
    "api_key", "signature", "credential", "session",
)  # fmt: skip


def is_secret_name(name: str) -> bool:
    lowered = name.lower()
    return any(word in lowered for word in _SECRET_WORDS)


def mask_secret(value: str, keep: int = 8) -> str:
    """`sig_7kYjw48mhY7kAjqN…` -> `sig_7kYj…`: a prefix, never more than a third of it."""
    if not value:
        return ""
    shown = min(keep, len(value) // 3)
    return value[:shown] + "…"


def mask_header_value(name: str, value: str) -> str:
    if value.startswith("REDACTED:") or not is_secret_name(name):
        return value
    scheme, sep, _ = value.partition(" ")
    # `Bearer abc…` keeps the scheme: it says how the request authenticates without the secret.
    if sep and scheme.isalpha() and len(scheme) <= 10:
        return f"{scheme} {MASK}"
    return MASK


def mask_headers(headers: Headers) -> list[tuple[str, str]]:
    """Flattened (name, value) pairs with credentials masked, sorted by name."""
    return [
        (name, mask_header_value(name, value))
        for name in sorted(headers, key=str.lower)
        for value in headers[name]
    ]


def mask_url(url: str) -> str:
    """Hide the password of `user:pass@host` and credential-looking query parameter values."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, hostport = netloc.rpartition("@")
        user = userinfo.split(":", 1)[0]
        netloc = f"{user}:{MASK}@{hostport}" if user else f"{MASK}@{hostport}"
    # Rewrite only the values of credential-looking parameters; every other byte stays as sent.
    query = "&".join(
        f"{part.split('=', 1)[0]}={MASK}" if is_secret_name(unquote_plus(part.split("=", 1)[0]))
        else part
        for part in parts.query.split("&")
    )  # fmt: skip
    if netloc == parts.netloc and query == parts.query:
        return url
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
