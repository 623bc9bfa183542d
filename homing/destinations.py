"""Destination policy: which URLs Homing may POST messages to (SSRF protection).

Homing makes HTTP requests to URLs chosen by API callers, so a hosted instance must not become a
proxy into its own network (spec section 3 item 5). Two layers cooperate:

* `DestinationPolicy.check_url` is the static check: the URL is well formed and, unless private
  destinations are allowed, its host is neither a non-public literal address (in any encoding a URL
  parser or `inet_aton` accepts) nor a loopback name. It runs at publish time and again before every
  delivery attempt and every redirect hop.
* `PolicyResolver` is the dynamic check: the delivery client (`homing.delivery.http1`) asks it
  to resolve names at connect time and connects to exactly the addresses it returns, so there is
  no window between "checked" and "connected" in which DNS could change its answer (DNS
  rebinding).
"""

from __future__ import annotations

import errno
import ipaddress
import re
import socket
from collections.abc import Awaitable, Callable

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import ThreadedResolver
from yarl import URL

from homing.errors import ForbiddenDestination, InvalidRequest

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
ResolveFunc = Callable[[str, int, int], Awaitable[list[ResolveResult]]]

ALLOWED_SCHEMES = frozenset({"http", "https"})

# Spelled out rather than relying only on `ipaddress` properties: their exact coverage changed
# between Python patch releases, and a security boundary should not move with the interpreter.
_FORBIDDEN_NETWORKS: tuple[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, str], ...] = tuple(
    (ipaddress.ip_network(net), reason)
    for net, reason in (
        ("0.0.0.0/8", "unspecified/this-network"),
        ("10.0.0.0/8", "private"),
        ("100.64.0.0/10", "carrier-grade NAT"),
        ("127.0.0.0/8", "loopback"),
        ("169.254.0.0/16", "link-local/cloud-metadata"),
        ("172.16.0.0/12", "private"),
        ("192.0.0.0/24", "IETF protocol assignment"),
        ("192.0.2.0/24", "documentation"),
        ("192.88.99.0/24", "6to4 relay anycast"),
        ("192.168.0.0/16", "private"),
        ("198.18.0.0/15", "benchmarking"),
        ("198.51.100.0/24", "documentation"),
        ("203.0.113.0/24", "documentation"),
        ("224.0.0.0/4", "multicast"),
        ("240.0.0.0/4", "reserved"),  # includes the 255.255.255.255 broadcast address
        ("::/128", "unspecified"),
        ("::1/128", "loopback"),
        ("::/8", "reserved/IPv4-compatible"),
        ("64:ff9b:1::/48", "local-use NAT64"),
        ("100::/64", "discard-only"),
        ("2001::/32", "Teredo"),  # the client address is obfuscated; refuse the whole prefix
        ("2001:db8::/32", "documentation"),
        ("3fff::/20", "documentation"),
        ("fc00::/7", "unique-local (private)"),
        ("fe80::/10", "link-local"),
        ("fec0::/10", "site-local"),
        ("ff00::/8", "multicast"),
    )
)

# Hostnames that mean "this machine" without DNS (RFC 6761 and common /etc/hosts entries).
_LOOPBACK_NAMES = frozenset(
    {"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback", "loopback"}
)

_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")  # well-known prefix; low 32 bits are the IPv4 target

_IPV4_CHARS = re.compile(r"[0-9a-fx.]+")
_NUMERIC_LABEL = re.compile(r"(?:0x[0-9a-f]*|[0-9]+)")
_NAME_LABEL = re.compile(r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?")


def _forbidden_reason(ip: IPAddress) -> str | None:
    """Why `ip` must not be a destination, or None if it is a public address."""
    if isinstance(ip, ipaddress.IPv6Address):
        # Addresses that embed an IPv4 address are judged by what they reach: a dual-stack socket
        # sends ::ffff:127.0.0.1 to 127.0.0.1, and 6to4/NAT64 gateways forward to the embedded one.
        embedded: tuple[str, ipaddress.IPv4Address | None] = ("", None)
        if ip.ipv4_mapped is not None:
            embedded = ("IPv4-mapped", ip.ipv4_mapped)
        elif ip.sixtofour is not None:
            embedded = ("6to4", ip.sixtofour)
        elif ip in _NAT64:
            embedded = ("NAT64", ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
        kind, v4 = embedded
        if v4 is not None:
            inner = _forbidden_reason(v4)
            # A public embedded address is fine: e.g. DNS64 on IPv6-only hosts answers with
            # 64:ff9b::a.b.c.d for ordinary IPv4-only sites (which `::/8` below would refuse).
            return f"{kind} {inner}" if inner is not None else None
    for net, reason in _FORBIDDEN_NETWORKS:
        if ip in net:
            return reason
    # Backstop for anything the table misses (and future IANA registrations Python learns about).
    if ip.is_loopback:
        return "loopback"
    if ip.is_link_local:
        return "link-local"
    if ip.is_multicast:
        return "multicast"
    if ip.is_unspecified:
        return "unspecified"
    if ip.is_private or ip.is_reserved or not ip.is_global:
        return "private/reserved"
    return None


def is_public_address(ip: IPAddress) -> bool:
    """True if `ip` is a globally routable unicast address Homing may deliver to."""
    return _forbidden_reason(ip) is None


def _parse_ipv4_part(part: str) -> int | None:
    # The classic BSD `inet_aton` number syntax, which URL parsers (WHATWG) also implement.
    # The regex keeps `int()`'s own extras (a second `0x`, underscores) from sneaking in.
    if not _NUMERIC_LABEL.fullmatch(part):
        return None
    try:
        if part.startswith("0x"):
            return int(part[2:], 16) if len(part) > 2 else 0  # WHATWG reads bare "0x" as 0
        if len(part) > 1 and part.startswith("0"):
            return int(part[1:], 8)
        return int(part, 10)
    except ValueError:
        return None


def literal_address(host: str) -> IPAddress | None:
    """The address `host` denotes if it is a numeric literal in any accepted form, else None.

    Accepts dotted decimal, 1-4 part short forms (`127.1`), octal and hex parts (`0177.0.0.1`,
    `0x7f000001`), a trailing dot, and bracketed or bare IPv6 (with optional zone id).
    """
    text = host.strip().lower()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    if ":" in text:
        try:
            return ipaddress.IPv6Address(text.replace("%25", "%", 1))
        except ValueError:
            return None
    if text.endswith("."):
        text = text[:-1]
    # Validate the charset ourselves: `inet_aton` ignores trailing garbage on glibc.
    if not _IPV4_CHARS.fullmatch(text):
        return None
    parts = text.split(".")
    if not 1 <= len(parts) <= 4:
        return None
    values = [_parse_ipv4_part(p) for p in parts]
    if any(v is None for v in values):
        return None
    nums = [v for v in values if v is not None]
    *head, last = nums
    # Leading parts are one byte each; the last part fills all remaining bytes (`127.1`).
    if any(v > 0xFF for v in head) or last >= 1 << (8 * (5 - len(nums))):
        return None
    value = last
    for index, byte in enumerate(head):
        value |= byte << (8 * (3 - index))
    return ipaddress.IPv4Address(value)


def parse_destination_url(url: str) -> URL:
    """Parse and validate a destination URL; raise `InvalidRequest` if it is unusable.

    Returns the `yarl.URL` the delivery client will use, so the checked host is the host that
    gets connected to.
    """
    if any(ord(ch) <= 0x20 or ord(ch) == 0x7F for ch in url):
        # yarl silently drops tabs/newlines; refuse rather than store one URL and fetch another.
        raise InvalidRequest("destination URL must not contain whitespace or control characters")
    try:
        parsed = URL(url)
    except (ValueError, TypeError) as exc:
        raise InvalidRequest(f"invalid destination URL {url!r}: {exc}") from None
    if parsed.scheme not in ALLOWED_SCHEMES:
        raise InvalidRequest(
            f"invalid destination URL {url!r}: scheme must be http or https"
            + (f", not {parsed.scheme!r}" if parsed.scheme else "")
        )
    host = parsed.raw_host
    if not host or not parsed.is_absolute():
        raise InvalidRequest(f"invalid destination URL {url!r}: a host is required")
    if ":" in host:
        if literal_address(host) is None:
            raise InvalidRequest(f"invalid destination URL {url!r}: bad IPv6 address")
        return parsed
    authority = url.split("://", 1)[-1].split("/", 1)[0].split("?", 1)[0].split("#", 1)[0]
    if "[" in authority:
        # e.g. IPvFuture `[v1.x]`, which yarl unwraps into something that looks like a name.
        raise InvalidRequest(f"invalid destination URL {url!r}: bad bracketed host")
    name = host[:-1] if host.endswith(".") else host
    labels = name.split(".")
    if _NUMERIC_LABEL.fullmatch(labels[-1]):
        # As in the WHATWG URL standard: a host ending in a number is an IPv4 address or nothing.
        if literal_address(name) is None:
            raise InvalidRequest(f"invalid destination URL {url!r}: bad IPv4 address")
        return parsed
    if len(name) > 253 or not all(_NAME_LABEL.fullmatch(label) for label in labels):
        raise InvalidRequest(f"invalid destination URL {url!r}: {host!r} is not a valid host name")
    return parsed


def _refusal(url: str, what: str) -> ForbiddenDestination:
    return ForbiddenDestination(
        f"destination {url} resolves to {what}; private destinations are refused "
        "(start the server with --allow-private-destinations to permit them)"
    )


class DestinationPolicy:
    """The static destination check, run at publish time and before every attempt/redirect hop."""

    _CACHE_SIZE = 4096

    def __init__(self, *, allow_private: bool) -> None:
        self.allow_private = allow_private
        # URLs that passed: the check is a pure function of the string and runs at every publish
        # and every attempt, while most traffic goes to a handful of URLs. Refusals are not kept.
        self._passed: set[str] = set()

    def check_url(self, url: str) -> None:
        """Raise `InvalidRequest` for malformed URLs, `ForbiddenDestination` for refused ones."""
        if url in self._passed:
            return
        self._check(url)
        if len(url) > 2048:
            return  # not remembered: a few huge URLs must not pin memory
        if len(self._passed) >= self._CACHE_SIZE:
            self._passed.clear()
        self._passed.add(url)

    def _check(self, url: str) -> None:
        parsed = parse_destination_url(url)
        if self.allow_private:
            return
        host = (parsed.raw_host or "").lower()
        ip = literal_address(host)
        if ip is not None:
            reason = _forbidden_reason(ip)
            if reason is not None:
                raise _refusal(url, f"{ip} ({reason} address)")
            return
        name = host.rstrip(".")
        if name in _LOOPBACK_NAMES or name.endswith(".localhost"):
            raise _refusal(url, f"{name!r} (loopback host name)")


class ForbiddenAddressError(OSError):
    """A name resolved to an address the policy refuses (raised at connect time).

    An OSError, so the client reports it like any failed lookup; built with an errno and a
    strerror because the operator's text (`homing.delivery.errors`) shows the strerror.
    """

    def __init__(self, message: str) -> None:
        super().__init__(errno.EACCES, message)


class PolicyResolver(AbstractResolver):
    """A resolver (aiohttp's interface) that refuses names resolving to non-public addresses.

    The delivery client (`homing.delivery.http1.Client`) connects to exactly the addresses
    returned here, so a name cannot be re-pointed between the check and the connection. If ANY
    address of the answer is forbidden the whole lookup fails with `ForbiddenAddressError` and
    nothing is connected: filtering instead would let an attacker mix a public decoy with an
    internal target.

    IP-literal hosts are not resolved, so delivery code must also call
    `DestinationPolicy.check_url` before every attempt and on every redirect hop.
    """

    def __init__(self, *, allow_private: bool, resolve: ResolveFunc | None = None) -> None:
        self.allow_private = allow_private
        self._resolve = resolve
        # ThreadedResolver needs a running loop, so it is created lazily inside `resolve`.
        self._default: ThreadedResolver | None = None

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        if self._resolve is not None:
            results = await self._resolve(host, port, family)
        else:
            if self._default is None:
                self._default = ThreadedResolver()
            results = await self._default.resolve(host, port, family)
        if not results:
            raise socket.gaierror(socket.EAI_NONAME, f"{host} did not resolve to any address")
        if self.allow_private:
            return list(results)
        for result in results:
            try:
                ip = ipaddress.ip_address(result["host"])
            except ValueError:
                msg = f"destination {host} resolved to a non-address {result['host']!r}"
                raise ForbiddenAddressError(msg) from None
            reason = _forbidden_reason(ip)
            if reason is not None:
                raise ForbiddenAddressError(
                    f"destination {host} resolves to forbidden address {ip} ({reason}); "
                    "private destinations are refused"
                )
        return list(results)

    async def close(self) -> None:
        if self._default is not None:
            await self._default.close()
            self._default = None


def make_static_resolver(mapping: dict[str, list[str]]) -> ResolveFunc:
    """A `resolve` function answering from `mapping` (name -> addresses) without DNS.

    For tests and `--resolve`-style overrides. Names match case-insensitively and ignore a trailing
    dot (aiohttp may pass `example.com.`); unknown names raise `socket.gaierror` (an OSError).
    """
    table: dict[str, list[IPAddress]] = {
        name.lower().rstrip("."): [ipaddress.ip_address(a) for a in addrs]  # ValueError if bad
        for name, addrs in mapping.items()
    }

    async def resolve(
        host: str, port: int = 0, family: int = socket.AF_UNSPEC
    ) -> list[ResolveResult]:
        addrs = table.get(host.lower().rstrip("."))
        if addrs is None:
            raise socket.gaierror(socket.EAI_NONAME, f"{host}: name not in the static table")
        results: list[ResolveResult] = []
        for ip in addrs:
            ip_family = socket.AF_INET if ip.version == 4 else socket.AF_INET6
            if family not in (socket.AF_UNSPEC, ip_family):
                continue
            results.append(
                ResolveResult(
                    hostname=host,
                    host=str(ip),
                    port=port,
                    family=ip_family,
                    proto=0,
                    flags=socket.AI_NUMERICHOST | socket.AI_NUMERICSERV,
                )
            )
        if not results:
            raise socket.gaierror(socket.EAI_NODATA, f"{host}: no address of the requested family")
        return results

    return resolve
