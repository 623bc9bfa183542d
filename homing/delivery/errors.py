"""The text an operator reads when an attempt got no HTTP answer.

One short, stable sentence per cause, the same whatever HTTP client makes the attempt:
"connection refused (127.0.0.1:9)", "timed out after 30 s", "DNS: no such host (api.example)".
It is stored with the attempt, so it shows unchanged in `/v2/logs`, the DLQ, failure callbacks
and the console; a library's exception text (`ClientConnectorError: Cannot connect to host ...
ssl:default [Connect call failed ...]`) would change with every client upgrade and repeats what
the operator already knows. docs/operations.md lists every text; keep the two in step.

`describe` is pure: it looks only at the exception (and the deadline the attempt ran under).
"""

from __future__ import annotations

import errno
import os
import socket
import ssl

from homing.delivery import http1

# errno -> what happened while connecting (the destination's address follows in parentheses).
_CONNECT = {
    errno.ECONNREFUSED: "connection refused",
    errno.ETIMEDOUT: "connect timed out",
    errno.EHOSTUNREACH: "host unreachable",
    errno.ENETUNREACH: "network unreachable",
    errno.EADDRNOTAVAIL: "address not available",
    errno.ECONNRESET: "connection reset",
    errno.EACCES: "connection not permitted",
    errno.EPERM: "connection not permitted",
}
# errno -> what happened to a connection that was open.
_OPEN = {
    errno.ECONNRESET: "connection reset",
    errno.EPIPE: "connection reset",
    errno.ECONNABORTED: "connection reset",
    errno.ETIMEDOUT: "connection timed out",
}
_DNS = {
    socket.EAI_NONAME: "no such host",
    socket.EAI_AGAIN: "temporary failure, try again",
    socket.EAI_FAIL: "lookup failed",
}
# EAI_NODATA is not defined on every platform (it is on Linux).
if hasattr(socket, "EAI_NODATA"):
    _DNS[socket.EAI_NODATA] = "no address for host"


def seconds(value: float) -> str:
    """`30`, `1.5`: the deadline as an operator wrote it."""
    return f"{value:g}"


def timed_out(timeout_s: float) -> str:
    return f"timed out after {seconds(timeout_s)} s"


def too_many_redirects(limit: int) -> str:
    return f"too many redirects (more than {limit})"


def describe(exc: BaseException) -> str:
    """The operator's text for an exception raised while making an attempt."""
    if isinstance(exc, http1.LookupFailed):
        cause = exc.os_error
        if cause.strerror and "forbidden address" in cause.strerror:
            return cause.strerror  # the destination policy's own refusal (homing.destinations)
        return f"DNS: {_DNS.get(cause.errno or 0, 'lookup failed')} ({exc.host})"
    if isinstance(exc, ssl.SSLError):  # the TLS handshake, or TLS on an open connection
        return f"TLS handshake failed: {_tls_reason(exc)}"
    if isinstance(exc, http1.ConnectFailed):
        return _connect_failure(exc)
    if isinstance(exc, http1.Disconnected):
        return "connection closed by the destination before a complete answer"
    if isinstance(exc, http1.Incomplete):
        return "answer cut short (incomplete body)"
    if isinstance(exc, http1.BadAnswer):
        return "invalid HTTP answer"
    if isinstance(exc, OSError) and exc.errno in _OPEN:
        return _OPEN[exc.errno]  # before TimeoutError: Python raises ETIMEDOUT as one
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, (ConnectionResetError, ConnectionAbortedError, BrokenPipeError)):
        return "connection reset"  # some are raised without an errno
    if isinstance(exc, OSError):
        return f"network error: {_strerror(exc)}"
    if isinstance(exc, ValueError):
        return "invalid request"
    return "request failed"


def _connect_failure(exc: http1.ConnectFailed) -> str:
    where = _address(exc.host, exc.port)
    cause = exc.os_error
    if cause.errno in _CONNECT:
        return f"{_CONNECT[cause.errno]} ({where})"
    if cause.errno is None:
        # The failures of several addresses of one name come folded into one OSError with no
        # errno; each of them was a failed connect.
        return f"cannot connect ({where})"
    return f"cannot connect ({where}): {_strerror(cause)}"


def _address(host: str, port: int | None) -> str:
    shown = f"[{host}]" if ":" in host else host
    return shown if port is None else f"{shown}:{port}"


def _tls_reason(exc: BaseException) -> str:
    """OpenSSL's short reason (`certificate has expired`, `wrong version number`), the part of
    a TLS error that names the cause and does not change with the Python or client version."""
    if isinstance(exc, ssl.SSLCertVerificationError) and exc.verify_message:
        return str(exc.verify_message).rstrip(".")
    reason = getattr(exc, "reason", None)
    if isinstance(reason, str) and reason:
        return reason.replace("_", " ").lower()
    return "unknown reason"


def _strerror(exc: OSError) -> str:
    return os.strerror(exc.errno).lower() if exc.errno is not None else "unknown cause"
