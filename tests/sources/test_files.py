"""Tests for reading certificates from files and folders.

Every file is written into `tmp_path` from certificates that trustme makes,
so no fixture file is stored in the repository.
"""

from __future__ import annotations

import base64
import os
import stat
from pathlib import Path

import pytest
import trustme
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs7, pkcs12

from certwatch.sources import files
from certwatch.sources.files import (
    MAX_FILE_BYTES,
    FileProblem,
    StoredCertificate,
    parse_certificate_data,
    read_path,
)

DER = serialization.Encoding.DER
PEM = serialization.Encoding.PEM

# X509_CERT_AUX as OpenSSL appends it in a TRUSTED CERTIFICATE block:
# SEQUENCE { SEQUENCE OF { OID serverAuth } }.
TRUST_AUX = bytes.fromhex("300c300a06082b06010505070301")

PASSWORD_HINT = "--pkcs12-password or the CERTWATCH_PKCS12_PASSWORD environment"


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def leaves(ca: trustme.CA) -> list[trustme.LeafCert]:
    return [ca.issue_cert(f"host{number}.example.test") for number in range(3)]


@pytest.fixture(scope="module")
def certs(leaves: list[trustme.LeafCert]) -> list[x509.Certificate]:
    return [
        x509.load_pem_x509_certificate(leaf.cert_chain_pems[0].bytes())
        for leaf in leaves
    ]


@pytest.fixture(scope="module")
def ders(certs: list[x509.Certificate]) -> list[bytes]:
    return [cert.public_bytes(DER) for cert in certs]


def pem_block(label: str, der: bytes, newline: str = "\n") -> str:
    body = base64.b64encode(der).decode("ascii")
    lines = [body[i : i + 64] for i in range(0, len(body), 64)]
    return newline.join([f"-----BEGIN {label}-----", *lines, f"-----END {label}-----"])


def write(path: Path, data: bytes | str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        path.write_bytes(data.encode("ascii"))
    else:
        path.write_bytes(data)
    return path


def certificates(results: list[StoredCertificate | FileProblem]) -> list[bytes]:
    return [item.der for item in results if isinstance(item, StoredCertificate)]


def only_certificates(
    results: list[StoredCertificate | FileProblem],
) -> list[StoredCertificate]:
    assert problems(results) == []
    return [item for item in results if isinstance(item, StoredCertificate)]


def problems(results: list[StoredCertificate | FileProblem]) -> list[FileProblem]:
    return [item for item in results if isinstance(item, FileProblem)]


def load_key(
    leaf: trustme.LeafCert,
) -> ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey:
    key = serialization.load_pem_private_key(leaf.private_key_pem.bytes(), None)
    assert isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey)
    return key


def pkcs12_file(
    leaf: trustme.LeafCert,
    cert: x509.Certificate,
    extra: list[x509.Certificate],
    password: bytes | None,
) -> bytes:
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(password)
        if password is not None
        else serialization.NoEncryption()
    )
    return pkcs12.serialize_key_and_certificates(
        b"leaf", load_key(leaf), cert, extra, encryption
    )


# PEM


def test_read_path_pem_bundle_crlf_and_text(tmp_path: Path, ders: list[bytes]) -> None:
    text = "Bundle made for a test\r\n"
    for number, der in enumerate(ders):
        text += f"subject=host{number}.example.test\r\n"
        text += pem_block("CERTIFICATE", der, "\r\n") + "\r\n\r\n"
    path = write(tmp_path / "bundle.pem", text)

    results = read_path(path)

    assert results == [
        StoredCertificate(str(path), index, der, "pem")
        for index, der in enumerate(ders)
    ]


def test_read_path_pem_x509_and_trusted_labels(
    tmp_path: Path, ders: list[bytes]
) -> None:
    text = pem_block("X509 CERTIFICATE", ders[0]) + "\n"
    text += pem_block("TRUSTED CERTIFICATE", ders[1] + TRUST_AUX) + "\n"
    path = write(tmp_path / "labels.pem", text)

    results = read_path(path)

    assert results == [
        StoredCertificate(str(path), 0, ders[0], "pem"),
        StoredCertificate(str(path), 1, ders[1], "pem"),
    ]


def test_read_path_pem_broken_block_keeps_others(
    tmp_path: Path, ders: list[bytes]
) -> None:
    broken = pem_block("CERTIFICATE", ders[1]).replace("M", "*", 1)
    blocks = [
        pem_block("CERTIFICATE", ders[0]),
        broken,
        pem_block("CERTIFICATE", ders[2]),
    ]
    path = write(tmp_path / "bundle.pem", "\n".join(blocks) + "\n")

    results = read_path(path)

    assert results == [
        StoredCertificate(str(path), 0, ders[0], "pem"),
        FileProblem(
            str(path),
            f"PEM block 2 (CERTIFICATE) in {str(path)!r} has invalid base64: "
            "replace the block with an intact copy.",
        ),
        StoredCertificate(str(path), 1, ders[2], "pem"),
    ]


def test_read_path_pem_missing_end_line(tmp_path: Path, ders: list[bytes]) -> None:
    truncated = pem_block("CERTIFICATE", ders[1]).rsplit("\n", 1)[0]
    path = write(
        tmp_path / "cut.pem", pem_block("CERTIFICATE", ders[0]) + "\n" + truncated
    )

    results = read_path(path)

    assert certificates(results) == [ders[0]]
    [problem] = problems(results)
    assert "PEM block 2 (CERTIFICATE)" in problem.message
    assert "has no matching END line" in problem.message


def test_read_path_pem_block_not_a_certificate(tmp_path: Path) -> None:
    path = write(tmp_path / "junk.pem", pem_block("CERTIFICATE", b"not DER at all"))

    results = read_path(path)

    assert results == [
        FileProblem(
            str(path),
            f"PEM block 1 (CERTIFICATE) in {str(path)!r} does not contain a DER "
            "certificate: replace the block with an intact copy.",
        )
    ]


def test_read_path_pem_trailing_bytes(tmp_path: Path, ders: list[bytes]) -> None:
    path = write(
        tmp_path / "extra.pem", pem_block("CERTIFICATE", ders[0] + b"\x00\x00")
    )

    results = read_path(path)

    assert certificates(results) == [ders[0]]
    [problem] = problems(results)
    assert "has 2 extra bytes after the certificate" in problem.message


def test_read_path_pem_cert_and_key(
    tmp_path: Path, leaves: list[trustme.LeafCert], ders: list[bytes]
) -> None:
    data = (
        leaves[0].private_key_pem.bytes() + pem_block("CERTIFICATE", ders[0]).encode()
    )
    path = write(tmp_path / "combined.pem", data)

    assert read_path(path) == [StoredCertificate(str(path), 0, ders[0], "pem")]


def test_read_path_pem_key_only(tmp_path: Path, leaves: list[trustme.LeafCert]) -> None:
    path = write(tmp_path / "key.pem", leaves[0].private_key_pem.bytes())

    results = read_path(path)

    assert results == [
        FileProblem(
            str(path),
            f"File {str(path)!r} contains a private key but no certificate: "
            "point certwatch at the certificate file instead.",
            not_certificate_file=True,
        )
    ]


def test_read_path_pem_other_blocks_only(tmp_path: Path, ders: list[bytes]) -> None:
    path = write(tmp_path / "request.pem", pem_block("CERTIFICATE REQUEST", ders[0]))

    [problem] = read_path(path)

    assert isinstance(problem, FileProblem)
    assert "contains PEM blocks (CERTIFICATE REQUEST) but no certificate" in (
        problem.message
    )


# DER


def test_read_path_der_certificate(tmp_path: Path, ders: list[bytes]) -> None:
    path = write(tmp_path / "leaf.der", ders[0])

    assert read_path(path) == [StoredCertificate(str(path), 0, ders[0], "der")]


def test_read_path_der_concatenated_and_trailing(
    tmp_path: Path, ders: list[bytes]
) -> None:
    path = write(tmp_path / "two.der", ders[0] + ders[1] + b"junk")

    results = read_path(path)

    assert results[:2] == [
        StoredCertificate(str(path), 0, ders[0], "der"),
        StoredCertificate(str(path), 1, ders[1], "der"),
    ]
    [problem] = results[2:]
    assert isinstance(problem, FileProblem)
    assert "has 4 bytes after certificate 2 that are not a DER certificate" in (
        problem.message
    )


def test_read_path_der_unparsable_kept_exactly(tmp_path: Path) -> None:
    # The outer shape of a certificate around content that is no TBSCertificate,
    # which cryptography rejects but the analysis must still receive.
    odd = bytes.fromhex("300b3003020105300003020000")
    with pytest.raises(ValueError, match="error parsing asn1 value"):
        x509.load_der_x509_certificate(odd)
    path = write(tmp_path / "odd.crt", odd)

    assert read_path(path) == [StoredCertificate(str(path), 0, odd, "der")]


def test_read_path_pem_name_with_der_content(tmp_path: Path, ders: list[bytes]) -> None:
    path = write(tmp_path / "actually-der.pem", ders[0])

    assert read_path(path) == [StoredCertificate(str(path), 0, ders[0], "der")]


def test_read_path_der_name_with_pem_content(tmp_path: Path, ders: list[bytes]) -> None:
    path = write(tmp_path / "actually-pem.der", pem_block("CERTIFICATE", ders[0]))

    assert read_path(path) == [StoredCertificate(str(path), 0, ders[0], "pem")]


def test_read_path_der_key_only(tmp_path: Path, leaves: list[trustme.LeafCert]) -> None:
    key = load_key(leaves[0])
    der_key = key.private_bytes(
        DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    path = write(tmp_path / "key.der", der_key)

    [problem] = read_path(path)

    assert isinstance(problem, FileProblem)
    assert "contains a private key but no certificate" in problem.message


def test_read_path_unrecognised_content(tmp_path: Path) -> None:
    path = write(tmp_path / "notes.txt", "nothing to see here\n")

    results = read_path(path)

    assert results == [
        FileProblem(
            str(path),
            f"File {str(path)!r} contains no certificate in PEM, DER, PKCS#7 or "
            "PKCS#12 form: check that it is a certificate file.",
            not_certificate_file=True,
        )
    ]


# PKCS#7


def test_read_path_pkcs7_der(
    tmp_path: Path, certs: list[x509.Certificate], ders: list[bytes]
) -> None:
    path = write(tmp_path / "chain.p7b", pkcs7.serialize_certificates(certs, DER))

    results = read_path(path)

    # SignedData stores the certificates in a DER SET OF, which is sorted, so
    # the file order is not the order given to serialize_certificates().
    stored = only_certificates(results)
    assert sorted(item.der for item in stored) == sorted(ders)
    assert [item.index for item in stored] == [0, 1, 2]
    assert {item.format for item in stored} == {"pkcs7"}


def test_read_path_pkcs7_pem(
    tmp_path: Path, certs: list[x509.Certificate], ders: list[bytes]
) -> None:
    data = pkcs7.serialize_certificates(certs[:2], PEM)
    assert data.startswith(b"-----BEGIN PKCS7-----")
    path = write(tmp_path / "chain.txt", data)

    results = read_path(path)

    stored = only_certificates(results)
    assert sorted(item.der for item in stored) == sorted(ders[:2])
    assert [item.index for item in stored] == [0, 1]
    assert {item.format for item in stored} == {"pkcs7"}


def test_read_path_pkcs7_truncated(
    tmp_path: Path, certs: list[x509.Certificate]
) -> None:
    data = pkcs7.serialize_certificates(certs, DER)
    path = write(tmp_path / "cut.p7b", data[:-40])

    results = read_path(path)

    assert results == [
        FileProblem(
            str(path),
            f"File {str(path)!r} is truncated: its DER content declares "
            f"{len(data)} bytes but the file has {len(data) - 40}, so copy the "
            "file again.",
        )
    ]


def test_read_path_pkcs7_without_certificates(
    tmp_path: Path, leaves: list[trustme.LeafCert], certs: list[x509.Certificate]
) -> None:
    key = load_key(leaves[0])
    builder = (
        pkcs7.PKCS7SignatureBuilder()
        .set_data(b"text")
        .add_signer(certs[0], key, hashes.SHA256())
    )
    data = builder.sign(DER, [pkcs7.PKCS7Options.NoCerts])
    path = write(tmp_path / "signed.p7s", data)

    [problem] = read_path(path)

    assert isinstance(problem, FileProblem)
    assert problem.message.startswith(
        f"PKCS#7 data in {str(path)!r} could not be read or contains no "
        "certificate (The provided PKCS7 has no certificate data"
    )


# PKCS#12


def test_read_path_pkcs12_with_password(
    tmp_path: Path,
    leaves: list[trustme.LeafCert],
    certs: list[x509.Certificate],
    ders: list[bytes],
) -> None:
    data = pkcs12_file(leaves[0], certs[0], certs[1:], b"s3cret")
    path = write(tmp_path / "bundle.bin", data)

    results = read_path(path, pkcs12_password=b"s3cret")

    assert results == [
        StoredCertificate(str(path), index, der, "pkcs12")
        for index, der in enumerate(ders)
    ]


def test_read_path_pkcs12_wrong_password(
    tmp_path: Path, leaves: list[trustme.LeafCert], certs: list[x509.Certificate]
) -> None:
    path = write(tmp_path / "a.p12", pkcs12_file(leaves[0], certs[0], [], b"s3cret"))

    results = read_path(path, pkcs12_password=b"wrong")

    assert results == [
        FileProblem(
            str(path),
            f"PKCS#12 file {str(path)!r} could not be opened with the given "
            f"password (wrong password or damaged file): check {PASSWORD_HINT} "
            "variable.",
        )
    ]


def test_read_path_pkcs12_missing_password(
    tmp_path: Path, leaves: list[trustme.LeafCert], certs: list[x509.Certificate]
) -> None:
    path = write(tmp_path / "a.pfx", pkcs12_file(leaves[0], certs[0], [], b"s3cret"))

    results = read_path(path)

    assert results == [
        FileProblem(
            str(path),
            f"PKCS#12 file {str(path)!r} needs a password (or is damaged): give "
            f"the password with {PASSWORD_HINT} variable.",
        )
    ]


def test_read_path_pkcs12_unencrypted(
    tmp_path: Path,
    leaves: list[trustme.LeafCert],
    certs: list[x509.Certificate],
    ders: list[bytes],
) -> None:
    path = write(tmp_path / "open.p12", pkcs12_file(leaves[0], certs[0], [], None))

    assert read_path(path) == [StoredCertificate(str(path), 0, ders[0], "pkcs12")]


# Files and folders


def test_read_path_missing(tmp_path: Path) -> None:
    path = tmp_path / "nowhere.pem"

    results = read_path(path)

    assert results == [
        FileProblem(
            str(path), f"File or folder {str(path)!r} not found: check the path."
        )
    ]


def test_read_path_empty_file(tmp_path: Path) -> None:
    path = write(tmp_path / "empty.pem", b"")

    results = read_path(path)

    assert results == [
        FileProblem(
            str(path),
            f"File {str(path)!r} is empty: put the certificate in it or remove "
            "the file.",
        )
    ]


def test_read_path_over_size_cap(tmp_path: Path, ders: list[bytes]) -> None:
    path = write(tmp_path / "huge.pem", pem_block("CERTIFICATE", ders[0]) + "\n")
    with path.open("r+b") as stream:
        stream.truncate(MAX_FILE_BYTES + 1)

    results = read_path(path)

    assert results == [
        FileProblem(
            str(path),
            f"File {str(path)!r} is larger than 20 MiB, the maximum size of a "
            "certificate file: point certwatch at the certificate files only.",
        )
    ]


def test_read_path_at_size_cap(tmp_path: Path, ders: list[bytes]) -> None:
    path = write(tmp_path / "big.pem", pem_block("CERTIFICATE", ders[0]) + "\n")
    with path.open("r+b") as stream:
        stream.truncate(MAX_FILE_BYTES)

    assert read_path(path) == [StoredCertificate(str(path), 0, ders[0], "pem")]


def test_read_path_folder_nested(
    tmp_path: Path, leaves: list[trustme.LeafCert], ders: list[bytes]
) -> None:
    root = tmp_path / "certs"
    write(root / "b.pem", pem_block("CERTIFICATE", ders[1]))
    write(root / "a" / "deep" / "z.der", ders[0])
    write(root / "a" / "empty.crt", b"")
    write(root / "c" / "key.pem", leaves[2].private_key_pem.bytes())
    write(root / "d.pem", pem_block("CERTIFICATE", ders[2]))

    results = read_path(root)

    assert [
        (Path(item.path).relative_to(root).as_posix(), type(item)) for item in results
    ] == [
        ("a/deep/z.der", StoredCertificate),
        ("a/empty.crt", FileProblem),
        ("b.pem", StoredCertificate),
        ("c/key.pem", FileProblem),
        ("d.pem", StoredCertificate),
    ]
    assert certificates(results) == [ders[0], ders[1], ders[2]]
    empty, key_only = problems(results)
    assert "is empty" in empty.message
    assert "contains a private key but no certificate" in key_only.message


def test_read_path_folder_empty(tmp_path: Path) -> None:
    results = read_path(tmp_path)

    assert results == [
        FileProblem(
            str(tmp_path),
            f"Folder {str(tmp_path)!r} contains no files: check the path.",
        )
    ]


def test_read_path_folder_symlink_loop(tmp_path: Path, ders: list[bytes]) -> None:
    root = tmp_path / "certs"
    write(root / "sub" / "leaf.der", ders[0])
    (root / "sub" / "back").symlink_to(root, target_is_directory=True)

    results = read_path(root)

    assert certificates(results) == [ders[0]]
    [problem] = problems(results)
    assert problem.path == str(root / "sub" / "back")
    assert f"because it is the same folder as {str(root)!r}" in problem.message


def test_read_path_broken_symlink(tmp_path: Path) -> None:
    link = tmp_path / "gone.pem"
    link.symlink_to(tmp_path / "missing.pem")

    results = read_path(tmp_path)

    assert results == [
        FileProblem(
            str(link),
            f"Symbolic link {str(link)!r} points to {str(tmp_path / 'missing.pem')!r}, "
            "which does not exist: fix or remove the link.",
        )
    ]


def test_read_path_not_regular_file(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)

    [problem] = read_path(tmp_path)

    assert problem == FileProblem(
        str(fifo),
        f"{str(fifo)!r} is not a regular file or folder: point certwatch at "
        "certificate files.",
    )


@pytest.mark.skipif(
    os.geteuid() == 0, reason="root reads files and folders despite chmod 000"
)
def test_read_path_unreadable_file(tmp_path: Path, ders: list[bytes]) -> None:
    write(tmp_path / "a.pem", pem_block("CERTIFICATE", ders[0]))
    secret = write(tmp_path / "b.pem", pem_block("CERTIFICATE", ders[1]))
    secret.chmod(0)

    try:
        results = read_path(tmp_path)
    finally:
        secret.chmod(0o600)

    assert certificates(results) == [ders[0]]
    assert problems(results) == [
        FileProblem(
            str(secret),
            f"Permission denied trying to read file {str(secret)!r}: give the "
            "user that runs certwatch read access.",
        )
    ]


@pytest.mark.skipif(
    os.geteuid() == 0, reason="root reads files and folders despite chmod 000"
)
def test_read_path_unlistable_folder(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0)

    try:
        results = read_path(tmp_path)
    finally:
        locked.chmod(0o700)

    assert results == [
        FileProblem(
            str(locked),
            f"Permission denied trying to list folder {str(locked)!r}: give the "
            "user that runs certwatch read access.",
        )
    ]


def test_read_path_permission_denied_reading(
    tmp_path: Path, ders: list[bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Root reads a chmod 000 file, so this variant makes open() fail instead,
    # which covers the message when the tests run as root.
    path = write(tmp_path / "a.pem", pem_block("CERTIFICATE", ders[0]))

    def deny(name: object, *args: object, **kwargs: object) -> None:
        raise PermissionError(13, "Permission denied", str(name))

    with monkeypatch.context() as patched:
        patched.setattr(os, "open", deny)
        results = read_path(path)

    assert results == [
        FileProblem(
            str(path),
            f"Permission denied trying to read file {str(path)!r}: give the "
            "user that runs certwatch read access.",
        )
    ]


def test_read_path_permission_denied_listing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Root lists a chmod 000 folder, so this variant makes listdir() fail.
    locked = tmp_path / "locked"
    locked.mkdir()
    real_listdir = os.listdir

    def deny(path: Path) -> list[str]:
        if Path(path) == locked:
            raise PermissionError(13, "Permission denied", str(path))
        return real_listdir(path)

    monkeypatch.setattr(os, "listdir", deny)
    results = read_path(tmp_path)

    assert results == [
        FileProblem(
            str(locked),
            f"Permission denied trying to list folder {str(locked)!r}: give the "
            "user that runs certwatch read access.",
        )
    ]


def test_parse_certificate_data_names_given_path(ders: list[bytes]) -> None:
    results = parse_certificate_data("<stdin>", ders[0])

    assert results == [StoredCertificate("<stdin>", 0, ders[0], "der")]


def test_read_path_self_referencing_symlink(tmp_path: Path) -> None:
    link = tmp_path / "self.pem"
    link.symlink_to(link)

    results = read_path(link)

    assert results == [
        FileProblem(
            str(link),
            f"Symbolic link {str(link)!r} points back to itself: fix or remove "
            "the link.",
        )
    ]


def test_read_path_nul_byte_is_problem() -> None:
    results = read_path(Path("/etc/\x00passwd"))

    assert len(results) == 1
    assert isinstance(results[0], FileProblem)
    assert "contains a NUL byte" in results[0].message


def test_read_path_never_blocks_on_a_named_pipe(tmp_path: Path) -> None:
    # A pipe swapped in after the stat: the read must not wait for a writer.
    pipe = tmp_path / "site.pem"
    os.mkfifo(pipe)
    seen_as_file = os.stat_result((stat.S_IFREG | 0o644, *os.stat(pipe)[1:]))

    problems = files._read_entry(pipe, seen_as_file, None)

    [problem] = problems
    assert isinstance(problem, FileProblem)
    assert "is not a regular file or folder" in problem.message
