"""The check engine end to end: local TLS servers, probes, analysis, results.

Every server case runs on 127.0.0.1 and on ::1. Certificates come from
`tests.certs` with validity around its fixed `NOW`, which each check receives
as `now`.
"""

from __future__ import annotations

import contextlib
import ssl
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.serialization import (
    BestAvailableEncryption,
    pkcs12,
)
from tests.certs import (
    NOW,
    Issued,
    cross_sign,
    make_intermediate,
    make_key,
    make_leaf,
    make_root,
    make_self_signed,
)
from tests.dialogue_servers import Behaviour, DialogueOptions, DialogueServer
from tests.servers import (
    Chain,
    LocalServer,
    Mode,
    ServerOptions,
    closed_port,
    ipv6_loopback_available,
)

import certwatch.check as check_module
from certwatch.check import (
    CLIENT_CERTIFICATE_FINDING,
    check_endpoints,
    check_paths,
    result_from_probe,
)
from certwatch.probe.model import ErrorReason, ProbeError, ProbeResult, ProbeSettings
from certwatch.probe.resolve import Resolver, StaticResolver
from certwatch.report.json import render_document
from certwatch.result import Result, Status
from certwatch.targets import Endpoint, apply_overrides, parse_target
from certwatch.x509.model import AnalysisPolicy, Severity

StartServer = Callable[..., LocalServer]
StartServers = Callable[..., list[LocalServer]]

SETTINGS = ProbeSettings(timeout=5.0)

# A resolver without names, so a test that reaches DNS by mistake gets dns_error.
NO_DNS = StaticResolver({})

requires_ipv6 = pytest.mark.skipif(
    not ipv6_loopback_available(), reason="this machine has no IPv6 loopback ::1"
)

LOOPBACKS = [
    pytest.param("127.0.0.1", id="ipv4"),
    pytest.param("::1", id="ipv6", marks=requires_ipv6),
]

ROOT = make_root()
INTERMEDIATE = make_intermediate(ROOT)
POLICY = AnalysisPolicy(roots=(ROOT.der,), public_roots=False)


@pytest.fixture(params=LOOPBACKS)
def loopback(request: pytest.FixtureRequest) -> str:
    """The loopback address that the test's servers listen on."""
    address: str = request.param
    return address


def chain_of(leaf: Issued, *extras: Issued) -> Chain:
    return Chain.from_pems(leaf.key_pem(), leaf.pem, *(extra.pem for extra in extras))


def ip_target(address: str, port: int) -> str:
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


def name_endpoint(name: str, server: LocalServer) -> Endpoint:
    """Return `name:port` pinned to the server's address, as `--resolve` does."""
    endpoint = parse_target(f"{name}:{server.port}")
    return apply_overrides(endpoint, {(endpoint.host, server.port): server.host})


async def check_all(
    endpoints: list[Endpoint],
    *,
    now: datetime = NOW,
    settings: ProbeSettings = SETTINGS,
    resolver: Resolver = NO_DNS,
    policy: AnalysisPolicy = POLICY,
) -> list[Result]:
    stream = check_endpoints(
        endpoints, settings=settings, policy=policy, now=now, resolver=resolver
    )
    return [result async for result in stream]


async def check_one(endpoint: Endpoint, *, now: datetime = NOW) -> Result:
    results = await check_all([endpoint], now=now)
    assert len(results) == 1
    return results[0]


def codes(result: Result) -> list[tuple[str, Severity]]:
    return [(finding.code, finding.severity) for finding in result.findings]


# Valid chains and the expiry of the leaf


async def test_check_endpoints_valid_chain(
    local_server: StartServer, loopback: str
) -> None:
    leaf = make_leaf(INTERMEDIATE)
    server = local_server(chain=chain_of(leaf, INTERMEDIATE), host=loopback)

    result = await check_one(name_endpoint("www.example.test", server))

    assert result.status is Status.OK
    assert result.findings == ()
    assert result.error is None
    assert result.target == f"www.example.test:{server.port}"
    assert result.host == "www.example.test"
    assert result.port == server.port
    assert result.server_name == "www.example.test"
    assert result.address == loopback
    assert result.days_left == 60
    assert result.report is not None
    assert result.report.valid_path == (leaf.sha256, INTERMEDIATE.sha256, ROOT.sha256)
    assert server.server_names == ["www.example.test"]


async def test_check_endpoints_expired_leaf(
    local_server: StartServer, loopback: str
) -> None:
    leaf = make_leaf(
        INTERMEDIATE,
        not_before=NOW - timedelta(days=120),
        not_after=NOW - timedelta(days=30),
    )
    server = local_server(chain=chain_of(leaf, INTERMEDIATE), host=loopback)

    result = await check_one(name_endpoint("www.example.test", server))

    assert result.status is Status.CRITICAL
    assert codes(result) == [("expired", Severity.CRITICAL)]
    assert result.days_left == -30


async def test_check_endpoints_not_yet_valid_leaf(
    local_server: StartServer, loopback: str
) -> None:
    leaf = make_leaf(
        INTERMEDIATE,
        not_before=NOW + timedelta(days=1),
        not_after=NOW + timedelta(days=91),
    )
    server = local_server(chain=chain_of(leaf, INTERMEDIATE), host=loopback)

    result = await check_one(name_endpoint("www.example.test", server))

    assert result.status is Status.CRITICAL
    assert codes(result) == [("not_yet_valid", Severity.CRITICAL)]


@pytest.mark.parametrize(
    ("offset", "expected_codes", "days_left"),
    [
        pytest.param(
            timedelta(seconds=-1),
            [("expiring_soon", Severity.CRITICAL)],
            0,
            id="one-second-before",
        ),
        pytest.param(
            timedelta(0), [("expiring_soon", Severity.CRITICAL)], 0, id="at-not-after"
        ),
        pytest.param(
            timedelta(seconds=1),
            [("expired", Severity.CRITICAL)],
            -1,
            id="one-second-after",
        ),
    ],
)
async def test_check_endpoints_expiry_to_the_second(
    local_server: StartServer,
    loopback: str,
    offset: timedelta,
    expected_codes: list[tuple[str, Severity]],
    days_left: int,
) -> None:
    not_after = NOW + timedelta(days=10)
    leaf = make_leaf(
        INTERMEDIATE, not_before=not_after - timedelta(days=90), not_after=not_after
    )
    server = local_server(chain=chain_of(leaf, INTERMEDIATE), host=loopback)

    result = await check_one(
        name_endpoint("www.example.test", server), now=not_after + offset
    )

    assert result.status is Status.CRITICAL
    assert codes(result) == expected_codes
    assert result.days_left == days_left


@pytest.mark.parametrize(
    ("offset", "expected_codes"),
    [
        pytest.param(
            timedelta(seconds=-1),
            [("not_yet_valid", Severity.CRITICAL)],
            id="one-second-before",
        ),
        pytest.param(timedelta(0), [], id="at-not-before"),
    ],
)
async def test_check_endpoints_not_before_to_the_second(
    local_server: StartServer,
    loopback: str,
    offset: timedelta,
    expected_codes: list[tuple[str, Severity]],
) -> None:
    not_before = NOW - timedelta(days=1)
    leaf = make_leaf(
        INTERMEDIATE, not_before=not_before, not_after=not_before + timedelta(days=90)
    )
    server = local_server(chain=chain_of(leaf, INTERMEDIATE), host=loopback)

    result = await check_one(
        name_endpoint("www.example.test", server), now=not_before + offset
    )

    assert codes(result) == expected_codes


# Trust


async def test_check_endpoints_self_signed(
    local_server: StartServer, loopback: str
) -> None:
    leaf = make_self_signed(["www.example.test"])
    server = local_server(chain=chain_of(leaf), host=loopback)

    result = await check_one(name_endpoint("www.example.test", server))

    assert result.status is Status.CRITICAL
    assert codes(result) == [("self_signed", Severity.CRITICAL)]
    assert result.report is not None
    assert result.report.valid_path is None


async def test_check_endpoints_incomplete_chain(
    local_server: StartServer, loopback: str
) -> None:
    leaf = make_leaf(INTERMEDIATE)
    server = local_server(chain=chain_of(leaf), host=loopback)

    result = await check_one(name_endpoint("www.example.test", server))

    assert result.status is Status.CRITICAL
    assert codes(result) == [("incomplete_chain", Severity.CRITICAL)]
    assert "certwatch test intermediate" in result.findings[0].message


async def test_check_endpoints_expired_intermediate(
    local_server: StartServer, loopback: str
) -> None:
    intermediate = make_intermediate(
        ROOT,
        "certwatch expired intermediate",
        not_before=NOW - timedelta(days=400),
        not_after=NOW - timedelta(days=1),
    )
    leaf = make_leaf(intermediate)
    server = local_server(chain=chain_of(leaf, intermediate), host=loopback)

    result = await check_one(name_endpoint("www.example.test", server))

    assert result.status is Status.CRITICAL
    assert codes(result) == [("chain_expired", Severity.CRITICAL)]
    assert "certwatch expired intermediate" in result.findings[0].message


async def test_check_endpoints_extra_expired_cross_sign(
    local_server: StartServer, loopback: str
) -> None:
    old_root = make_root("certwatch old root")
    expired_cross_sign = cross_sign(
        ROOT,
        old_root,
        not_before=NOW - timedelta(days=800),
        not_after=NOW - timedelta(days=10),
    )
    leaf = make_leaf(INTERMEDIATE)
    chain = chain_of(leaf, INTERMEDIATE, expired_cross_sign)
    server = local_server(chain=chain, host=loopback)

    result = await check_one(name_endpoint("www.example.test", server))

    assert result.status is Status.OK
    assert codes(result) == [("extra_certificate_expired", Severity.INFO)]
    assert result.report is not None
    assert len(result.report.chain) == 3
    assert result.report.valid_path == (leaf.sha256, INTERMEDIATE.sha256, ROOT.sha256)


# Names and addresses


async def test_check_endpoints_wrong_host(
    local_server: StartServer, loopback: str
) -> None:
    leaf = make_leaf(INTERMEDIATE, dns_names=["other.example.test"])
    server = local_server(chain=chain_of(leaf, INTERMEDIATE), host=loopback)

    result = await check_one(name_endpoint("www.example.test", server))

    assert result.status is Status.CRITICAL
    assert codes(result) == [("hostname_mismatch", Severity.CRITICAL)]
    assert "'www.example.test'" in result.findings[0].message
    assert "'other.example.test'" in result.findings[0].message


@pytest.mark.parametrize(
    ("name", "expected_codes"),
    [
        pytest.param("www.example.test", [], id="one-label"),
        pytest.param(
            "example.test", [("hostname_mismatch", Severity.CRITICAL)], id="apex"
        ),
        pytest.param(
            "a.b.example.test",
            [("hostname_mismatch", Severity.CRITICAL)],
            id="two-labels",
        ),
    ],
)
async def test_check_endpoints_wildcard(
    local_server: StartServer,
    loopback: str,
    name: str,
    expected_codes: list[tuple[str, Severity]],
) -> None:
    leaf = make_leaf(INTERMEDIATE, dns_names=["*.example.test"])
    server = local_server(chain=chain_of(leaf, INTERMEDIATE), host=loopback)

    result = await check_one(name_endpoint(name, server))

    assert codes(result) == expected_codes
    assert server.server_names == [name]


async def test_check_endpoints_idn_sends_a_label(
    local_server: StartServer, loopback: str
) -> None:
    a_label = "xn--bcher-kva.example.test"
    leaf = make_leaf(INTERMEDIATE, dns_names=[a_label])
    server = local_server(chain=chain_of(leaf, INTERMEDIATE), host=loopback)

    result = await check_one(name_endpoint("bücher.example.test", server))

    assert result.status is Status.OK
    assert result.findings == ()
    assert result.target == f"bücher.example.test:{server.port}"
    assert result.host == a_label
    assert result.server_name == a_label
    assert server.server_names == [a_label]


async def test_check_endpoints_ip_san(local_server: StartServer, loopback: str) -> None:
    leaf = make_leaf(INTERMEDIATE, dns_names=[], ip_addresses=[loopback])
    server = local_server(chain=chain_of(leaf, INTERMEDIATE), host=loopback)

    result = await check_one(parse_target(ip_target(loopback, server.port)))

    assert result.status is Status.OK
    assert result.findings == ()
    assert result.host == loopback
    assert result.server_name is None
    assert result.address == loopback
    assert server.server_names == [None]


async def test_check_endpoints_ip_target_dns_only_certificate(
    local_server: StartServer, loopback: str
) -> None:
    leaf = make_leaf(INTERMEDIATE, dns_names=["www.example.test", loopback])
    server = local_server(chain=chain_of(leaf, INTERMEDIATE), host=loopback)

    result = await check_one(parse_target(ip_target(loopback, server.port)))

    assert result.status is Status.CRITICAL
    assert codes(result) == [("hostname_mismatch", Severity.CRITICAL)]
    assert f"{loopback!r}" in result.findings[0].message


@requires_ipv6
async def test_check_endpoints_ipv6_san_compared_as_address(
    local_server: StartServer,
) -> None:
    leaf = make_leaf(INTERMEDIATE, dns_names=[], ip_addresses=["0:0:0:0:0:0:0:1"])
    server = local_server(chain=chain_of(leaf, INTERMEDIATE), host="::1")

    result = await check_one(parse_target(f"[0::0:1]:{server.port}"))

    assert result.status is Status.OK
    assert result.host == "::1"
    assert result.report is not None
    assert result.report.leaf is not None
    assert result.report.leaf.ip_addresses == ("::1",)


# Keys, signatures and protocol versions


async def test_check_endpoints_weak_rsa_key(
    local_server: StartServer, loopback: str
) -> None:
    leaf = make_leaf(INTERMEDIATE, key=make_key("rsa", 1024))
    server = local_server(chain=chain_of(leaf, INTERMEDIATE), host=loopback)

    result = await check_one(name_endpoint("www.example.test", server))

    assert result.status is Status.WARNING
    assert codes(result) == [("weak_key", Severity.WARNING)]
    assert "1024-bit RSA" in result.findings[0].message


async def test_check_endpoints_sha1_leaf(
    local_server: StartServer, loopback: str
) -> None:
    leaf = make_leaf(INTERMEDIATE, hash_name="sha1")
    server = local_server(chain=chain_of(leaf, INTERMEDIATE), host=loopback)

    result = await check_one(name_endpoint("www.example.test", server))

    # The verifier of cryptography 50 rejects SHA-1 signatures ("Forbidden
    # signature algorithm"), so the path gets chain_invalid as well.
    assert result.status is Status.CRITICAL
    assert codes(result) == [
        ("chain_invalid", Severity.CRITICAL),
        ("weak_signature", Severity.WARNING),
    ]
    assert "ecdsa-with-SHA1" in result.findings[1].message
    assert result.report is not None
    assert result.report.leaf is not None
    assert result.report.leaf.signature_hash == "sha1"


async def test_check_endpoints_tls10_only(
    local_server: StartServer, loopback: str
) -> None:
    leaf = make_leaf(INTERMEDIATE, key=make_key("rsa", 2048))
    server = local_server(
        chain=chain_of(leaf, INTERMEDIATE),
        host=loopback,
        minimum_version=ssl.TLSVersion.TLSv1,
        maximum_version=ssl.TLSVersion.TLSv1,
    )

    result = await check_one(name_endpoint("www.example.test", server))

    assert result.status is Status.OK
    assert result.tls_version == "TLSv1"
    assert result.findings == ()


@pytest.mark.parametrize(
    ("version", "version_name"),
    [(ssl.TLSVersion.TLSv1_3, "TLSv1.3"), (ssl.TLSVersion.TLSv1_2, "TLSv1.2")],
)
async def test_check_endpoints_client_certificate_required(
    local_server: StartServer,
    loopback: str,
    version: ssl.TLSVersion,
    version_name: str,
) -> None:
    leaf = make_leaf(INTERMEDIATE)
    server = local_server(
        chain=chain_of(leaf, INTERMEDIATE),
        host=loopback,
        minimum_version=version,
        maximum_version=version,
        client_certificate_required=True,
        client_ca_pem=ROOT.pem,
    )

    result = await check_one(name_endpoint("www.example.test", server))

    assert result.status is Status.OK
    assert result.error is None
    assert result.tls_version == version_name
    assert codes(result) == [("client_certificate_required", Severity.INFO)]
    assert result.days_left == 60


# Failures


async def test_check_endpoints_connection_refused(loopback: str) -> None:
    with closed_port(loopback) as port:
        result = await check_one(parse_target(ip_target(loopback, port)))

    assert result.status is Status.UNKNOWN
    assert result.error is not None
    assert result.error.reason is ErrorReason.CONNECTION_REFUSED
    assert result.report is None
    assert result.leaf is None
    assert result.days_left is None
    assert result.address == loopback


async def test_check_endpoints_dns_error() -> None:
    result = await check_one(parse_target("missing.example.test:8443"))

    assert result.status is Status.UNKNOWN
    assert result.error is not None
    assert result.error.reason is ErrorReason.DNS_ERROR
    assert result.address is None
    assert result.host == "missing.example.test"
    assert result.days_left is None


@pytest.mark.parametrize("mode", [Mode.STALL, Mode.TRICKLE])
async def test_check_endpoints_stalled_server_times_out(
    local_server: StartServer, loopback: str, mode: Mode
) -> None:
    stalled = local_server(mode=mode, host=loopback, trickle_interval=0.1)
    healthy = local_server(
        chain=chain_of(make_leaf(INTERMEDIATE), INTERMEDIATE), host=loopback
    )
    endpoints = [
        name_endpoint("stalled.example.test", stalled),
        name_endpoint("www.example.test", healthy),
    ]

    results = await check_all(endpoints, settings=ProbeSettings(timeout=0.5))

    by_name = {result.host: result for result in results}
    assert len(results) == 2
    assert set(by_name) == {"stalled.example.test", "www.example.test"}
    timed_out = by_name["stalled.example.test"]
    assert timed_out.status is Status.UNKNOWN
    assert timed_out.error is not None
    assert timed_out.error.reason is ErrorReason.TIMEOUT
    assert "timed out after 0.5 s" in timed_out.error.message
    assert timed_out.days_left is None
    assert by_name["www.example.test"].status is Status.OK


# Several addresses for one name


@pytest.mark.parametrize(
    ("first_host", "second_host"),
    [
        pytest.param("127.0.0.1", "127.0.0.2", id="ipv4"),
        pytest.param("127.0.0.1", "::1", id="ipv4-ipv6", marks=requires_ipv6),
    ],
)
async def test_check_endpoints_worst_address_wins(
    local_servers_on_one_port: StartServers, first_host: str, second_host: str
) -> None:
    healthy = make_leaf(INTERMEDIATE)
    expiring = make_leaf(
        INTERMEDIATE,
        not_before=NOW - timedelta(days=70),
        not_after=NOW + timedelta(days=20),
    )
    first, second = local_servers_on_one_port(
        ServerOptions(chain=chain_of(healthy, INTERMEDIATE), host=first_host),
        ServerOptions(chain=chain_of(expiring, INTERMEDIATE), host=second_host),
    )
    resolver = StaticResolver({"www.example.test": [second_host, first_host]})
    endpoint = parse_target(f"www.example.test:{first.port}")

    results = await check_all([endpoint], resolver=resolver)

    by_address = {result.address: result for result in results}
    assert len(results) == 2
    assert set(by_address) == {first_host, second_host}
    assert by_address[first_host].status is Status.OK
    assert by_address[second_host].status is Status.WARNING
    assert codes(by_address[second_host]) == [("expiring_soon", Severity.WARNING)]
    document = render_document(results, now=NOW)
    assert document["status"] == "warning"
    assert document["endpoints"] == [
        {
            "target": f"www.example.test:{first.port}",
            "status": "warning",
            "days_left": 20,
            "results": 2,
        }
    ]
    assert first.server_names == ["www.example.test"]
    assert second.server_names == ["www.example.test"]


# STARTTLS endpoints


def dialogue_endpoint(protocol: str, server: DialogueServer) -> Endpoint:
    """Return `PROTOCOL://mail.example.test:port` pinned to the server's address."""
    endpoint = parse_target(f"{protocol}://mail.example.test:{server.port}")
    return apply_overrides(endpoint, {(endpoint.host, server.port): server.host})


@pytest.mark.parametrize("protocol", ["smtp", "imap", "ldap", "postgres"])
async def test_check_endpoints_starttls_analysed_as_https(
    loopback: str, protocol: str
) -> None:
    leaf = make_leaf(
        INTERMEDIATE,
        dns_names=["mail.example.test"],
        not_after=NOW + timedelta(days=3),
    )
    options = DialogueOptions(protocol, chain_of(leaf, INTERMEDIATE), host=loopback)

    with DialogueServer(options) as server:
        result = await check_one(dialogue_endpoint(protocol, server))

    assert result.status is Status.CRITICAL
    assert codes(result) == [("expiring_soon", Severity.CRITICAL)]
    assert result.days_left == 3
    assert result.protocol == protocol
    assert result.address == loopback
    assert result.report is not None
    assert result.report.valid_path == (leaf.sha256, INTERMEDIATE.sha256, ROOT.sha256)


async def test_check_endpoints_starttls_wrong_host(loopback: str) -> None:
    leaf = make_leaf(INTERMEDIATE, dns_names=["other.example.test"])
    options = DialogueOptions("pop3", chain_of(leaf, INTERMEDIATE), host=loopback)

    with DialogueServer(options) as server:
        result = await check_one(dialogue_endpoint("pop3", server))

    assert codes(result) == [("hostname_mismatch", Severity.CRITICAL)]


async def test_check_endpoints_starttls_not_offered(loopback: str) -> None:
    leaf = make_leaf(INTERMEDIATE, dns_names=["mail.example.test"])
    options = DialogueOptions(
        "smtp",
        chain_of(leaf, INTERMEDIATE),
        behaviour=Behaviour.NOT_OFFERED,
        host=loopback,
    )

    with DialogueServer(options) as server:
        result = await check_one(dialogue_endpoint("smtp", server))

    assert result.status is Status.CRITICAL
    assert codes(result) == [("starttls_not_offered", Severity.CRITICAL)]
    assert "does not offer STARTTLS" in result.findings[0].message
    assert "250 8BITMIME" in result.findings[0].message
    assert result.error is None
    assert result.report is None
    assert result.days_left is None
    assert result.leaf is None


async def test_check_endpoints_starttls_refused_is_unknown(loopback: str) -> None:
    leaf = make_leaf(INTERMEDIATE, dns_names=["mail.example.test"])
    options = DialogueOptions(
        "imap", chain_of(leaf, INTERMEDIATE), behaviour=Behaviour.REFUSED, host=loopback
    )

    with DialogueServer(options) as server:
        result = await check_one(dialogue_endpoint("imap", server))

    assert result.status is Status.UNKNOWN
    assert result.error is not None
    assert result.error.reason is ErrorReason.STARTTLS_REFUSED
    assert result.findings == ()
    assert result.days_left is None


# result_from_probe without a server


def test_result_from_probe_no_chain_no_error() -> None:
    endpoint = parse_target("www.example.test:8443")
    probe = ProbeResult(endpoint=endpoint, address="127.0.0.1")

    result = result_from_probe(probe, policy=POLICY, now=NOW)

    assert result.status is Status.UNKNOWN
    assert result.error is not None
    assert result.error.reason is ErrorReason.NO_CERTIFICATE
    assert result.report is None
    assert result.address == "127.0.0.1"


def test_result_from_probe_keeps_probe_error() -> None:
    endpoint = parse_target("www.example.test:8443")
    error = ProbeError(ErrorReason.TIMEOUT, "Connecting to 127.0.0.1 timed out.")
    probe = ProbeResult(endpoint=endpoint, address="127.0.0.1", error=error)

    result = result_from_probe(probe, policy=POLICY, now=NOW)

    assert result.status is Status.UNKNOWN
    assert result.error == error
    assert result.findings == ()


def test_result_from_probe_client_certificate_finding() -> None:
    leaf = make_leaf(INTERMEDIATE, not_after=NOW + timedelta(days=2))
    endpoint = parse_target("www.example.test:8443")
    probe = ProbeResult(
        endpoint=endpoint,
        address="127.0.0.1",
        chain=(leaf.der, INTERMEDIATE.der),
        tls_version="TLSv1.2",
        client_certificate_requested=True,
    )

    result = result_from_probe(probe, policy=POLICY, now=NOW)

    assert result.status is Status.CRITICAL
    assert result.findings[-1] == CLIENT_CERTIFICATE_FINDING
    assert codes(result) == [
        ("expiring_soon", Severity.CRITICAL),
        ("client_certificate_required", Severity.INFO),
    ]
    assert result.tls_version == "TLSv1.2"


def test_result_from_probe_starttls_not_offered() -> None:
    endpoint = parse_target("smtp://mail.example.test")
    message = "The SMTP server at 127.0.0.1 port 25 does not offer STARTTLS."
    probe = ProbeResult(
        endpoint=endpoint, address="127.0.0.1", starttls_not_offered=message
    )

    result = result_from_probe(probe, policy=POLICY, now=NOW)
    document = render_document([result], now=NOW)

    assert result.status is Status.CRITICAL
    assert codes(result) == [("starttls_not_offered", Severity.CRITICAL)]
    assert result.findings[0].message == message
    assert result.error is None
    assert result.protocol == "smtp"
    [rendered] = document["results"]
    assert rendered["certificate"] is None
    assert rendered["error"] is None
    assert rendered["findings"] == [
        {"code": "starttls_not_offered", "severity": "critical", "message": message}
    ]
    assert document["endpoints"][0]["days_left"] is None


# Files


def test_check_paths_pem_bundle_and_folder(tmp_path: Path) -> None:
    expired = make_leaf(INTERMEDIATE, not_after=NOW - timedelta(seconds=1))
    valid = make_leaf(INTERMEDIATE)
    folder = tmp_path / "certs"
    folder.mkdir()
    bundle = folder / "bundle.pem"
    bundle.write_bytes(valid.pem + expired.pem)

    results = check_paths([folder], policy=POLICY, now=NOW).results

    assert [(r.path, r.index) for r in results] == [(str(bundle), 0), (str(bundle), 1)]
    assert [r.status for r in results] == [Status.OK, Status.CRITICAL]
    assert codes(results[1]) == [("expired", Severity.CRITICAL)]
    assert [r.days_left for r in results] == [60, -1]
    assert all(r.address is None and r.host is None for r in results)


def test_check_paths_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "missing.pem"

    results = check_paths([missing], policy=POLICY, now=NOW).results

    assert len(results) == 1
    assert results[0].status is Status.UNKNOWN
    assert results[0].path == str(missing)
    assert results[0].index is None
    assert results[0].error is not None
    assert results[0].error.reason is ErrorReason.FILE_ERROR
    assert "not found" in results[0].error.message
    assert results[0].days_left is None


@pytest.mark.parametrize(
    ("password", "expected"),
    [
        pytest.param(b"s3cret", Status.OK, id="right-password"),
        pytest.param(None, Status.UNKNOWN, id="no-password"),
    ],
)
def test_check_paths_pkcs12(
    tmp_path: Path, password: bytes | None, expected: Status
) -> None:
    leaf = make_leaf(INTERMEDIATE)
    path = tmp_path / "site.p12"
    path.write_bytes(
        pkcs12.serialize_key_and_certificates(
            b"site",
            leaf.key,
            leaf.cert,
            None,
            BestAvailableEncryption(b"s3cret"),
        )
    )

    results = check_paths(
        [path], policy=POLICY, now=NOW, pkcs12_password=password
    ).results

    assert [r.status for r in results] == [expected]
    if expected is Status.OK:
        assert results[0].leaf is not None
        assert results[0].leaf.sha256 == leaf.sha256
    else:
        assert results[0].error is not None
        assert results[0].error.reason is ErrorReason.FILE_ERROR
        assert "needs a password" in results[0].error.message


def test_check_paths_folder_skips_keys_and_notes(tmp_path: Path) -> None:
    leaf = make_leaf(INTERMEDIATE)
    live = tmp_path / "live" / "www.example.test"
    live.mkdir(parents=True)
    (live / "cert.pem").write_bytes(leaf.pem)
    (live / "privkey.pem").write_bytes(leaf.key_pem())
    (live / "README").write_text("This folder holds the live certificate.\n")
    (live / "empty.pem").write_bytes(b"")

    found = check_paths([tmp_path / "live"], policy=POLICY, now=NOW)

    assert sorted(Path(p.path).name for p in found.skipped) == ["README", "privkey.pem"]
    by_name = {Path(r.path or "").name: r for r in found.results}
    assert set(by_name) == {"cert.pem", "empty.pem"}
    assert by_name["cert.pem"].status is Status.OK
    assert by_name["empty.pem"].status is Status.UNKNOWN


def test_check_paths_key_named_directly_is_unknown(tmp_path: Path) -> None:
    leaf = make_leaf(INTERMEDIATE)
    key = tmp_path / "privkey.pem"
    key.write_bytes(leaf.key_pem())

    found = check_paths([key], policy=POLICY, now=NOW)

    assert found.skipped == []
    assert [r.status for r in found.results] == [Status.UNKNOWN]


async def test_check_endpoints_worker_processes_match_event_loop(
    local_server: StartServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(check_module, "PARALLEL_ANALYSIS_MIN_ENDPOINTS", 1)
    healthy = local_server(chain=chain_of(make_leaf(INTERMEDIATE), INTERMEDIATE))
    expired = local_server(
        chain=chain_of(
            make_leaf(
                INTERMEDIATE,
                not_before=NOW - timedelta(days=90),
                not_after=NOW - timedelta(days=2),
            ),
            INTERMEDIATE,
        )
    )
    refused = contextlib.ExitStack()
    refused_port = refused.enter_context(closed_port("127.0.0.1"))
    endpoints = [
        name_endpoint("www.example.test", healthy),
        name_endpoint("www.example.test", expired),
        parse_target(f"127.0.0.1:{refused_port}"),
    ]

    def by_target(results: list[Result]) -> dict[str, Result]:
        return {result.target: result for result in results}

    async def run(workers: int) -> dict[str, Result]:
        stream = check_endpoints(
            endpoints,
            settings=SETTINGS,
            policy=POLICY,
            now=NOW,
            resolver=NO_DNS,
            workers=workers,
        )
        return by_target([result async for result in stream])

    with refused:
        in_loop = await run(0)
        in_workers = await run(1)

    assert in_workers == in_loop
    assert [in_workers[e.target].status for e in endpoints] == [
        Status.OK,
        Status.CRITICAL,
        Status.UNKNOWN,
    ]


async def test_check_endpoints_worker_processes_closed_early(
    local_server: StartServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(check_module, "PARALLEL_ANALYSIS_MIN_ENDPOINTS", 1)
    server = local_server(chain=chain_of(make_leaf(INTERMEDIATE), INTERMEDIATE))
    endpoints = [name_endpoint(f"n{i}.example.test", server) for i in range(20)]
    stream = check_endpoints(
        endpoints,
        settings=SETTINGS,
        policy=POLICY,
        now=NOW,
        resolver=NO_DNS,
        workers=1,
    )

    first = await anext(stream)
    await stream.aclose()

    assert first.report is not None
