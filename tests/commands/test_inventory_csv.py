"""The inventory CSV reader: target cells as files or endpoints, unreadable records."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from certwatch.commands.inventory_csv import CsvError, read_inventory_csv


@pytest.fixture
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working folder holding the file `present.example.test`."""
    (tmp_path / "present.example.test").write_text("not a certificate")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_read_csv_existing_file_is_path(folder: Path) -> None:
    """The default, used by `certwatch import`, reads a file that exists as one."""
    parsed = read_inventory_csv("target\npresent.example.test\nabsent.example.test\n")

    assert parsed.problems == []
    [present, absent] = parsed.entries
    assert present.endpoint is None
    assert present.path == os.path.abspath("present.example.test")
    assert absent.endpoint is not None
    assert absent.endpoint.host == "absent.example.test"


def test_read_csv_off_disk_reads_names_as_endpoints(folder: Path) -> None:
    text = "target\npresent.example.test\nabsent.example.test\n"

    parsed = read_inventory_csv(text, look_on_disk=False)

    assert parsed.problems == []
    hosts = [entry.endpoint.host for entry in parsed.entries if entry.endpoint]
    assert hosts == ["present.example.test", "absent.example.test"]
    assert [entry.path for entry in parsed.entries] == [None, None]


@pytest.mark.parametrize("target", ["site.pem", "certs/site.crt", "~/site.der"])
def test_read_csv_off_disk_path_by_form(folder: Path, target: str) -> None:
    """Without the disk, a slash, a leading ~ or a certificate suffix names a file."""
    parsed = read_inventory_csv(f"target\n{target}\n", look_on_disk=False)

    [entry] = parsed.entries
    assert entry.endpoint is None
    assert entry.path is not None


def test_read_csv_off_disk_keeps_path_column(folder: Path) -> None:
    """A path column still names a file, which the caller then rejects."""
    parsed = read_inventory_csv("path\ncerts/site.pem\n", look_on_disk=False)

    [entry] = parsed.entries
    assert entry.endpoint is None
    assert entry.path == os.path.abspath("certs/site.pem")


def test_read_csv_huge_header_cell_is_csv_error() -> None:
    text = "target," + "x" * 200_000 + "\nwww.example.test,a\n"

    with pytest.raises(CsvError, match=r"cannot be read at line 1 \(field larger"):
        read_inventory_csv(text)
