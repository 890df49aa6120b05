import pytest

from certwatch.errors import TargetError
from certwatch.targets import Endpoint, apply_overrides, parse_resolve, parse_target


@pytest.mark.parametrize(
    ("text", "host", "port", "server_name"),
    [
        ("www.example.test", "www.example.test", 443, "www.example.test"),
        ("WWW.Example.TEST.", "www.example.test", 443, "www.example.test"),
        ("www.example.test:8443", "www.example.test", 8443, "www.example.test"),
        ("[2001:db8::1]:8443", "2001:db8::1", 8443, None),
        ("[2001:DB8:0:0::1]", "2001:db8::1", 443, None),
        ("2001:db8::1", "2001:db8::1", 443, None),
        ("192.0.2.7", "192.0.2.7", 443, None),
        ("192.0.2.7:4443", "192.0.2.7", 4443, None),
        (
            "https://www.example.test:444/path?q=1",
            "www.example.test",
            444,
            "www.example.test",
        ),
        ("HTTPS://www.example.test/", "www.example.test", 443, "www.example.test"),
        ("https://[::1]:8443/", "::1", 8443, None),
        ("bücher.example", "xn--bcher-kva.example", 443, "xn--bcher-kva.example"),
        ("ÄÖÜ.example:8443", "xn--4ca0bs.example", 8443, "xn--4ca0bs.example"),
        ("_acme.internal.test", "_acme.internal.test", 443, "_acme.internal.test"),
    ],
)
def test_parse_target_accepted_forms(
    text: str, host: str, port: int, server_name: str | None
) -> None:
    endpoint = parse_target(text)

    assert endpoint.host == host
    assert endpoint.port == port
    assert endpoint.server_name == server_name
    assert endpoint.target == text


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "Empty target"),
        ("   ", "Empty target"),
        ("host.test:0", "Invalid port '0'"),
        ("host.test:65536", "Invalid port '65536'"),
        ("host.test:http", "Invalid port 'http'"),
        ("[2001:db8::1", "Missing ']'"),
        ("[2001:db8::1]x", "Unexpected text 'x'"),
        ("ftp://host.test", "Unsupported scheme 'ftp'"),
        ("https://", "Missing host"),
        ("a..b.test", "Invalid host name 'a..b.test'"),
        ("-bad.test", "Invalid host name '-bad.test'"),
        ("999.1.1.1", "neither an IPv4 address nor a host name"),
        ("fe80::1%eth0", "Zone index"),
        ("a" * 64 + ".test", "at most 63 characters"),
        ("bad host.test", "Invalid host name 'bad host.test'"),
    ],
)
def test_parse_target_invalid_names_value(text: str, message: str) -> None:
    with pytest.raises(TargetError, match=message):
        parse_target(text)


def test_parse_resolve_keeps_name_and_pins_address() -> None:
    assert parse_resolve("www.example.test:443:127.0.0.2") == (
        "www.example.test",
        443,
        ("127.0.0.2",),
    )
    assert parse_resolve("www.example.test:8443:[::1]") == (
        "www.example.test",
        8443,
        ("::1",),
    )


def test_parse_resolve_several_addresses() -> None:
    assert parse_resolve("WWW.example.test:443:127.0.0.2,[0::1],127.0.0.2") == (
        "www.example.test",
        443,
        ("127.0.0.2", "::1"),
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("www.example.test:443", "use NAME:PORT:ADDRESS"),
        ("www.example.test:443:not-an-address", "Invalid address 'not-an-address'"),
        ("www.example.test:x:127.0.0.1", "Invalid port 'x'"),
    ],
)
def test_parse_resolve_invalid(text: str, message: str) -> None:
    with pytest.raises(TargetError, match=message):
        parse_resolve(text)


def test_apply_overrides_pins_only_matching_name_and_port() -> None:
    overrides = {("www.example.test", 443): "127.0.0.2"}

    pinned = apply_overrides(parse_target("www.example.test"), overrides)
    other_port = apply_overrides(parse_target("www.example.test:8443"), overrides)

    assert pinned == Endpoint(
        target="www.example.test",
        host="www.example.test",
        port=443,
        server_name="www.example.test",
        address="127.0.0.2",
    )
    assert other_port.address is None
