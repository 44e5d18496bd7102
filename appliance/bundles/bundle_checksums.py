"""SHA256SUMS: write it the way `sha256sum` prints it, and parse it back strictly (the builder
writes it, the node reads it, both with this module).

Each line is `<64 lowercase hex>  <relative/path>\n` (text mode, two spaces), sorted by path, so
`sha256sum -c SHA256SUMS` run inside the bundle folder checks every file. Names that sha256sum
would have to escape (newline, backslash) are refused rather than escaped.
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

from appliance.bundles import bundle_layout as layout
from appliance.errors import ConfigError
from appliance.fsio import SHA256_HEX, sha256_file

_LINE = re.compile(rf"({SHA256_HEX})  (.+)")
_FORBIDDEN_CHARS = ("\n", "\r", "\\", "\x00")


def check_relative_path(path: str) -> None:
    """Refuse a path that is absolute, climbs with '..', is not canonical, or needs escaping."""
    if path.startswith("/"):
        msg = f"{path!r} is an absolute path"
        raise ValueError(msg)
    parts = path.split("/")
    if ".." in parts:
        msg = f"{path!r} climbs out with '..'"
        raise ValueError(msg)
    if any(char in path for char in _FORBIDDEN_CHARS) or any(p in ("", ".") for p in parts):
        msg = f"{path!r} is not a plain relative path"
        raise ValueError(msg)


def bundle_files(root: Path) -> list[str]:
    """Every regular file below `root` as a sorted relative POSIX path; refuse links and devices."""
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        folder = Path(dirpath)
        for name in [*dirnames, *filenames]:
            path = folder / name
            mode = path.lstat().st_mode
            relative = path.relative_to(root).as_posix()
            if stat.S_ISDIR(mode):
                continue
            if stat.S_ISLNK(mode):
                msg = f"{relative} in {root} is a symbolic link; a bundle holds only files and folders"
                raise ConfigError(msg)
            if not stat.S_ISREG(mode):
                msg = f"{relative} in {root} is not a regular file or folder"
                raise ConfigError(msg)
            found.append(relative)
    return sorted(found)


def write_checksums(root: Path) -> bytes:
    """SHA256SUMS content for every file below `root` except SHA256SUMS and its signature."""
    lines = []
    for relative in bundle_files(root):
        if relative in layout.UNLISTED_FILES:
            continue
        try:
            check_relative_path(relative)
            relative.encode("utf-8")
        except (ValueError, UnicodeEncodeError) as exc:
            msg = f"cannot list {relative!r} in {layout.CHECKSUMS}: {exc}"
            raise ConfigError(msg) from exc
        lines.append(f"{sha256_file(root / relative)}  {relative}\n")
    return "".join(lines).encode("utf-8")


def parse_checksums(data: bytes) -> dict[str, str]:
    """Parse SHA256SUMS into {relative path: hex digest}; ValueError names the bad line."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        msg = f"{layout.CHECKSUMS} is not UTF-8 ({exc})"
        raise ValueError(msg) from exc
    if not text:
        msg = f"{layout.CHECKSUMS} lists no files"
        raise ValueError(msg)
    if not text.endswith("\n"):
        msg = f"{layout.CHECKSUMS} line {text.count(chr(10)) + 1}: missing final newline"
        raise ValueError(msg)
    listed: dict[str, str] = {}
    for number, line in enumerate(text[:-1].split("\n"), start=1):
        match = _LINE.fullmatch(line)
        if match is None:
            msg = f"{layout.CHECKSUMS} line {number}: expected '<64 lowercase hex>  <path>'"
            raise ValueError(msg)
        digest, path = match.groups()
        try:
            check_relative_path(path)
        except ValueError as exc:
            msg = f"{layout.CHECKSUMS} line {number}: {exc}"
            raise ValueError(msg) from exc
        if path in layout.UNLISTED_FILES:
            msg = f"{layout.CHECKSUMS} line {number}: {path} cannot list itself or its signature"
            raise ValueError(msg)
        if path in listed:
            msg = f"{layout.CHECKSUMS} line {number}: {path} is listed twice"
            raise ValueError(msg)
        listed[path] = digest
    return listed
