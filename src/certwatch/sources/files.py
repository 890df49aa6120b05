"""Read certificates stored in files and folders.

The format comes from the content, never from the file name: PEM (certificate
and PKCS#7 blocks), raw DER certificates, DER PKCS#7 and PKCS#12. Certificates
from PEM and DER keep the exact bytes stored in the file, so the analysis also
receives certificates that `cryptography` cannot fully parse. PKCS#7 and PKCS#12
content is decoded with `cryptography`, and those certificates are encoded
again as DER.

Every failure becomes a `FileProblem` in the result list, never an exception,
so one bad file never stops a run.
"""

from __future__ import annotations

import base64
import binascii
import errno
import logging
import os
import re
import stat
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs7, pkcs12

logger = logging.getLogger(__name__)

# Certificate files are a few KiB, and certifi's bundle of the public root CAs
# (Mozilla's list) is about 230 KiB. The cap keeps a folder walk that meets a
# disk image or a log file from loading it whole into memory.
MAX_FILE_BYTES = 20 * 1024 * 1024

PKCS12_PASSWORD_HINT = (
    "--pkcs12-password or the CERTWATCH_PKCS12_PASSWORD environment variable"
)

_PEM_BEGIN = re.compile(rb"-----BEGIN ([^\r\n-]+)-----")
_CERTIFICATE_LABELS = {b"CERTIFICATE", b"X509 CERTIFICATE", b"TRUSTED CERTIFICATE"}
_PKCS7_LABELS = {b"PKCS7", b"PKCS #7 SIGNED DATA"}

_TAG_INTEGER = 0x02
_TAG_BIT_STRING = 0x03
_TAG_OID = 0x06
_TAG_SEQUENCE = 0x30


@dataclass(frozen=True)
class StoredCertificate:
    """One certificate read from a file.

    `index` is the 0-based position of the certificate among those read from
    the file, in file order. `format` is "pem", "der", "pkcs7" or "pkcs12".
    """

    path: str
    index: int
    der: bytes = field(repr=False)
    format: str


@dataclass(frozen=True)
class FileProblem:
    """A file or folder that yielded no certificate, or a damaged part of one.

    `not_certificate_file` is set when the file holds nothing that looks like
    a certificate (a private key, a CSR, plain text), so that a folder walk
    can pass over it: certificate folders usually hold keys and notes too.
    """

    path: str
    message: str
    not_certificate_file: bool = False


ReadResult = StoredCertificate | FileProblem


@dataclass(frozen=True)
class _Pending:
    """A certificate found in a file, before its index is assigned."""

    der: bytes
    format: str


_Item = StoredCertificate | FileProblem | _Pending


def read_path(
    path: Path, *, pkcs12_password: bytes | None = None
) -> list[StoredCertificate | FileProblem]:
    """Read every certificate in a file, or in every file under a folder.

    Folders are walked recursively in sorted name order. Symbolic links are
    followed, but a folder reached a second time is reported and skipped,
    which also stops symbolic link loops. Every regular file is tried, and
    each one that contains no certificate is reported as a `FileProblem`.
    """
    try:
        info = path.stat()
    except OSError as exc:
        return [_stat_problem(path, exc)]
    except ValueError:
        return [
            FileProblem(
                str(path),
                f"Path {str(path)!r} contains a NUL byte, which no file name "
                "can hold: check the path.",
            )
        ]

    if not stat.S_ISDIR(info.st_mode):
        return _read_entry(path, info, pkcs12_password)

    results = list(_walk(path, pkcs12_password))
    if not results:
        path_text = str(path)
        message = f"Folder {path_text!r} contains no files: check the path."
        return [FileProblem(path_text, message)]
    return results


def _walk(root: Path, password: bytes | None) -> Iterator[ReadResult]:
    """Yield the results for every file under `root`, depth first, sorted."""
    first_seen: dict[tuple[int, int], Path] = {}
    # The stack contains paths in reverse order so that pop() takes the next one
    # in sorted order. A list instead of recursion keeps deep trees working.
    stack = [root]
    while stack:
        path = stack.pop()
        try:
            info = path.stat()
        except OSError as exc:
            yield _stat_problem(path, exc)
            continue

        key = (info.st_dev, info.st_ino)
        if not stat.S_ISDIR(info.st_mode):
            # A file reached again through a symbolic link (such as the hash
            # links in /etc/ssl/certs) is the same file, so it is read once.
            if key in first_seen:
                logger.debug("Skipped %s, the same file as %s", path, first_seen[key])
                continue
            first_seen[key] = path
            yield from _read_entry(path, info, password)
            continue

        if key in first_seen:
            yield FileProblem(
                str(path),
                f"Skipped folder {str(path)!r} because it is the same folder as "
                f"{str(first_seen[key])!r}, which was already read: remove the "
                "symbolic link that leads back to it if it should be read once.",
            )
            continue
        first_seen[key] = path

        try:
            names = sorted(os.listdir(path))
        except OSError as exc:
            yield _list_problem(path, exc)
            continue
        stack.extend(path / name for name in reversed(names))


def _read_entry(
    path: Path, info: os.stat_result, password: bytes | None
) -> list[ReadResult]:
    if not stat.S_ISREG(info.st_mode):
        return [
            FileProblem(
                str(path),
                f"{str(path)!r} is not a regular file or folder: point certwatch "
                "at certificate files.",
            )
        ]

    data = _read_capped(path)
    if isinstance(data, FileProblem):
        return [data]

    results = parse_certificate_data(str(path), data, pkcs12_password=password)
    found = sum(isinstance(item, StoredCertificate) for item in results)
    logger.debug("Read %d certificates from %s", found, path)
    return results


def _read_capped(path: Path) -> bytes | FileProblem:
    """Read at most `MAX_FILE_BYTES` from a file, or describe why not.

    The file is opened without blocking and must still be a regular file
    once open: a named pipe swapped in after the stat would otherwise block
    the read, and the scan with it, for good.
    """
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as exc:
        return _read_problem(path, exc)
    with os.fdopen(descriptor, "rb") as stream:
        if not stat.S_ISREG(os.fstat(descriptor).st_mode):
            return FileProblem(
                str(path),
                f"{str(path)!r} is not a regular file or folder: point certwatch "
                "at certificate files.",
            )
        try:
            data = stream.read(MAX_FILE_BYTES + 1)
        except OSError as exc:
            return _read_problem(path, exc)

    if len(data) > MAX_FILE_BYTES:
        limit_mib = MAX_FILE_BYTES // (1024 * 1024)
        return FileProblem(
            str(path),
            f"File {str(path)!r} is larger than {limit_mib} MiB, the maximum "
            "size of a certificate file: point certwatch at the certificate "
            "files only.",
        )
    return data


def parse_certificate_data(
    path: str, data: bytes, *, pkcs12_password: bytes | None = None
) -> list[StoredCertificate | FileProblem]:
    """Extract the certificates from the content of one file.

    `path` only names the source in the results. Content with a PEM BEGIN line
    is read as PEM, anything else as binary DER, PKCS#7 or PKCS#12.
    """
    if not data.strip():
        return [
            FileProblem(
                path,
                f"File {path!r} is empty: put the certificate in it or remove "
                "the file.",
            )
        ]

    # NOTE: binary content that contains a PEM BEGIN line is read as PEM. DER
    # data only contains one when a field of it contains that exact text.
    if _PEM_BEGIN.search(data):
        return _read_pem(path, data)
    return _read_binary(path, data, pkcs12_password)


# PEM


def _read_pem(path: str, data: bytes) -> list[ReadResult]:
    results: list[_Item] = []
    matches = list(_PEM_BEGIN.finditer(data))
    labels = [match.group(1).decode("ascii", "replace") for match in matches]

    for number, match in enumerate(matches, start=1):
        label = match.group(1)
        if label not in _CERTIFICATE_LABELS and label not in _PKCS7_LABELS:
            continue
        block_end = matches[number].start() if number < len(matches) else len(data)
        where = f"PEM block {number} ({labels[number - 1]}) in {path!r}"
        results.extend(
            _read_pem_block(path, data[match.end() : block_end], label, where)
        )

    if not results:
        return [_no_certificate_in_pem(path, labels)]
    return _numbered(path, results)


def _read_pem_block(path: str, text: bytes, label: bytes, where: str) -> list[_Item]:
    """Decode one certificate or PKCS#7 block from the text after its BEGIN line."""
    end = text.find(b"-----END " + label + b"-----")
    if end == -1:
        return [
            FileProblem(
                path,
                f"{where} has no matching END line: restore the end of the "
                "block from an intact copy.",
            )
        ]

    body = re.sub(rb"\s+", b"", text[:end])
    try:
        der = base64.b64decode(body, validate=True)
    except binascii.Error:
        return [
            FileProblem(
                path,
                f"{where} has invalid base64: replace the block with an intact copy.",
            )
        ]

    if label in _PKCS7_LABELS:
        return _read_pkcs7(path, der, where)
    return _read_pem_certificate(path, der, label, where)


def _read_pem_certificate(
    path: str, der: bytes, label: bytes, where: str
) -> list[_Item]:
    end = _definite_tlv_end(der, 0, _TAG_SEQUENCE)
    if end is None:
        return [
            FileProblem(
                path,
                f"{where} does not contain a DER certificate: replace the block "
                "with an intact copy.",
            )
        ]

    # OpenSSL's TRUSTED CERTIFICATE form appends trust settings after the
    # certificate, so bytes after the certificate are expected there.
    certificate = _Pending(der[:end], "pem")
    if end == len(der) or label == b"TRUSTED CERTIFICATE":
        return [certificate]
    return [
        certificate,
        FileProblem(
            path,
            f"{where} has {len(der) - end} extra bytes after the certificate, "
            "which were ignored: check that the block is not damaged.",
        ),
    ]


def _no_certificate_in_pem(path: str, labels: list[str]) -> FileProblem:
    if all(label.endswith("PRIVATE KEY") for label in labels):
        return _key_only_problem(path)
    found = ", ".join(sorted(set(labels)))
    return FileProblem(
        path,
        f"File {path!r} contains PEM blocks ({found}) but no certificate: point "
        "certwatch at the certificate file instead.",
        not_certificate_file=True,
    )


# Binary: DER certificates, PKCS#7 and PKCS#12


def _read_binary(path: str, data: bytes, password: bytes | None) -> list[ReadResult]:
    declared = _declared_size(data)
    if declared is not None and declared > len(data):
        return [
            FileProblem(
                path,
                f"File {path!r} is truncated: its DER content declares "
                f"{declared} bytes but the file has {len(data)}, so copy the "
                "file again.",
            )
        ]

    first_child = _first_child(data)
    if first_child is not None:
        tag, value = first_child
        if tag == _TAG_SEQUENCE and _is_certificate(data, 0):
            return _numbered(path, _read_der_certificates(path, data))
        if tag == _TAG_OID:
            where = f"PKCS#7 data in {path!r}"
            return _numbered(path, _read_pkcs7(path, data, where))
        # A PFX starts with version 3, while private keys start with version 0 or 1.
        if tag == _TAG_INTEGER and value == b"\x03":
            return _numbered(path, _read_pkcs12(path, data, password))

    if _is_private_key(data):
        return [_key_only_problem(path)]
    return [
        FileProblem(
            path,
            f"File {path!r} contains no certificate in PEM, DER, PKCS#7 or "
            "PKCS#12 form: check that it is a certificate file.",
            not_certificate_file=True,
        )
    ]


def _read_der_certificates(path: str, data: bytes) -> list[_Item]:
    """Read one DER certificate, or several written one after the other."""
    results: list[_Item] = []
    offset = 0
    while offset < len(data):
        end = _definite_tlv_end(data, offset, _TAG_SEQUENCE)
        if end is None or not _is_certificate(data, offset):
            results.append(
                FileProblem(
                    path,
                    f"File {path!r} has {len(data) - offset} bytes after "
                    f"certificate {len(results)} that are not a DER "
                    "certificate: check that the file is not damaged.",
                )
            )
            break
        results.append(_Pending(data[offset:end], "der"))
        offset = end
    return results


def _read_pkcs7(path: str, der: bytes, where: str) -> list[_Item]:
    try:
        # cryptography 50 warns when it falls back from DER to BER, as for
        # the output of `openssl crl2pkcs7`; the certificates are still read.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            certificates = pkcs7.load_der_pkcs7_certificates(der)
    except ValueError as exc:
        return [
            FileProblem(
                path,
                f"{where} could not be read or contains no certificate ({exc}): "
                "export the certificates again.",
            )
        ]
    return [
        _Pending(cert.public_bytes(serialization.Encoding.DER), "pkcs7")
        for cert in certificates
    ]


def _read_pkcs12(path: str, data: bytes, password: bytes | None) -> list[_Item]:
    # cryptography 50 opens files written with an empty password
    # (`openssl pkcs12 -passout pass:`) when the password is None. A folder
    # may mix protected and unprotected files, so None is tried as well.
    bundle: pkcs12.PKCS12KeyAndCertificates | None = None
    for attempt in dict.fromkeys((password, None)):
        try:
            bundle = pkcs12.load_pkcs12(data, attempt)
            break
        except (ValueError, UnsupportedAlgorithm):
            continue
    if bundle is None:
        return [_pkcs12_password_problem(path, password)]

    certificates = [bundle.cert] if bundle.cert is not None else []
    certificates.extend(bundle.additional_certs)
    if not certificates:
        return [
            FileProblem(
                path,
                f"PKCS#12 file {path!r} contains no certificate: export it "
                "again with the certificate included.",
            )
        ]
    return [
        _Pending(item.certificate.public_bytes(serialization.Encoding.DER), "pkcs12")
        for item in certificates
    ]


def _pkcs12_password_problem(path: str, password: bytes | None) -> FileProblem:
    # cryptography raises the same ValueError for a wrong password and for
    # damaged content, so the message names both.
    if password is None:
        message = (
            f"PKCS#12 file {path!r} needs a password (or is damaged): give the "
            f"password with {PKCS12_PASSWORD_HINT}."
        )
    else:
        message = (
            f"PKCS#12 file {path!r} could not be opened with the given password "
            f"(wrong password or damaged file): check {PKCS12_PASSWORD_HINT}."
        )
    return FileProblem(path, message)


def _is_private_key(data: bytes) -> bool:
    try:
        serialization.load_der_private_key(data, password=None)
    except TypeError:
        # cryptography raises TypeError for an encrypted key without password.
        return True
    except (ValueError, UnsupportedAlgorithm):
        return False
    return True


def _numbered(path: str, items: list[_Item]) -> list[ReadResult]:
    """Give each certificate its 0-based index among the certificates found."""
    results: list[ReadResult] = []
    index = 0
    for item in items:
        if isinstance(item, _Pending):
            results.append(StoredCertificate(path, index, item.der, item.format))
            index += 1
        else:
            results.append(item)
    return results


def _key_only_problem(path: str) -> FileProblem:
    return FileProblem(
        path,
        f"File {path!r} contains a private key but no certificate: point "
        "certwatch at the certificate file instead.",
        not_certificate_file=True,
    )


# DER structure, read by hand so that the stored bytes are kept unchanged


def _tlv_header(data: bytes, offset: int) -> tuple[int, int, int] | None:
    """Return the tag, content start and content length of a definite TLV.

    Only single-byte tags are read, because every element checked here uses
    one. `None` means the header is malformed, uses the indefinite length or
    runs past the end of `data`.
    """
    if offset + 2 > len(data):
        return None
    tag = data[offset]
    first = data[offset + 1]
    start = offset + 2
    if first < 0x80:
        length = first
    else:
        count = first & 0x7F
        if count == 0 or count > 4 or start + count > len(data):
            return None
        length = int.from_bytes(data[start : start + count], "big")
        start += count
    if start + length > len(data):
        return None
    return tag, start, length


def _definite_tlv_end(data: bytes, offset: int, tag: int) -> int | None:
    header = _tlv_header(data, offset)
    if header is None or header[0] != tag:
        return None
    return header[1] + header[2]


def _is_certificate(data: bytes, offset: int) -> bool:
    """Tell whether a SEQUENCE of SEQUENCE, SEQUENCE, BIT STRING starts here.

    That is the outer shape of an X.509 certificate. An encrypted PKCS#8 key,
    the other SEQUENCE that opens with a SEQUENCE, has an OCTET STRING second.
    """
    outer = _tlv_header(data, offset)
    if outer is None or outer[0] != _TAG_SEQUENCE:
        return False
    _, position, length = outer
    end = position + length

    for expected in (_TAG_SEQUENCE, _TAG_SEQUENCE, _TAG_BIT_STRING):
        child = _tlv_header(data[:end], position)
        if child is None or child[0] != expected:
            return False
        position = child[1] + child[2]
    return position == end


def _declared_size(data: bytes) -> int | None:
    """Return the size that a leading definite-length SEQUENCE declares.

    `None` means the content does not start with such a SEQUENCE header.
    """
    if len(data) < 2 or data[0] != _TAG_SEQUENCE:
        return None
    first = data[1]
    if first < 0x80:
        return 2 + first
    count = first & 0x7F
    if count == 0 or count > 4 or 2 + count > len(data):
        return None
    return 2 + count + int.from_bytes(data[2 : 2 + count], "big")


def _first_child(data: bytes) -> tuple[int, bytes] | None:
    """Return the tag and content of the first element inside a SEQUENCE.

    The outer SEQUENCE may use the indefinite length, as some PKCS#7 and
    PKCS#12 writers do in BER.
    """
    if len(data) < 2 or data[0] != _TAG_SEQUENCE:
        return None
    if data[1] == 0x80:
        child_offset = 2
    else:
        outer = _tlv_header(data, 0)
        if outer is None:
            return None
        child_offset = outer[1]

    child = _tlv_header(data, child_offset)
    if child is None:
        return None
    tag, start, length = child
    return tag, data[start : start + length]


# Problems from the operating system


def _stat_problem(path: Path, exc: OSError) -> FileProblem:
    path_text = str(path)
    if isinstance(exc, FileNotFoundError) and path.is_symlink():
        message = (
            f"Symbolic link {path_text!r} points to {os.readlink(path)!r}, which "
            "does not exist: fix or remove the link."
        )
    elif isinstance(exc, FileNotFoundError):
        message = f"File or folder {path_text!r} not found: check the path."
    elif exc.errno == errno.ELOOP:
        message = (
            f"Symbolic link {path_text!r} points back to itself: fix or remove "
            "the link."
        )
    else:
        message = _os_error_message(path_text, "read", exc)
    return FileProblem(path_text, message)


def _read_problem(path: Path, exc: OSError) -> FileProblem:
    return FileProblem(str(path), _os_error_message(str(path), "read file", exc))


def _list_problem(path: Path, exc: OSError) -> FileProblem:
    return FileProblem(str(path), _os_error_message(str(path), "list folder", exc))


def _os_error_message(path_text: str, action: str, exc: OSError) -> str:
    if isinstance(exc, PermissionError):
        return (
            f"Permission denied trying to {action} {path_text!r}: give the user "
            "that runs certwatch read access."
        )
    reason = exc.strerror or str(exc)
    return f"Failed to {action} {path_text!r} ({reason}): check the path and retry."
