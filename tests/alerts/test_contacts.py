"""Contact parsing, normalisation and redaction."""

from __future__ import annotations

import pytest

from certwatch.alerts import ContactError, ContactKind, parse_contact
from certwatch.alerts.contacts import is_loopback_host, redact_url


@pytest.mark.parametrize(
    ("text", "kind", "value"),
    [
        ("email:ops@example.test", ContactKind.EMAIL, "ops@example.test"),
        (
            "  EMAIL: Ops.Team+certs@Example.TEST ",
            ContactKind.EMAIL,
            "Ops.Team+certs@example.test",
        ),
        ("email:ops@bücher.example", ContactKind.EMAIL, "ops@xn--bcher-kva.example"),
        ("email:root@localhost", ContactKind.EMAIL, "root@localhost"),
        (
            "webhook:https://alerts.example.test/certwatch?team=web",
            ContactKind.WEBHOOK,
            "https://alerts.example.test/certwatch?team=web",
        ),
        (
            "webhook:HTTP://alerts.example.test:8080/hook",
            ContactKind.WEBHOOK,
            "http://alerts.example.test:8080/hook",
        ),
        (
            "slack:https://hooks.slack.com/services/T0/B0/abc",
            ContactKind.SLACK,
            "https://hooks.slack.com/services/T0/B0/abc",
        ),
        (
            "slack:http://127.0.0.1:9000/relay",
            ContactKind.SLACK,
            "http://127.0.0.1:9000/relay",
        ),
        (
            "teams:https://prod.example.test/workflows/1/invoke?sig=x",
            ContactKind.TEAMS,
            "https://prod.example.test/workflows/1/invoke?sig=x",
        ),
        (
            "webhook:http://[::1]:8080/hook",
            ContactKind.WEBHOOK,
            "http://[::1]:8080/hook",
        ),
    ],
)
def test_parse_contact_accepts(text: str, kind: ContactKind, value: str) -> None:
    contact = parse_contact(text)

    assert contact.kind is kind
    assert contact.value == value
    assert parse_contact(contact.text) == contact


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "ops@example.test",
            r"Invalid contact 'ops@example\.test': start it with its kind",
        ),
        ("pager:12345", r"Invalid contact kind 'pager': use one of email, webhook"),
        ("email:", r"give an address after 'email:', such as email:ops@example\.test"),
        ("email:ops", r"Invalid email address 'ops': give local@domain"),
        ("email:@example.test", r"give local@domain"),
        ("email:ops@", r"give local@domain"),
        ("email:o..ps@example.test", r"the part before @ must be"),
        ("email:.ops@example.test", r"the part before @ must be"),
        (
            "email:" + "a" * 65 + "@example.test",
            r"the part before @ must be at most 64",
        ),
        ("email:ops@exa mple.test", r"is not a valid host name"),
        ("email:ops@-bad.test", r"is not a valid host name"),
        ("email:ops@[127.0.0.1]", r"not an address literal"),
        ("email:" + "a" * 60 + "@" + ".".join(["b" * 60] * 4), r"longer than 254"),
        ("webhook:ftp://files.example.test/x", r"it must start with https://"),
        ("webhook:alerts.example.test/hook", r"it must start with https://"),
        ("webhook:https:///path-only", r"it has no host"),
        (
            "webhook:https://user:pw@alerts.example.test/x",
            r"contains a user name or password",
        ),
        ("webhook:https://alerts.example.test/x#frag", r"the #fragment is never sent"),
        ("webhook:https://alerts.example.test:99999/x", r"Invalid webhook URL"),
        ("webhook:https://alerts.example.test:0/x", r"port 0 is invalid"),
        ("webhook:https://[::1/x", r"Invalid webhook URL"),
        ("slack:http://hooks.slack.example/services/x", r"slack webhooks use https"),
        ("teams:http://teams.example.test/x", r"teams webhooks use https"),
        ("email:ops@example.test\nBcc: x@example.test", r"control character '\\n' at"),
        ("webhook:https://a.example.test/\x00", r"control character '\\x00'"),
        ("webhook:https://a.example.test/" + "x" * 2100, r"at most 2048 are accepted"),
    ],
)
def test_parse_contact_rejects(text: str, message: str) -> None:
    with pytest.raises(ContactError, match=message):
        parse_contact(text)


def test_parse_contact_error_hides_url_secrets() -> None:
    with pytest.raises(ContactError) as caught:
        parse_contact("slack:http://hooks.slack.example/services/T0/B0/s3cr3tpath")

    assert "s3cr3tpath" not in str(caught.value)
    assert "http://hooks.slack.example/services/…" in str(caught.value)


def test_parse_contact_long_error_hides_url() -> None:
    with pytest.raises(ContactError) as caught:
        parse_contact("slack:https://hooks.slack.com/services/T0/" + "s" * 2100)

    assert "hooks.slack.com" not in str(caught.value)


@pytest.mark.parametrize(
    ("text", "redacted"),
    [
        ("email:ops@example.test", "email:ops@example.test"),
        (
            "slack:https://hooks.slack.com/services/T000/B000/XXXX",
            "slack:https://hooks.slack.com/services/…",
        ),
        (
            "teams:https://prod-01.example.test:443/workflows/abc/triggers?sig=SECRET",
            "teams:https://prod-01.example.test:443/workflows/…?…",
        ),
        (
            "webhook:https://alerts.example.test/",
            "webhook:https://alerts.example.test/",
        ),
        ("webhook:https://alerts.example.test", "webhook:https://alerts.example.test/"),
        (
            "webhook:https://alerts.example.test/0123456789abcdef0123",
            "webhook:https://alerts.example.test/…",
        ),
        (
            "webhook:https://alerts.example.test/averyveryverylongsegment/x",
            "webhook:https://alerts.example.test/…",
        ),
        ("webhook:http://[::1]:8080/hook/token", "webhook:http://[::1]:8080/hook/…"),
    ],
)
def test_contact_redacted(text: str, redacted: str) -> None:
    contact = parse_contact(text)

    assert contact.redacted() == redacted
    assert repr(contact) == f"ContactAddress({redacted!r})"


def test_redact_url_drops_password_and_query() -> None:
    shown = redact_url("https://user:hunter2@proxy.example.test:3128/a/b?c=d")

    assert shown == "https://proxy.example.test:3128/a/…?…"


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("localhost", True),
        ("LOCALHOST.", True),
        ("mail.localhost", True),
        ("127.0.0.1", True),
        ("127.5.6.7", True),
        ("::1", True),
        ("[::1]", True),
        ("10.0.0.1", False),
        ("smtp.example.test", False),
        ("localhost.example.test", False),
    ],
)
def test_is_loopback_host(host: str, loopback: bool) -> None:
    assert is_loopback_host(host) is loopback
