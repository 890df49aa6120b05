"""Load the trusted roots: certifi by default, plus or instead of CA files."""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

import certifi

from certwatch.errors import TrustStoreError
from certwatch.sources.files import FileProblem, read_path


def load_roots(
    ca_files: Sequence[Path], *, only_ca_files: bool = False
) -> tuple[bytes, ...]:
    """Return the DER roots to trust.

    Raises:
        TrustStoreError: a CA file is missing, unreadable or contains no
            certificate, or `only_ca_files` is set without any CA file.
    """
    if only_ca_files and not ca_files:
        raise TrustStoreError(
            "--only-ca-file needs at least one --ca-file to trust: give the "
            "file with your internal roots."
        )
    roots: list[bytes] = [] if only_ca_files else list(certifi_roots())
    for path in ca_files:
        roots.extend(_read_ca_file(path))
    return tuple(dict.fromkeys(roots))


@lru_cache(maxsize=1)
def certifi_roots() -> tuple[bytes, ...]:
    """Return the roots of the installed certifi bundle (Mozilla's list)."""
    return _read_ca_file(Path(certifi.where()))


def _read_ca_file(path: Path) -> tuple[bytes, ...]:
    items = read_path(path)
    problems = [item for item in items if isinstance(item, FileProblem)]
    certificates = [item.der for item in items if not isinstance(item, FileProblem)]
    if problems:
        raise TrustStoreError(
            f"Cannot use CA file {str(path)!r}: {problems[0].message}"
        )
    if not certificates:
        raise TrustStoreError(
            f"CA file {str(path)!r} contains no certificate: give a PEM, DER or "
            "PKCS#7 file with the root certificates to trust."
        )
    return tuple(certificates)
