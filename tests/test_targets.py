import pytest

from certwatch.errors import TargetError
from certwatch.targets import (
    PROTOCOLS,
    SCHEME_PORTS,
    STARTTLS_PROTOCOLS,
    WELL_KNOWN_PORTS,
    Endpoint,
    apply_overrides,
    parse_resolve,
    parse_target,
    protocol_names,
)


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
        ("0xcafe.example.test", "0xcafe.example.test", 443, "0xcafe.example.test"),
        ("api.0x1.test", "api.0x1.test", 443, "api.0x1.test"),
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
        ("gopher://host.test", "Unsupported scheme 'gopher'"),
        ("smtp://host.test:0", "Invalid port 0"),
        ("imap://", "Missing host"),
        ("https://", "Missing host"),
        ("a..b.test", "Invalid host name 'a..b.test'"),
        (
            "host.test..",
            r"Invalid host name 'host\.test\.\.' in 'host\.test\.\.': a label is "
            r"empty, because of a leading dot or two dots in a row\. Remove the "
            r"extra dot\.",
        ),
        ("host.test..:8443", r"'host\.test\.\.' in 'host\.test\.\.:8443': a label"),
        (".host.test", r"Invalid host name '\.host\.test' in '\.host\.test': a label"),
        ("https://host.test../", r"'host\.test\.\.' in 'https://host\.test\.\./'"),
        ("..", r"Invalid host name '\.\.' in '\.\.': a label is empty"),
        ("127.1", "neither an IPv4 address nor a host name"),
        ("2130706433", "neither an IPv4 address nor a host name"),
        (
            "0x7f000001",
            r"Invalid address '0x7f000001' in '0x7f000001': it is neither an IPv4 "
            r"address nor a host name\.",
        ),
        ("0X7F000001:8443", r"Invalid address '0X7F000001' in '0X7F000001:8443'"),
        ("127.0x1", "neither an IPv4 address nor a host name"),
        ("https://0x7f000001/", "neither an IPv4 address nor a host name"),
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


@pytest.mark.parametrize(
    ("name", "port"),
    [
        ("smtp", 25),
        ("submission", 587),
        ("imap", 143),
        ("pop3", 110),
        ("ftp", 21),
        ("ldap", 389),
        ("xmpp", 5222),
        ("xmpp-server", 5269),
        ("postgres", 5432),
        ("mysql", 3306),
        ("sieve", 4190),
        ("nntp", 119),
        ("smtps", 465),
        ("imaps", 993),
        ("pop3s", 995),
        ("ldaps", 636),
        ("https", 443),
        ("ftps", 990),
    ],
)
def test_parse_target_scheme_default_port(name: str, port: int) -> None:
    endpoint = parse_target(f"{name}://mail.example.test")

    assert endpoint.protocol == name
    assert endpoint.port == port
    assert SCHEME_PORTS[name] == port


def test_protocols_table_consistent() -> None:
    names = [protocol.name for protocol in PROTOCOLS]

    assert len(names) == len(set(names))
    assert set(SCHEME_PORTS) == set(names)
    starttls = set(STARTTLS_PROTOCOLS)
    assert starttls == {
        "smtp",
        "submission",
        "imap",
        "pop3",
        "ftp",
        "ldap",
        "xmpp",
        "xmpp-server",
        "postgres",
        "mysql",
        "sieve",
        "nntp",
    }
    assert set(WELL_KNOWN_PORTS.values()) == set(names) - {"tls"}


@pytest.mark.parametrize(
    ("text", "protocol", "host", "port"),
    [
        ("smtp://mail.example.test:2525", "smtp", "mail.example.test", 2525),
        ("SMTP://Mail.Example.TEST:2525/", "smtp", "mail.example.test", 2525),
        ("xmpp-server://chat.example.test", "xmpp-server", "chat.example.test", 5269),
        ("ldap://[::1]", "ldap", "::1", 389),
        ("ldap://[2001:DB8::1]:1389", "ldap", "2001:db8::1", 1389),
        ("imap://bücher.example", "imap", "xn--bcher-kva.example", 143),
        ("postgres://192.0.2.7", "postgres", "192.0.2.7", 5432),
        ("tls://www.example.test", "https", "www.example.test", 443),
    ],
)
def test_parse_target_protocol_urls(
    text: str, protocol: str, host: str, port: int
) -> None:
    endpoint = parse_target(text)

    assert endpoint.protocol == protocol
    assert endpoint.host == host
    assert endpoint.port == port
    assert endpoint.target == text


@pytest.mark.parametrize(
    ("text", "protocol", "expected_protocol", "port"),
    [
        ("mail.example.test", "smtp", "smtp", 25),
        ("mail.example.test:2525", "smtp", "smtp", 2525),
        ("[::1]", "imap", "imap", 143),
        ("2001:db8::1", "ldap", "ldap", 389),
        ("www.example.test", "tls", "https", 443),
        ("imap://mail.example.test", "smtp", "imap", 143),
        ("https://mail.example.test:25", "auto", "https", 25),
    ],
)
def test_parse_target_protocol_option(
    text: str, protocol: str, expected_protocol: str, port: int
) -> None:
    endpoint = parse_target(text, protocol)

    assert endpoint.protocol == expected_protocol
    assert endpoint.port == port


@pytest.mark.parametrize(
    ("text", "protocol", "port"),
    [
        ("mail.example.test:25", "smtp", 25),
        ("mail.example.test:587", "submission", 587),
        ("mail.example.test:993", "imaps", 993),
        ("mail.example.test:110", "pop3", 110),
        ("[::1]:5222", "xmpp", 5222),
        ("192.0.2.7:5432", "postgres", 5432),
        ("www.example.test", "https", 443),
        ("www.example.test:8443", "https", 8443),
    ],
)
def test_parse_target_auto_protocol_from_port(
    text: str, protocol: str, port: int
) -> None:
    endpoint = parse_target(text, "auto")

    assert endpoint.protocol == protocol
    assert endpoint.port == port


def test_parse_target_unknown_protocol_lists_names() -> None:
    with pytest.raises(TargetError, match="Unknown protocol 'gopher'") as raised:
        parse_target("mail.example.test", "gopher")

    assert protocol_names() in str(raised.value)
    assert "auto, ftp, ftps, https, imap" in protocol_names()


def test_apply_overrides_keeps_protocol() -> None:
    endpoint = parse_target("xmpp://chat.example.test")

    pinned = apply_overrides(endpoint, {("chat.example.test", 5222): "127.0.0.2"})

    assert pinned.protocol == "xmpp"
    assert pinned.address == "127.0.0.2"
    assert pinned.server_name == "chat.example.test"
