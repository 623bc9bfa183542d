"""SSRF: a server in `serve` mode never connects to a private, loopback, link-local or metadata
address, whatever form the URL takes and wherever a URL is accepted.

Nothing here leaves the machine, by construction:

* names are resolved only by an injected static table (`RecordingResolver`), never real DNS;
* a `ConnectionGuard` (tests/security/guard.py) sees every socket connect of this process and
  refuses, before the system call, any connect other than the test client's to the Homing
  server under test (and, in the redirect test, to the local redirector). Homing's own
  connects go through the same socket module, so an SSRF hole would show up as an entry in
  `guard.refused` (and fail the test) instead of as a packet. The DNS-rebinding test uses a
  public-looking address (93.184.216.34): the guard stops that connect too, before the system
  call, and the test asserts that it was the only address Homing tried.

Places a URL is accepted: publish, batch, enqueue, schedule create, callback, failure callback,
URL-group endpoint, and DLQ retry. Each forbidden form must be refused with a 4xx at the API,
or (names, whose address is only known at connect time) accepted and then every attempt fails
at the resolver, with no connection made.
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from yarl import URL

from homing.clock import ManualClock
from homing.destinations import DestinationPolicy, parse_destination_url
from homing.models import MessageState
from tests.security.guard import ConnectionGuard
from tests.security.support import RecordingResolver, raw_request
from tests.support.http import log_entries
from tests.support.receiver import Receiver, Reply
from tests.support.server import RunningServer
from tests.support.waiting import wait_until

# Literal addresses in every encoding a URL parser or inet_aton accepts, and loopback names:
# refused by the static check at the API, before anything is stored.
LITERAL_FORMS = [
    # RFC 1918 private
    "http://10.0.0.1/",
    "http://10.255.255.254:8080/admin",
    "http://172.16.0.1/",
    "http://172.31.255.254/",
    "http://192.168.0.1/",
    "https://192.168.1.1:8443/",
    # loopback: dotted, octal, hex, decimal, short forms, trailing dot, userinfo, Unicode digits
    "http://127.0.0.1/",
    "http://127.0.0.1:6379/",
    "http://127.255.255.254/",
    "http://127.0.0.1./",
    "HTTP://127.0.0.1/",
    "http://0177.0.0.1/",
    "http://0000177.0.0.1/",
    "http://0x7f.0.0.1/",
    "http://0x7f.1/",
    "http://0x7f000001/",
    "http://0x7F000001:8080/",
    "http://2130706433/",
    "http://2130706433./",
    "http://017700000001/",
    "http://127.1/",
    "http://127.0.1/",
    "http://0177.1/",
    "http://127.000.000.001/",
    "http://127.0.0.0x1/",
    "http://evil.test@127.0.0.1/",
    "http://user:pass@127.0.0.1:9000/",
    "http://\uff11\uff12\uff17.\uff10.\uff10.\uff11/",  # fullwidth digits
    "http://127。0。0。1/",
    "http://①②⑦.0.0.1/",
    "http://%31%32%37.0.0.1/",
    "http://127.0.0.1%00.evil.test/",
    # IPv6 loopback / unspecified, and IPv4 embedded in IPv6 (mapped, compatible, NAT64, 6to4)
    "http://[::1]/",
    "http://[0:0:0:0:0:0:0:1]/",
    "http://[0000::0001]:80/",
    "http://[::]/",
    "http://[::ffff:127.0.0.1]/",
    "http://[::ffff:7f00:1]/",
    "http://[0:0:0:0:0:ffff:127.0.0.1]/",
    "http://[::127.0.0.1]/",
    "http://[::ffff:0:7f00:1]/",
    "http://[64:ff9b::7f00:1]/",
    "http://[2002:7f00:1::]/",
    "http://[::ffff:10.0.0.1]/",
    # link-local and cloud metadata (AWS, GCP, Azure, ECS, Alibaba, Oracle) in several encodings
    "http://169.254.169.254/latest/meta-data/",
    "http://169.254.169.254/computeMetadata/v1/",
    "http://0xa9fea9fe/",
    "http://2852039166/",
    "http://0251.0376.0251.0376/",
    "http://169.254.43518/",
    "http://[::ffff:a9fe:a9fe]/",
    "http://[fd00:ec2::254]/latest/meta-data/",
    "http://169.254.170.2/v2/credentials",
    "http://100.100.100.200/latest/meta-data/",
    "http://192.0.0.192/opc/v2/instance/",
    "http://[fe80::1]/",
    "http://[fe80::1%25eth0]/",
    # unspecified, CGNAT, benchmarking, documentation, multicast, reserved, broadcast
    "http://0.0.0.0/",
    "http://0/",
    "http://0x0/",
    "http://0.0.0.0:22/",
    "http://100.64.0.1/",
    "http://198.18.0.1/",
    "http://192.0.2.1/",
    "http://198.51.100.1/",
    "http://203.0.113.1/",
    "http://224.0.0.1/",
    "http://239.255.255.250:1900/",
    "http://240.0.0.1/",
    "http://255.255.255.255/",
    "http://[fc00::1]/",
    "http://[fd12:3456::1]/",
    "http://[fec0::1]/",
    "http://[ff02::1]/",
    "http://[2001:db8::1]/",
    "http://[2001::1]/",
    # names that mean this machine without DNS
    "http://localhost/",
    "http://LOCALHOST./",
    "http://localhost:8080/admin",
    "http://foo.localhost/",
    "http://ip6-localhost/",
    "http://localhost.localdomain/",
    "http://ⓛⓞⓒⓐⓛⓗⓞⓢⓣ/",
]

# Names whose (static, injected) DNS answer is forbidden: known only at connect time.
RESOLVED = {
    "internal.test": ["10.0.0.5"],
    "private-172.test": ["172.20.1.1"],
    "metadata.google.internal": ["169.254.169.254"],
    "instance-data.ec2.internal": ["169.254.169.254"],
    "metadata": ["169.254.169.254"],
    "ec2-v6-metadata.test": ["fd00:ec2::254"],
    "loopback.test": ["127.0.0.1"],
    "127.0.0.1.nip.io": ["127.0.0.1"],
    "v6-loopback.test": ["::1"],
    "mapped.test": ["::ffff:127.0.0.1"],
    "decoy.test": ["93.184.216.34", "10.0.0.1"],  # a public decoy next to the real target
    "cgnat.test": ["100.64.0.1"],
    "zero.test": ["0.0.0.0"],
    "link-local-v6.test": ["fe80::1"],
    "nat64.test": ["64:ff9b::a9fe:a9fe"],
    "sixtofour.test": ["2002:a9fe:a9fe::1"],
    "ula.test": ["fd12:3456::1"],
    "benchmark.test": ["198.18.0.5"],
    "multicast.test": ["239.1.1.1"],
    "testnet.test": ["192.0.2.10"],
}
NAME_FORMS = [
    "http://internal.test/",
    "https://INTERNAL.TEST./hook?x=1",
    "http://private-172.test/",
    "http://metadata.google.internal/computeMetadata/v1/",
    "http://instance-data.ec2.internal/",
    "http://metadata/latest/meta-data/",
    "http://ec2-v6-metadata.test/",
    "http://loopback.test:6379/",
    "http://127.0.0.1.nip.io/",
    "http://v6-loopback.test/",
    "http://mapped.test/",
    "http://decoy.test/",
    "http://cgnat.test/",
    "http://zero.test/",
    "http://link-local-v6.test/",
    "http://nat64.test/",
    "http://sixtofour.test/",
    "http://ula.test/",
    "http://benchmark.test/",
    "http://multicast.test/",
    "http://testnet.test/",
]
UNRESOLVABLE = "http://unresolvable.test/"  # not in the table: fails at once, connects nowhere
START_MS = 1_800_000_001_000  # one second past a minute: the first cron tick is 59 s away

PLACES = ("publish", "batch", "enqueue", "schedule", "callback", "failure_callback", "url_group")


def serve_settings() -> dict[str, Any]:
    return {"mode": "serve", "allow_private_destinations": False}


def submit(server: RunningServer, place: str, url: str, index: int) -> tuple[int, Any]:
    """Hand `url` to Homing at `place`; returns (status, answer)."""
    port = server.port
    zero = {"Upstash-Retries": "0"}
    if place == "publish":
        return raw_request(port, "POST", f"/v2/publish/{url}", zero)
    if place == "batch":
        body = orjson.dumps([{"destination": url, "headers": zero}])
        return raw_request(port, "POST", "/v2/batch", {"Content-Type": "application/json"}, body)
    if place == "enqueue":
        return raw_request(port, "POST", f"/v2/enqueue/ssrf/{url}", zero)
    if place == "schedule":
        headers = dict(zero, **{"Upstash-Cron": "* * * * *"})
        return raw_request(port, "POST", f"/v2/schedules/{url}", headers)
    if place == "callback":
        headers = dict(zero, **{"Upstash-Callback": url})
        return raw_request(port, "POST", f"/v2/publish/{UNRESOLVABLE}", headers)
    if place == "failure_callback":
        headers = dict(zero, **{"Upstash-Failure-Callback": url})
        return raw_request(port, "POST", f"/v2/publish/{UNRESOLVABLE}", headers)
    assert place == "url_group"
    group = f"ssrf-{index}"
    body = orjson.dumps({"endpoints": [{"url": url}]})
    status, answer = raw_request(
        port, "POST", f"/v2/topics/{group}/endpoints", {"Content-Type": "application/json"}, body
    )
    if status >= 300:
        return status, answer
    return raw_request(port, "POST", f"/v2/publish/{group}", zero)


def idle(server: RunningServer) -> Callable[[], bool]:
    storage = server.services.storage

    def check() -> bool:
        counts = server.run(lambda: storage.state_counts(None))
        return not any(counts[s.value] for s in MessageState if not s.is_final)

    return check


def dlq_entries(server: RunningServer) -> list[dict[str, Any]]:
    """The whole DLQ as it is now (read completely before anything is retried)."""
    entries: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        target = "/v2/dlq?count=100" + (f"&cursor={cursor}" if cursor else "")
        _, page = raw_request(server.port, "GET", target)
        assert isinstance(page, dict)
        entries.extend(page["messages"])
        cursor = page.get("cursor")
        if not cursor:
            return entries


def test_forbidden_destinations_are_refused_everywhere_a_url_is_accepted(
    start_server: Callable[..., RunningServer],
) -> None:
    started = time.monotonic()
    resolver = RecordingResolver(RESOLVED)
    clock = ManualClock(start_ms=START_MS)
    server = start_server(clock=clock, resolve=resolver, **serve_settings())
    outcomes: dict[tuple[str, str], int] = {}
    with ConnectionGuard(allow={("127.0.0.1", server.port)}) as guard:
        for index, url in enumerate(LITERAL_FORMS + NAME_FORMS):
            for place in PLACES:
                status, answer = submit(server, place, url, index)
                outcomes[(place, url)] = status
                assert status < 500, f"{place} {url}: {status} {answer}"
        server.advance(61_000)  # the next cron tick: every accepted schedule fires once
        assert wait_until(idle(server), timeout=30)
        # DLQ retry: every message dead-lettered so far to a forbidden name is retried once.
        dlq_retries: Counter[str] = Counter()
        for entry in dlq_entries(server):
            if entry["url"] in NAME_FORMS:
                status, answer = raw_request(server.port, "POST", f"/v2/dlq/retry/{entry['dlqId']}")
                assert status in (201, 400), answer
                dlq_retries[entry["url"]] += status == 201
        assert wait_until(idle(server), timeout=30)
        entries = list(log_entries(server.base_url))

    messages: dict[str, set[str]] = defaultdict(set)
    states: dict[str, set[str]] = defaultdict(set)
    errors: dict[str, list[str]] = defaultdict(list)
    for e in entries:
        messages[e["url"]].add(e["messageId"])
        states[e["messageId"]].add(e["state"])
        if e["state"] == "ERROR":
            errors[e["url"]].append(e.get("error", ""))

    refused_at_api = [k for k, status in outcomes.items() if 400 <= status < 500]
    literal_accepted = [k for k in outcomes if k[1] in LITERAL_FORMS and outcomes[k] < 400]
    expected_per_name = {
        url: sum(outcomes[(place, url)] < 300 for place in PLACES) + dlq_retries[url]
        for url in NAME_FORMS
    }
    attempted_per_name = {url: len(messages[url]) for url in NAME_FORMS}
    not_refused_at_connect = [
        (url, err) for url in NAME_FORMS for err in errors[url] if "forbidden address" not in err
    ]
    delivered = [m for url in NAME_FORMS for m in messages[url] if "DELIVERED" in states[m]]
    resolved_names = {name for name, _ in resolver.calls}
    real_lookups = [h for h in guard.lookups if h != "127.0.0.1"]
    forms = len(LITERAL_FORMS) + len(NAME_FORMS)
    print(
        f"\nSSRF: forms={forms} (literal/loopback-name={len(LITERAL_FORMS)}, "
        f"resolved-name={len(NAME_FORMS)}) places={len(PLACES)}+dlq_retry "
        f"requests={len(outcomes) + sum(dlq_retries.values())} "
        f"refused_at_api={len(refused_at_api)} "
        f"literal_forms_accepted={len(literal_accepted)} name_messages_attempted="
        f"{sum(attempted_per_name.values())} dlq_retries={sum(dlq_retries.values())} "
        f"attempts_refused_at_resolver={sum(len(errors[u]) for u in NAME_FORMS)} "
        f"delivered={len(delivered)} connects_refused_by_guard={len(guard.refused)} "
        f"real_dns_lookups={len(real_lookups)} seconds={time.monotonic() - started:.1f}"
    )
    assert forms >= 70
    assert literal_accepted == [], f"forbidden literal forms accepted: {literal_accepted}"
    assert attempted_per_name == expected_per_name
    assert all(n >= len(PLACES) for n in attempted_per_name.values())  # every place took it
    assert all(len(errors[url]) == attempted_per_name[url] for url in NAME_FORMS)
    assert not_refused_at_connect == []
    assert delivered == []
    assert resolved_names <= set(RESOLVED) | {"unresolvable.test"}
    assert guard.refused == [], f"Homing tried to connect to {guard.refused}"
    assert real_lookups == []


def test_dns_answers_that_change_between_lookups_connect_only_to_the_checked_address(
    start_server: Callable[..., RunningServer],
) -> None:
    """DNS rebinding: `rebind.test` answers public first and private at every later lookup;
    `rebind-late.test` answers private, then public, then loopback. Four messages each.

    aiohttp connects to exactly the addresses the policy resolver returned (and caches an
    accepted answer for 10 s rather than asking again between check and connect), so no
    connect may ever go to an address of an answer the policy refused. The public address is
    stopped by the guard before the system call; that it is the only one tried is the assertion.
    """
    resolver = RecordingResolver(
        {},
        rebind={
            "rebind.test": [["93.184.216.34"], ["10.0.0.1"]],
            "rebind-late.test": [["10.0.0.2"], ["93.184.216.35"], ["127.0.0.1"]],
        },
    )
    server = start_server(resolve=resolver, **serve_settings())
    with ConnectionGuard(allow={("127.0.0.1", server.port)}) as guard:
        for url in ("http://rebind.test/", "http://rebind-late.test/"):
            for _ in range(4):
                status, answer = raw_request(
                    server.port, "POST", f"/v2/publish/{url}", {"Upstash-Retries": "0"}
                )
                assert status == 201, answer
                assert wait_until(idle(server), timeout=10)
    public = {"93.184.216.34", "93.184.216.35"}
    answered = [addr for _, addrs in resolver.calls for addr in addrs]
    connected = [host for host, _ in guard.refused]
    errors = [e.get("error", "") for e in log_entries(server.base_url, state="ERROR")]
    print(
        f"\nDNS rebinding: lookups={resolver.calls} connects_tried={guard.refused} "
        f"errors={Counter(e.split(':')[0] for e in errors)}"
    )
    assert set(answered) > public  # a private answer was given (rebind-late.test's first)
    assert connected, "expected the checked public answer to be connected to (and stopped)"
    assert set(connected) <= public, (
        f"connected to an address the policy never accepted: {connected}"
    )
    assert sum("forbidden address" in e for e in errors) >= 1


class AllowOneOrigin(DestinationPolicy):
    """The serve-mode policy, except that one loopback origin (the test's redirector) is treated
    as if it were a public site. Only the first hop can go there; every redirect target is
    judged by the unchanged serve-mode policy (and names by the unchanged policy resolver)."""

    def __init__(self, port: int) -> None:
        super().__init__(allow_private=False)
        self.port = port

    def check_url(self, url: str) -> None:
        parsed = URL(url)
        if (parsed.scheme, parsed.raw_host, parsed.explicit_port) == (
            "http",
            "127.0.0.1",
            self.port,
        ):
            parse_destination_url(url)
            return
        super().check_url(url)


REDIRECT_TARGETS = [
    "http://127.0.0.1:1/",
    "http://169.254.169.254/latest/meta-data/iam/security-credentials/",
    "http://[::1]:80/",
    "http://0x7f000001/",
    "http://2130706433/",
    "http://[::ffff:127.0.0.1]/",
    "http://localhost/",
    "http://[fd00:ec2::254]/",
    "//10.0.0.1/x",
    "http://internal.test/",
    "http://metadata.google.internal/computeMetadata/v1/",
    "file:///etc/passwd",
    "gopher://127.0.0.1:6379/_INFO",
]


def test_redirects_to_forbidden_addresses_are_never_followed(
    start_server: Callable[..., RunningServer],
) -> None:
    """Redirect hops are checked like the first hop (spec Q26).

    Design: in serve mode no loopback receiver may be a destination, and a test must never
    connect to a real public site. So the server runs the real serve-mode policy with exactly
    one exception, installed in both places that consult it (the publish-time check and the
    sender's per-hop check): the redirector's own origin. Every Location it answers with is
    judged by the unchanged policy, and names by the unchanged PolicyResolver.
    """
    redirector = Receiver()
    server = start_server(resolve=RecordingResolver(RESOLVED), **serve_settings())
    policy = AllowOneOrigin(redirector.port)
    server.services.policy = policy
    assert server.runtime.sender is not None
    server.runtime.sender.policy = policy
    statuses = [301, 302, 303, 307, 308]
    urls = []
    for i, target in enumerate(REDIRECT_TARGETS):
        status = statuses[i % len(statuses)]
        redirector.on(f"/r{i}", lambda r, t=target, s=status: Reply(s, b"", {"Location": t}))
        urls.append(redirector.url(f"/r{i}"))
    # A chain: two hops on the allowed origin, then a forbidden one.
    redirector.on("/chain", lambda r: Reply(302, b"", {"Location": "/chain2"}))
    redirector.on("/chain2", lambda r: Reply(307, b"", {"Location": "http://10.0.0.1/"}))
    urls.append(redirector.url("/chain"))
    try:
        with ConnectionGuard(
            allow={("127.0.0.1", server.port), ("127.0.0.1", redirector.port)}
        ) as guard:
            for url in urls:
                status, answer = raw_request(
                    server.port, "POST", f"/v2/publish/{url}", {"Upstash-Retries": "0"}
                )
                assert status == 201, answer
            assert wait_until(idle(server), timeout=20)
        failed = {e["url"]: e.get("error", "") for e in log_entries(server.base_url, state="ERROR")}
        delivered = list(log_entries(server.base_url, state="DELIVERED"))
        hops = Counter(r.path for r in redirector.requests)
    finally:
        redirector.close()
    print(
        f"\nredirects: targets={len(REDIRECT_TARGETS)}+chain statuses={statuses} "
        f"failed={len(failed)} delivered={len(delivered)} redirector_hops={sum(hops.values())} "
        f"connects_refused_by_guard={len(guard.refused)} errors="
        f"{sorted({e.split(';')[0][:60] for e in failed.values()})[:4]}..."
    )
    assert set(failed) == set(urls)
    assert delivered == []
    assert all(
        ("private destinations are refused" in e) or ("scheme must be http" in e)
        for e in failed.values()
    )
    assert hops == Counter(
        {**{f"/r{i}": 1 for i in range(len(REDIRECT_TARGETS))}, "/chain": 1, "/chain2": 1}
    )
    assert guard.refused == []


def test_dlq_retry_refuses_forbidden_destinations_after_a_switch_to_serve_mode(
    start_server: Callable[..., RunningServer], tmp_path: Path
) -> None:
    """Messages dead-lettered under `homing dev` (where private destinations are allowed) to
    literal private addresses cannot be retried once the same data runs under `serve`.

    The dev phase's attempts are stopped by the guard before any packet is sent.
    """
    dev = start_server(mode="dev", allow_private_destinations=True, resolve=RecordingResolver({}))
    forms = []
    with ConnectionGuard(allow={("127.0.0.1", dev.port)}):
        for url in LITERAL_FORMS:
            body = orjson.dumps([{"destination": url, "headers": {"Upstash-Retries": "0"}}])
            status, _ = raw_request(
                dev.port, "POST", "/v2/batch", {"Content-Type": "application/json"}, body
            )
            if status == 201:  # a few forms are malformed even where private ones are allowed
                forms.append(url)
        assert wait_until(idle(dev), timeout=20)
    dev.stop()
    serve = start_server(resolve=RecordingResolver({}), **serve_settings())
    with ConnectionGuard(allow={("127.0.0.1", serve.port)}) as guard:
        entries = dlq_entries(serve)
        answers = [raw_request(serve.port, "POST", f"/v2/dlq/retry/{e['dlqId']}") for e in entries]
        bulk = raw_request(serve.port, "POST", "/v2/dlq/retry")
        time.sleep(0.3)
    still = dlq_entries(serve)
    statuses = Counter(status for status, _ in answers)
    print(
        f"\nDLQ retry after dev->serve: literal_forms_stored_in_dev={len(forms)} "
        f"entries={len(entries)} single_retry_statuses={dict(statuses)} "
        f"bulk_retry_status={bulk[0]} entries_left={len(still)} "
        f"connects_refused_by_guard={len(guard.refused)}"
    )
    assert len(forms) >= 60 and len(entries) == len(forms)
    assert statuses == Counter({400: len(forms)})
    assert bulk[0] == 400
    assert len(still) == len(forms)  # a refused retry keeps the entry
    assert guard.refused == []


@pytest.mark.parametrize("url", ["http://10.0.0.1/", "http://internal.test/"])
def test_dev_mode_allows_private_destinations_by_design(url: str) -> None:
    """The other side of the contract (spec 3, item 5): `homing dev` permits them."""
    DestinationPolicy(allow_private=True).check_url(url)
