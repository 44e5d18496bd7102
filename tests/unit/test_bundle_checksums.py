"""SHA256SUMS as the bundle writes and reads it (bundle/checksums.py)."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from pathlib import Path

import pytest

from appliance.errors import ConfigError
from bundle import layout
from bundle.checksums import parse_checksums, write_checksums

DIGEST = "ab" * 32


def make_tree(root: Path) -> Path:
    files = {
        "install.sh": b"#!/bin/sh\n",
        "manifest.json": b"{}\n",
        "wheels/SHA256SUMS": b"a nested SHA256SUMS is an ordinary file\n",
        "wheels/x-1.0-py3-none-any.whl": b"wheel",
        "images/server.tar": bytes(range(256)) * 10,
        "docs/quick guide.md": b"# spaces in names are fine\n",
        "Zeta.txt": b"upper case sorts first\n",
    }
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    (root / layout.CHECKSUMS).write_bytes(b"old\n")
    (root / layout.CHECKSUMS_SIG).write_bytes(b"old\n")
    return root


def test_checksums_list_every_file_but_themselves_sorted(tmp_path: Path) -> None:
    root = make_tree(tmp_path)
    listed = parse_checksums(write_checksums(root))
    assert list(listed) == sorted(listed)
    assert layout.CHECKSUMS not in listed
    assert layout.CHECKSUMS_SIG not in listed
    assert "wheels/SHA256SUMS" in listed
    assert listed["images/server.tar"] == hashlib.sha256(bytes(range(256)) * 10).hexdigest()
    assert len(listed) == 7


@pytest.mark.skipif(shutil.which("sha256sum") is None, reason="needs coreutils sha256sum")
def test_checksums_are_byte_for_byte_what_sha256sum_prints(tmp_path: Path) -> None:
    root = make_tree(tmp_path)
    data = write_checksums(root)
    names = list(parse_checksums(data))
    stock = subprocess.run(["sha256sum", "--", *names], cwd=root, capture_output=True, check=True)
    assert data == stock.stdout
    (root / layout.CHECKSUMS).write_bytes(data)
    assert (
        subprocess.run(["sha256sum", "-c", "--quiet", layout.CHECKSUMS], cwd=root).returncode == 0
    )


@pytest.mark.parametrize("name", ["new\nline.txt", "back\\slash.txt"])
def test_names_sha256sum_would_escape_are_refused(tmp_path: Path, name: str) -> None:
    (tmp_path / name).write_bytes(b"x")
    with pytest.raises(ConfigError, match="cannot list"):
        write_checksums(tmp_path)


def test_symlinks_are_refused(tmp_path: Path) -> None:
    (tmp_path / "target").write_bytes(b"x")
    (tmp_path / "link").symlink_to("target")
    with pytest.raises(ConfigError, match="symbolic link"):
        write_checksums(tmp_path)


def test_parse_round_trip() -> None:
    data = f"{DIGEST}  a/b.txt\n{'cd' * 32}  with two  spaces\n".encode()
    assert parse_checksums(data) == {"a/b.txt": DIGEST, "with two  spaces": "cd" * 32}


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (f"{DIGEST}  ok\n{DIGEST} one-space\n", "line 2: expected"),
        (f"{DIGEST.upper()}  upper\n", "line 1: expected"),
        (f"{DIGEST[:-1]}  short\n", "line 1: expected"),
        (f"{DIGEST} *binary-mode\n", "line 1: expected"),
        (f"{DIGEST}  crlf\r\n", "line 1: 'crlf\\\\r' is not a plain relative path"),
        (f"{DIGEST}  ok\n\n", "line 2: expected"),
        (f"{DIGEST}  no-final-newline", "line 1: missing final newline"),
        (f"{DIGEST}  a\n{DIGEST}  b\n{DIGEST}  a\n", "line 3: a is listed twice"),
        (f"{DIGEST}  ../x\n", "line 1: '../x' climbs out"),
        (f"{DIGEST}  a/../../x\n", "line 1: 'a/../../x' climbs out"),
        (f"{DIGEST}  /abs\n", "line 1: '/abs' is an absolute path"),
        (f"{DIGEST}  a//b\n", "line 1: 'a//b' is not a plain relative path"),
        (f"{DIGEST}  ./a\n", "line 1: './a' is not a plain relative path"),
        (f"{DIGEST}  a\\b\n", "line 1: .* is not a plain relative path"),
        (f"{DIGEST}  SHA256SUMS.sig\n", "line 1: SHA256SUMS.sig cannot list itself"),
        ("", "lists no files"),
    ],
)
def test_parse_refuses_malformed_lines(data: str, expected: str) -> None:
    with pytest.raises(ValueError, match=expected):
        parse_checksums(data.encode())


def test_parse_refuses_non_utf8() -> None:
    with pytest.raises(ValueError, match="not UTF-8"):
        parse_checksums(DIGEST.encode() + b"  \xff\n")
