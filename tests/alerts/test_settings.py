"""Delivery settings from the environment and the TOML config file."""

from __future__ import annotations

import os
import re
from datetime import timedelta
from pathlib import Path

import pytest
from tests.alerts.conftest import SmtpPki

from certwatch.alerts import (
    DeliverySettingsError,
    RetryPolicy,
    SmtpSecurity,
    SmtpSettings,
    WebhookSettings,
    load_delivery_settings,
)
from certwatch.alerts.settings import MAX_CONFIG_BYTES, private_receivers_allowed
from certwatch.web.settings import load_web_settings

SMTP_ENV = {
    "CERTWATCH_SMTP_HOST": "smtp.example.test",
    "CERTWATCH_SMTP_FROM": "certwatch@example.test",
}

SMTP_FILE = "[smtp]\nhost = 'smtp.example.test'\nfrom = 'a@example.test'\n"


def _config(tmp_path: Path, text: str) -> dict[str, str]:
    path = tmp_path / "certwatch.toml"
    path.write_text(text, encoding="utf-8")
    return {"CERTWATCH_CONFIG": str(path)}


def test_settings_defaults_without_smtp() -> None:
    settings = load_delivery_settings({})

    assert settings.smtp is None
    assert settings.webhook == WebhookSettings(timeout=10.0, ca_file=None, proxy=None)
    assert settings.retry == RetryPolicy()


def test_settings_smtp_from_environment(smtp_pki: SmtpPki) -> None:
    environ = {
        **SMTP_ENV,
        "CERTWATCH_SMTP_PORT": "2525",
        "CERTWATCH_SMTP_SECURITY": "TLS",
        "CERTWATCH_SMTP_USERNAME": "certwatch",
        "CERTWATCH_SMTP_PASSWORD": "pw",
        "CERTWATCH_SMTP_TIMEOUT": "12.5",
        "CERTWATCH_SMTP_CA_FILE": str(smtp_pki.ca_file),
        "CERTWATCH_WEBHOOK_TIMEOUT": "3",
        "CERTWATCH_WEBHOOK_PROXY": "http://proxy.example.test:3128",
    }

    settings = load_delivery_settings(environ)

    assert settings.smtp == SmtpSettings(
        host="smtp.example.test",
        sender="certwatch@example.test",
        port=2525,
        security=SmtpSecurity.TLS,
        username="certwatch",
        password="pw",
        timeout=12.5,
        ca_file=smtp_pki.ca_file,
    )
    assert settings.webhook.timeout == 3.0
    assert settings.webhook.proxy == "http://proxy.example.test:3128"


@pytest.mark.parametrize(
    ("security", "port"),
    [("starttls", 587), ("tls", 465)],
)
def test_settings_default_port_per_security(security: str, port: int) -> None:
    environ = {**SMTP_ENV, "CERTWATCH_SMTP_SECURITY": security}

    smtp = load_delivery_settings(environ).smtp

    assert smtp is not None
    assert smtp.port is None
    assert smtp.server_port == port


def test_settings_plain_on_loopback_allowed() -> None:
    environ = {
        "CERTWATCH_SMTP_HOST": "localhost",
        "CERTWATCH_SMTP_FROM": "certwatch@example.test",
        "CERTWATCH_SMTP_SECURITY": "plain",
    }

    smtp = load_delivery_settings(environ).smtp

    assert smtp is not None
    assert smtp.server_port == 25


def test_settings_sender_with_display_name() -> None:
    environ = {**SMTP_ENV, "CERTWATCH_SMTP_FROM": "Cert Watch <certwatch@Example.TEST>"}

    smtp = load_delivery_settings(environ).smtp

    assert smtp is not None
    assert smtp.sender == "Cert Watch <certwatch@example.test>"
    assert smtp.sender_address == "certwatch@example.test"


def test_settings_password_not_in_repr() -> None:
    environ = {
        **SMTP_ENV,
        "CERTWATCH_SMTP_USERNAME": "certwatch",
        "CERTWATCH_SMTP_PASSWORD": "hunter2-secret",
        "CERTWATCH_WEBHOOK_PROXY": "http://user:proxysecret@proxy.example.test:3128",
    }

    settings = load_delivery_settings(environ)

    assert "hunter2-secret" not in repr(settings)
    assert "proxysecret" not in repr(settings)


def test_settings_file_with_environment_override(
    tmp_path: Path, smtp_pki: SmtpPki
) -> None:
    (tmp_path / "ca").mkdir()
    (tmp_path / "ca" / "root.pem").write_bytes(smtp_pki.ca_file.read_bytes())
    environ = _config(
        tmp_path,
        '[smtp]\nhost = "file.example.test"\nport = 2525\nfrom = "a@example.test"\n'
        'ca_file = "ca/root.pem"\n\n[webhook]\ntimeout = 4\n',
    )
    environ["CERTWATCH_SMTP_HOST"] = "env.example.test"

    settings = load_delivery_settings(environ)

    assert settings.smtp is not None
    assert settings.smtp.host == "env.example.test"
    assert settings.smtp.port == 2525
    assert settings.smtp.sender == "a@example.test"
    # A relative path in the file is relative to the file's folder.
    assert settings.smtp.ca_file == tmp_path / "ca" / "root.pem"
    assert settings.webhook.timeout == 4.0


def test_settings_file_other_sections_left_alone(tmp_path: Path) -> None:
    environ = _config(tmp_path, '[monitor]\ninterval = "6h"\n')

    settings = load_delivery_settings(environ, other_sections=("monitor",))

    assert settings.smtp is None


def test_settings_empty_variable_counts_as_unset() -> None:
    settings = load_delivery_settings({"CERTWATCH_SMTP_HOST": "  "})

    assert settings.smtp is None


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        (
            {"CERTWATCH_SMTP_FROM": "a@example.test"},
            r"CERTWATCH_SMTP_FROM is set but CERTWATCH_SMTP_HOST \(smtp\.host in the "
            r"config file\) is not",
        ),
        (
            {"CERTWATCH_SMTP_HOST": "smtp.example.test"},
            r"CERTWATCH_SMTP_FROM \(smtp\.from in the config file\) is missing: set "
            r"the address alerts are sent from",
        ),
        (
            {**SMTP_ENV, "CERTWATCH_SMTP_SECURITY": "plain"},
            r"CERTWATCH_SMTP_SECURITY: plain SMTP .* only to a loopback host, and the "
            r"host is 'smtp\.example\.test'; use starttls or tls\.",
        ),
        (
            {**SMTP_ENV, "CERTWATCH_SMTP_SECURITY": "ssl"},
            r"CERTWATCH_SMTP_SECURITY: invalid SMTP security 'ssl'; use one of "
            r"starttls, tls, plain\.",
        ),
        (
            {**SMTP_ENV, "CERTWATCH_SMTP_PORT": "70000"},
            r"CERTWATCH_SMTP_PORT: invalid port 70000; give a number from 1 to 65535\.",
        ),
        (
            {**SMTP_ENV, "CERTWATCH_SMTP_PORT": "0"},
            r"CERTWATCH_SMTP_PORT: invalid port 0",
        ),
        (
            {**SMTP_ENV, "CERTWATCH_SMTP_PORT": "smtp"},
            r"CERTWATCH_SMTP_PORT: invalid port 'smtp'",
        ),
        (
            {**SMTP_ENV, "CERTWATCH_SMTP_FROM": "not an address"},
            r"CERTWATCH_SMTP_FROM: invalid From address 'not an address'; give an "
            r"address such as certwatch@example\.test",
        ),
        (
            {**SMTP_ENV, "CERTWATCH_SMTP_FROM": "certwatch@"},
            r"CERTWATCH_SMTP_FROM: invalid From address 'certwatch@'",
        ),
        (
            {**SMTP_ENV, "CERTWATCH_SMTP_PASSWORD": "pw"},
            r"CERTWATCH_SMTP_PASSWORD is set without a user name: set "
            r"CERTWATCH_SMTP_USERNAME too",
        ),
        (
            {**SMTP_ENV, "CERTWATCH_SMTP_USERNAME": "certwatch"},
            r"CERTWATCH_SMTP_USERNAME is set without a password",
        ),
        (
            {**SMTP_ENV, "CERTWATCH_SMTP_TIMEOUT": "0"},
            r"CERTWATCH_SMTP_TIMEOUT: invalid timeout 0\.0; give a number of seconds",
        ),
        (
            {**SMTP_ENV, "CERTWATCH_SMTP_TIMEOUT": "601"},
            r"invalid timeout 601\.0; give a number of seconds from 0\.1 to 600\.",
        ),
        (
            {**SMTP_ENV, "CERTWATCH_SMTP_TIMEOUT": "soon"},
            r"CERTWATCH_SMTP_TIMEOUT: invalid number 'soon'",
        ),
        (
            {**SMTP_ENV, "CERTWATCH_SMTP_HOST": "smtp example.test"},
            r"CERTWATCH_SMTP_HOST: invalid SMTP host 'smtp example\.test'",
        ),
        (
            {**SMTP_ENV, "CERTWATCH_SMTP_CA_FILE": "/nonexistent/ca.pem"},
            r"CERTWATCH_SMTP_CA_FILE: the CA file '/nonexistent/ca\.pem' does not "
            r"exist",
        ),
        (
            {"CERTWATCH_WEBHOOK_TIMEOUT": "-1"},
            r"CERTWATCH_WEBHOOK_TIMEOUT: invalid timeout -1\.0",
        ),
        (
            {"CERTWATCH_WEBHOOK_TIMEOUT": "1e-300"},
            r"CERTWATCH_WEBHOOK_TIMEOUT: invalid timeout 1e-300; give a number of "
            r"seconds from 0\.1 to 600\.",
        ),
        (
            {**SMTP_ENV, "CERTWATCH_SMTP_TIMEOUT": "0.09"},
            r"CERTWATCH_SMTP_TIMEOUT: invalid timeout 0\.09; .* from 0\.1 to 600",
        ),
        (
            {"CERTWATCH_WEBHOOK_TIMEOUT": "nan"},
            r"CERTWATCH_WEBHOOK_TIMEOUT: invalid timeout nan",
        ),
        (
            {"CERTWATCH_WEBHOOK_TIMEOUT": "inf"},
            r"CERTWATCH_WEBHOOK_TIMEOUT: invalid timeout inf",
        ),
        (
            {"CERTWATCH_WEBHOOK_PROXY": "socks5://proxy.example.test:1080"},
            r"CERTWATCH_WEBHOOK_PROXY: invalid proxy URL; give http://HOST:PORT",
        ),
        (
            {"CERTWATCH_WEBHOOK_PROXY": "http://proxy.example.test:notaport"},
            r"CERTWATCH_WEBHOOK_PROXY: invalid proxy URL",
        ),
        (
            {"CERTWATCH_CONFIG": "/nonexistent/certwatch.toml"},
            r"CERTWATCH_CONFIG: cannot read the config file "
            r"'/nonexistent/certwatch\.toml'",
        ),
    ],
)
def test_settings_environment_rejects(environ: dict[str, str], message: str) -> None:
    with pytest.raises(DeliverySettingsError, match=message):
        load_delivery_settings(environ)


def test_settings_timeout_minimum_accepted() -> None:
    settings = load_delivery_settings({"CERTWATCH_WEBHOOK_TIMEOUT": "0.1"})

    assert settings.webhook.timeout == 0.1


def test_webhook_settings_built_directly_reject_tiny_timeout() -> None:
    with pytest.raises(DeliverySettingsError, match=r"invalid timeout 1e-300"):
        WebhookSettings(timeout=1e-300)


def test_settings_config_not_regular_file(tmp_path: Path) -> None:
    fifo = tmp_path / "certwatch.fifo"
    os.mkfifo(fifo)

    for path in (str(fifo), "/dev/zero", str(tmp_path)):
        with pytest.raises(
            DeliverySettingsError,
            match=rf"CERTWATCH_CONFIG: '{re.escape(path)}' is not a regular file; "
            r"give the path of a TOML file or unset CERTWATCH_CONFIG\.",
        ):
            load_delivery_settings({"CERTWATCH_CONFIG": path})


def test_settings_config_too_large(tmp_path: Path) -> None:
    path = tmp_path / "certwatch.toml"
    path.write_text("# padding\n" * (MAX_CONFIG_BYTES // 10 + 1), encoding="utf-8")

    with pytest.raises(
        DeliverySettingsError,
        match=rf"CERTWATCH_CONFIG: the config file '{re.escape(str(path))}' is "
        r"larger than 1,048,576 bytes",
    ):
        load_delivery_settings({"CERTWATCH_CONFIG": str(path)})


def test_settings_config_at_size_limit(tmp_path: Path) -> None:
    path = tmp_path / "certwatch.toml"
    text = "[webhook]\ntimeout = 4\n"
    path.write_text(text + "#" * (MAX_CONFIG_BYTES - len(text)), encoding="utf-8")

    settings = load_delivery_settings({"CERTWATCH_CONFIG": str(path)})

    assert settings.webhook.timeout == 4.0


def test_settings_config_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "certwatch.toml"
    path.write_bytes(b"[webhook]\n# caf\xe9\n")

    with pytest.raises(
        DeliverySettingsError, match=r"certwatch\.toml: invalid TOML \(not UTF-8"
    ):
        load_delivery_settings({"CERTWATCH_CONFIG": str(path)})


@pytest.mark.parametrize(
    ("environ", "allowed"),
    [
        ({}, True),
        ({"CERTWATCH_WEB_SIGNUP": "invite"}, True),
        ({"CERTWATCH_WEB_SIGNUP": "open"}, False),
        ({"CERTWATCH_WEB_SIGNUP": " Open "}, False),
        (
            {"CERTWATCH_WEB_SIGNUP": "open", "CERTWATCH_ALLOW_PRIVATE_TARGETS": ""},
            False,
        ),
        (
            {"CERTWATCH_WEB_SIGNUP": "open", "CERTWATCH_ALLOW_PRIVATE_TARGETS": "1"},
            True,
        ),
        ({"CERTWATCH_ALLOW_PRIVATE_TARGETS": "false"}, False),
        ({"CERTWATCH_ALLOW_PRIVATE_TARGETS": "Off"}, False),
        ({"CERTWATCH_ALLOW_PRIVATE_TARGETS": "yes"}, True),
    ],
)
def test_private_receivers_allowed_as_serve_reads(
    environ: dict[str, str], allowed: bool
) -> None:
    assert private_receivers_allowed(environ) is allowed
    # `serve` reads the setting through the web settings: both must agree.
    assert load_web_settings(environ).allow_private_targets is allowed


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        (
            {"CERTWATCH_ALLOW_PRIVATE_TARGETS": "maybe"},
            r"CERTWATCH_ALLOW_PRIVATE_TARGETS='maybe' is not true or false",
        ),
        (
            {"CERTWATCH_WEB_SIGNUP": "everyone"},
            r"CERTWATCH_WEB_SIGNUP='everyone' is not a sign-up mode",
        ),
    ],
)
def test_private_receivers_allowed_rejects(
    environ: dict[str, str], message: str
) -> None:
    with pytest.raises(DeliverySettingsError, match=message):
        private_receivers_allowed(environ)


def test_settings_ca_file_without_certificate(tmp_path: Path) -> None:
    empty = tmp_path / "empty.pem"
    empty.write_text("no certificate here\n", encoding="utf-8")
    environ = {**SMTP_ENV, "CERTWATCH_SMTP_CA_FILE": str(empty)}

    with pytest.raises(
        DeliverySettingsError,
        match=r"CERTWATCH_SMTP_CA_FILE: Invalid CA file .*give a readable file of PEM",
    ):
        load_delivery_settings(environ)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "[smtp]\nhots = 'x'\n",
            r": unknown key 'smtp\.hots'; \[smtp\] may contain host",
        ),
        (
            "[smpt]\nhost = 'x'\n",
            r": unknown key 'smpt'; the file may contain the sections",
        ),
        ("timeout = 3\n", r": unknown key 'timeout'"),
        ("[smtp\nhost = 'x'\n", r": invalid TOML \(.*\); fix the file\."),
        (
            SMTP_FILE + "port = '25x'\n",
            r"certwatch\.toml: smtp\.port: invalid port '25x'",
        ),
        (
            SMTP_FILE + "port = true\n",
            r"certwatch\.toml: smtp\.port: invalid port True",
        ),
        (
            "[smtp]\nhost = 25\nfrom = 'a@example.test'\n",
            r"certwatch\.toml: smtp\.host: invalid value 25; give a string\.",
        ),
        (
            SMTP_FILE + "security = 'plain'\n",
            r"certwatch\.toml: smtp\.security: plain SMTP",
        ),
        (
            "[webhook]\ntimeout = 'fast'\n",
            r"certwatch\.toml: webhook\.timeout: invalid number 'fast'",
        ),
    ],
)
def test_settings_file_rejects(tmp_path: Path, text: str, message: str) -> None:
    environ = _config(tmp_path, text)

    with pytest.raises(DeliverySettingsError, match=message) as caught:
        load_delivery_settings(environ)

    assert str(tmp_path / "certwatch.toml") in str(caught.value)


def test_settings_file_password_error_hides_value(tmp_path: Path) -> None:
    environ = _config(
        tmp_path,
        SMTP_FILE + "password = 'file-secret'\n",
    )

    with pytest.raises(DeliverySettingsError) as caught:
        load_delivery_settings(environ)

    assert "smtp.password is set without a user name" in str(caught.value)
    assert "file-secret" not in str(caught.value)


def test_smtp_settings_checked_when_built_directly() -> None:
    with pytest.raises(DeliverySettingsError, match=r"only to a loopback host"):
        SmtpSettings(
            host="smtp.example.test",
            sender="certwatch@example.test",
            security=SmtpSecurity.PLAIN,
        )


def test_retry_policy_rejects() -> None:
    with pytest.raises(DeliverySettingsError, match=r"first delay must be positive"):
        RetryPolicy(first_delay=timedelta(0))
    with pytest.raises(DeliverySettingsError, match=r"at most the maximum delay"):
        RetryPolicy(first_delay=timedelta(hours=2), max_delay=timedelta(hours=1))
    with pytest.raises(DeliverySettingsError, match=r"give a share from 0 to 1"):
        RetryPolicy(jitter=1.5)
