"""Bench certificates: one root, one intermediate and a leaf per endpoint.

Every key is ECDSA P-256, which keeps the server's handshake cheap. Leaf `i`
is issued by the intermediate for `host{i}.bench.test` and is valid from one
day before `now` for 90 days, so the analysis judges each leaf `ok`. The
server presents leaf and intermediate, and the root is the only trust anchor.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

LEAF_LIFETIME = timedelta(days=90)
CA_LIFETIME = timedelta(days=3650)
BACKDATE = timedelta(days=1)


@dataclass(frozen=True)
class BenchPki:
    """The folder of the bench certificates and the number of leaves in it.

    `root_der` is the root certificate in DER, the trust anchor for the scan.
    """

    directory: Path
    count: int

    @property
    def root_der(self) -> Path:
        return self.directory / "root.der"


def leaf_file(directory: Path, index: int) -> Path:
    """Return the PEM file with the key, leaf `index` and the intermediate.

    The file is ready for `SSLContext.load_cert_chain`.
    """
    return directory / f"leaf{index}.pem"


def server_name(index: int) -> str:
    """Return the host name that leaf `index` is issued for."""
    return f"host{index}.bench.test"


def write_bench_pki(directory: Path, count: int, now: datetime) -> BenchPki:
    """Make a root, an intermediate and `count` leaves, and write them to files."""
    root_key = ec.generate_private_key(ec.SECP256R1())
    root = _issue_ca("certwatch bench root", root_key, None, root_key, now)
    intermediate_key = ec.generate_private_key(ec.SECP256R1())
    intermediate = _issue_ca(
        "certwatch bench intermediate", intermediate_key, root, root_key, now
    )
    intermediate_pem = intermediate.public_bytes(serialization.Encoding.PEM)

    pki = BenchPki(directory=directory, count=count)
    pki.root_der.write_bytes(root.public_bytes(serialization.Encoding.DER))

    for index in range(count):
        key = ec.generate_private_key(ec.SECP256R1())
        leaf = _issue_leaf(server_name(index), key, intermediate, intermediate_key, now)
        leaf_file(directory, index).write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
            + leaf.public_bytes(serialization.Encoding.PEM)
            + intermediate_pem
        )
    return pki


def _issue_ca(
    common_name: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: x509.Certificate | None,
    issuer_key: ec.EllipticCurvePrivateKey,
    now: datetime,
) -> x509.Certificate:
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    builder = (
        _base_builder(subject, key, issuer, now, CA_LIFETIME)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    )
    return builder.sign(issuer_key, hashes.SHA256())


def _issue_leaf(
    name: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: x509.Certificate,
    issuer_key: ec.EllipticCurvePrivateKey,
    now: datetime,
) -> x509.Certificate:
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    builder = (
        _base_builder(subject, key, issuer, now, LEAF_LIFETIME)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False
        )
    )
    return builder.sign(issuer_key, hashes.SHA256())


def _base_builder(
    subject: x509.Name,
    key: ec.EllipticCurvePrivateKey,
    issuer: x509.Certificate | None,
    now: datetime,
    lifetime: timedelta,
) -> x509.CertificateBuilder:
    """Start a certificate with validity, serial and key identifiers set.

    A self-signed certificate (`issuer` is `None`) carries no authority key
    identifier. Any other carries the issuer's subject key identifier.
    """
    public_key = key.public_key()
    not_before = now.replace(microsecond=0) - BACKDATE
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject if issuer is None else issuer.subject)
        .public_key(public_key)
        .serial_number(secrets.randbits(127) | 1)
        .not_valid_before(not_before)
        .not_valid_after(not_before + lifetime)
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False
        )
    )
    if issuer is None:
        return builder
    issuer_ski = issuer.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
    return builder.add_extension(
        x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(
            issuer_ski.value
        ),
        critical=False,
    )
