"""Sort what a user typed into certificate paths and endpoints."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from certwatch.errors import TargetError
from certwatch.targets import DEFAULT_PROTOCOL, Endpoint, parse_target


@dataclass(frozen=True)
class InvalidTarget:
    """A target string that could not be parsed, kept so it is reported."""

    text: str
    error: TargetError


def classify_items(
    texts: Sequence[str], protocol: str = DEFAULT_PROTOCOL
) -> tuple[list[str], list[Endpoint], list[InvalidTarget]]:
    """Split arguments into certificate paths, endpoints and invalid targets.

    Targets without a scheme get `protocol` (see `parse_target`). A target
    or path given twice is checked once.
    """
    paths: dict[str, None] = {}
    endpoints: dict[Endpoint, None] = {}
    invalid: list[InvalidTarget] = []
    seen_targets: set[tuple[str, str, int, str | None]] = set()
    for text in dict.fromkeys(texts):
        if looks_like_path(text):
            paths[text] = None
            continue
        try:
            endpoint = parse_target(text, protocol)
        except TargetError as exc:
            invalid.append(InvalidTarget(text, exc))
            continue
        # `www.example.test` and `www.example.test:443` are the same endpoint.
        key = (endpoint.protocol, endpoint.host, endpoint.port, endpoint.server_name)
        if key not in seen_targets:
            seen_targets.add(key)
            endpoints[endpoint] = None
    return list(paths), list(endpoints), invalid


# File name endings that mark an argument as a certificate file even when the
# file does not exist, so a typo reports "not found" rather than a DNS error.
CERTIFICATE_SUFFIXES = (".pem", ".crt", ".cer", ".der", ".p7b", ".p7c", ".p12", ".pfx")


def looks_like_path(text: str) -> bool:
    """Tell whether an argument names a certificate file or folder."""
    if "://" in text or not text.strip():
        # An empty argument (an unset shell variable) is no path: as one it
        # would name the current folder.
        return False
    # A host name never contains a slash, so `certs/site.pem` is a path too.
    if "/" in text or text.startswith("~"):
        return True
    if text.lower().endswith(CERTIFICATE_SUFFIXES):
        return True
    try:
        return Path(text).expanduser().exists()
    except (OSError, ValueError):
        # Too long for a file name, or contains a NUL byte, so not a path.
        return False
