"""Destination policy (SSRF protection). No test here sends a packet beyond loopback: names are
resolved through injected static tables, never real DNS."""

from __future__ import annotations

import ipaddress
import socket

import aiohttp
import pytest

from homing.destinations import (
    DestinationPolicy,
    ForbiddenAddressError,
    PolicyResolver,
    is_public_address,
    literal_address,
    make_static_resolver,
    parse_destination_url,
)
from homing.errors import ForbiddenDestination, InvalidRequest

FORBIDDEN = [
    # RFC 1918 private
    "http://10.0.0.1/",
    "http://10.255.255.255/",
    "http://172.16.0.1/",
    "http://172.31.255.254/",
    "http://192.168.0.1/",
    "https://192.168.1.1:8443/admin",
    # loopback
    "http://127.0.0.1/",
    "http://127.0.0.1:8080/hook",
    "http://127.255.255.254/",
    "http://127.0.0.1./",
    "http://[::1]/",
    "http://[0:0:0:0:0:0:0:1]/",
    # link-local and cloud metadata
    "http://169.254.169.254/latest/meta-data/",
    "http://169.254.0.1/",
    "http://[fe80::1]/",
    "http://[fe80::1%25eth0]/",
    "http://[fd00:ec2::254]/",
    # unspecified / this network
    "http://0.0.0.0/",
    "http://0/",
    "http://0x0/",
    "http://0.1.2.3/",
    "http://[::]/",
    # carrier-grade NAT, benchmarking, documentation, IETF, reserved, broadcast, multicast
    "http://100.64.0.1/",
    "http://100.127.255.254/",
    "http://198.18.0.1/",
    "http://198.19.255.254/",
    "http://192.0.2.1/",
    "http://198.51.100.1/",
    "http://203.0.113.1/",
    "http://192.0.0.1/",
    "http://240.0.0.1/",
    "http://255.255.255.255/",
    "http://224.0.0.1/",
    "http://239.255.255.250/",
    # decimal, octal, hex and short encodings of loopback/private/metadata
    "http://2130706433/",
    "http://017700000001/",
    "http://0x7f000001/",
    "http://0X7F000001/",
    "http://0177.0.0.1/",
    "http://0177.0000.0000.0001/",
    "http://0x7f.0.0.1/",
    "http://0x7f.0x0.0x0.0x1/",
    "http://127.1/",
    "http://127.0.1/",
    "http://0x7f.1/",
    "http://2852039166/",  # 169.254.169.254
    "http://0xa9fea9fe/",
    "http://0251.0376.0251.0376/",
    "http://169.254.43518/",
    "http://167772161/",  # 10.0.0.1
    "http://012.0.0.1/",
    "http://0xc0.0xa8.1.1/",
    "http://3232235777/",  # 192.168.1.1
    "http://127.1./",
    "http://①②⑦.0.0.1/",  # yarl NFKC-normalises to 127.0.0.1
    # IPv6 encodings of IPv4 targets
    "http://[::ffff:127.0.0.1]/",
    "http://[::ffff:7f00:1]/",
    "http://[::ffff:169.254.169.254]/",
    "http://[::ffff:10.0.0.1]/",
    "http://[0:0:0:0:0:ffff:192.168.1.1]/",
    "http://[::127.0.0.1]/",
    "http://[::7f00:1]/",
    "http://[::10.0.0.1]/",
    "http://[2002:7f00:1::]/",
    "http://[2002:a9fe:a9fe::1]/",
    "http://[2002:c0a8:101::1]/",
    "http://[64:ff9b::127.0.0.1]/",
    "http://[64:ff9b::a9fe:a9fe]/",
    "http://[64:ff9b::10.1.2.3]/",
    "http://[64:ff9b:1::1]/",
    "http://[2001:0:4136:e378:8000:63bf:3fff:fdd2]/",  # Teredo
    # other IPv6 non-public ranges
    "http://[fc00::1]/",
    "http://[fdff:ffff::1]/",
    "http://[fec0::1]/",
    "http://[ff02::1]/",
    "http://[2001:db8::1]/",
    "http://[100::1]/",
    # loopback names
    "http://localhost/",
    "http://LOCALHOST:3000/",
    "http://localhost./",
    "http://foo.localhost/",
    "http://a.b.localhost./",
    "http://localhost.localdomain/",
    "http://ip6-localhost/",
    "https://user:pw@localhost/",
    "http://example.com@127.0.0.1/",  # userinfo trick: the host is 127.0.0.1
]

ALLOWED = [
    "https://example.com/x",
    "http://example.com",
    "https://oz.requestcatcher.com/",
    "https://mock.httpstatus.io/200?sleep=30000",
    "http://93.184.216.34/",
    "http://93.184.216.34:8080/path?q=1#frag",
    "http://1.1.1.1/",
    "http://8.8.8.8/",
    "http://[2606:4700::1111]/",
    "http://[2606:4700:4700::1111]:443/",
    "http://[::ffff:93.184.216.34]/",
    "http://[64:ff9b::5db8:d822]/",  # DNS64 answer for a public IPv4 site
    "http://[2002:5db8:d822::1]/",
    "https://xn--exmple-cua.com/",
    "https://exämple.com/",
    "https://_dmarc.example.com/",
    "https://localhost.example.com/",  # only the .localhost TLD is special
    "https://my-localhost/",
    "https://example.com./",
    "HTTPS://Example.COM/Path",
    "https://user:pw@example.com/",
]

MALFORMED = [
    "",
    "not a url",
    "ftp://x",
    "file:///etc/passwd",
    "gopher://127.0.0.1/",
    "javascript:alert(1)",
    "http://",
    "https://",
    "http:/example.com",
    "//example.com/x",
    "example.com/x",
    "http://:80/",
    "http://host:99999/",
    "http://[::1/",
    "http://[v1.x]/",
    "http://[not-ipv6]/",
    "http://exa mple.com/",
    "http://exam\tple.com/",
    "http://example.com/\n",
    "http://127.0.0.1\\@example.com/",
    "http://*/",
    "http://./",
    "http://a..b/",
    "http://%31%32%37.0.0.1/",
    "http://256.0.0.1/",
    "http://1.2.3.4.5/",
    "http://4294967296/",
    "http://08.0.0.1/",
    "http://example.123/",
    "http://-bad.example.com/",
    "http://" + "a" * 64 + ".com/",
]


@pytest.mark.parametrize("url", FORBIDDEN)
def test_forbidden_refused_without_allow_private(url: str) -> None:
    with pytest.raises(ForbiddenDestination, match="resolves to"):
        DestinationPolicy(allow_private=False).check_url(url)


def test_forbidden_table_is_large() -> None:
    assert len(FORBIDDEN) >= 70


@pytest.mark.parametrize("url", FORBIDDEN + ALLOWED)
def test_allow_private_accepts_every_well_formed_url(url: str) -> None:
    DestinationPolicy(allow_private=True).check_url(url)


@pytest.mark.parametrize("url", ALLOWED)
def test_public_destinations_accepted(url: str) -> None:
    DestinationPolicy(allow_private=False).check_url(url)


@pytest.mark.parametrize("allow_private", [False, True])
@pytest.mark.parametrize("url", MALFORMED)
def test_malformed_urls_are_invalid_request(url: str, allow_private: bool) -> None:
    with pytest.raises(InvalidRequest) as info:
        DestinationPolicy(allow_private=allow_private).check_url(url)
    # Malformed is reported as such, not as a policy refusal.
    assert not isinstance(info.value, ForbiddenDestination)
    assert "destination URL" in info.value.message


def test_refusal_message_names_the_reason() -> None:
    policy = DestinationPolicy(allow_private=False)
    with pytest.raises(ForbiddenDestination, match=r"169\.254\.169\.254 \(link-local"):
        policy.check_url("http://0xa9fea9fe/")
    with pytest.raises(ForbiddenDestination, match="IPv4-mapped loopback"):
        policy.check_url("http://[::ffff:127.0.0.1]/")
    with pytest.raises(ForbiddenDestination, match="allow-private-destinations"):
        policy.check_url("http://localhost/")


def test_parse_destination_url_returns_the_url_aiohttp_uses() -> None:
    url = parse_destination_url("https://Example.com:8443/a?b=1")
    assert (url.scheme, url.host, url.port) == ("https", "example.com", 8443)
    assert parse_destination_url("http://[::1]/").host == "::1"


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("127.0.0.1", "127.0.0.1"),
        ("2130706433", "127.0.0.1"),
        ("0177.0.0.1", "127.0.0.1"),
        ("017700000001", "127.0.0.1"),
        ("0x7f.0.0.1", "127.0.0.1"),
        ("0x7f000001", "127.0.0.1"),
        ("0X7F.1", "127.0.0.1"),
        ("127.1", "127.0.0.1"),
        ("127.0.1", "127.0.0.1"),
        ("127.0.0.1.", "127.0.0.1"),
        ("1.16777215", "1.255.255.255"),
        ("4294967295", "255.255.255.255"),
        ("0", "0.0.0.0"),
        ("0x", "0.0.0.0"),  # WHATWG URL parsers read a bare 0x as zero
        ("[::1]", "::1"),
        ("::1", "::1"),
        ("[::ffff:127.0.0.1]", "::ffff:7f00:1"),
        ("[::ffff:7f00:1]", "::ffff:7f00:1"),
        ("[fd00:ec2::254]", "fd00:ec2::254"),
        ("example.com", None),
        ("0x7g.0.0.1", None),
        ("0x0x7f.1", None),
        ("00x7f.1", None),
        ("08.0.0.1", None),
        ("256.0.0.1", None),
        ("1.16777216", None),
        ("4294967296", None),
        ("1.2.3.4.5", None),
        ("127..1", None),
        ("127.0.0.1 foo", None),  # glibc inet_aton would accept this; we must not
        ("", None),
        ("[::1", None),
        ("[zz::1]", None),
    ],
)
def test_literal_address(host: str, expected: str | None) -> None:
    ip = literal_address(host)
    assert (None if ip is None else str(ip)) == expected


INET_ATON_FORMS = [
    *("127.0.0.1", "2130706433", "0177.0.0.1", "0x7f.1", "127.1", "10.1", "0xa9fea9fe", "0"),
    *("0251.0376.0251.0376", "1.16777215", "4294967295", "255.255.255.255", "192.168.257"),
]


@pytest.mark.parametrize("host", INET_ATON_FORMS)
def test_literal_address_agrees_with_inet_aton(host: str) -> None:
    # inet_aton is a local string conversion, no lookup happens.
    expected = socket.inet_ntoa(socket.inet_aton(host))
    assert str(literal_address(host)) == expected


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("93.184.216.34", True),
        ("1.1.1.1", True),
        ("2606:4700::1111", True),
        ("::ffff:93.184.216.34", True),
        ("10.0.0.1", False),
        ("100.64.0.1", False),
        ("169.254.169.254", False),
        ("255.255.255.255", False),
        ("::ffff:10.0.0.1", False),
        ("::a00:1", False),
        ("2002:0a00:0001::", False),
        ("64:ff9b::192.168.0.1", False),
        ("2001::1", False),
        ("fd00:ec2::254", False),
        ("fec0::1", False),
        ("3fff::1", False),
    ],
)
def test_is_public_address(address: str, public: bool) -> None:
    assert is_public_address(ipaddress.ip_address(address)) is public


# ---- connect-time resolver --------------------------------------------------------------------

TABLE = {
    "public.test": ["93.184.216.34", "2606:4700::1111"],
    "internal.test": ["10.0.0.5"],
    "metadata.test": ["169.254.169.254"],
    "loop.test": ["127.0.0.1"],
    "loop6.test": ["::1"],
    "mapped.test": ["::ffff:127.0.0.1"],
    "mixed.test": ["93.184.216.34", "127.0.0.1"],
    "rebind.test": ["1.1.1.1", "192.168.0.10"],
}


@pytest.mark.parametrize(
    "name", ["internal.test", "metadata.test", "loop.test", "loop6.test", "mapped.test"]
)
async def test_resolver_refuses_private_answers(name: str) -> None:
    resolver = PolicyResolver(allow_private=False, resolve=make_static_resolver(TABLE))
    with pytest.raises(OSError, match="forbidden address") as info:
        await resolver.resolve(name, 443, socket.AF_UNSPEC)
    assert isinstance(info.value, ForbiddenAddressError)
    await resolver.close()


@pytest.mark.parametrize("name", ["mixed.test", "rebind.test"])
async def test_resolver_refuses_mixed_answers_entirely(name: str) -> None:
    resolver = PolicyResolver(allow_private=False, resolve=make_static_resolver(TABLE))
    with pytest.raises(OSError):
        await resolver.resolve(name, 80, socket.AF_UNSPEC)


async def test_resolver_returns_exact_public_addresses() -> None:
    resolver = PolicyResolver(allow_private=False, resolve=make_static_resolver(TABLE))
    results = await resolver.resolve("public.test.", 443, socket.AF_UNSPEC)
    assert [(r["host"], r["port"], r["family"]) for r in results] == [
        ("93.184.216.34", 443, socket.AF_INET),
        ("2606:4700::1111", 443, socket.AF_INET6),
    ]
    assert all(r["hostname"] == "public.test." for r in results)
    v4 = await resolver.resolve("PUBLIC.test", 80, socket.AF_INET)
    assert [r["host"] for r in v4] == ["93.184.216.34"]


async def test_resolver_allow_private_returns_everything() -> None:
    resolver = PolicyResolver(allow_private=True, resolve=make_static_resolver(TABLE))
    for name, addresses in TABLE.items():
        results = await resolver.resolve(name, 80, socket.AF_UNSPEC)
        assert [r["host"] for r in results] == [str(ipaddress.ip_address(a)) for a in addresses]


async def test_static_resolver_unknown_name_is_oserror() -> None:
    resolve = make_static_resolver(TABLE)
    with pytest.raises(OSError):
        await resolve("nowhere.test", 80, socket.AF_UNSPEC)
    with pytest.raises(OSError):  # no IPv6 answer for an IPv4-only name
        await resolve("internal.test", 80, socket.AF_INET6)
    with pytest.raises(ValueError):
        make_static_resolver({"bad.test": ["not-an-ip"]})


async def test_aiohttp_session_refuses_before_connecting() -> None:
    # The forbidden answer is loopback on purpose: even if the policy failed, nothing would
    # leave this machine. aiohttp must surface the refusal as a connector (DNS) error.
    resolver = PolicyResolver(allow_private=False, resolve=make_static_resolver(TABLE))
    connector = aiohttp.TCPConnector(resolver=resolver)
    async with aiohttp.ClientSession(connector=connector) as session:
        with pytest.raises(aiohttp.ClientConnectorError, match="forbidden address") as info:
            await session.get("http://loop.test:9/")
    assert isinstance(info.value.os_error, ForbiddenAddressError)
