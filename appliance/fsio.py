"""Durable file-system primitives: atomic writes, fsync of files and folders, chunked hashing."""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

CHUNK_BYTES = 1 << 20
SHA256_HEX = r"[0-9a-f]{64}"  # a SHA-256 digest as sha256_file and sha256sum write it


def format_bytes(count: int) -> str:
    """A byte count for people: 812 B, 3.4 MiB, 1.2 GiB."""
    size = float(count)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{count} B" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TiB"


def fsync_path(path: Path) -> None:
    """Flush a file or a folder entry to stable storage."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(root: Path) -> None:
    """Flush every file and folder below `root`, then `root` itself."""
    for dirpath, _dirnames, filenames in os.walk(root):
        for name in filenames:
            fsync_path(Path(dirpath) / name)
        fsync_path(Path(dirpath))


@contextmanager
def atomic_output(path: Path, mode: int = 0o644) -> Iterator[BinaryIO]:
    """A file to write that appears at `path` whole, and flushed, when the block ends.

    Readers see the old file or the whole new one, never a part; on an error the partial file
    (a hidden temporary name beside `path`) is removed.
    """
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            os.fchmod(handle.fileno(), mode)
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_path(path.parent)


def atomic_write_bytes(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Write `data` to `path` so that readers see the old file or the whole new one, never a part."""
    with atomic_output(path, mode) as handle:
        handle.write(data)


def append_line(path: Path, line: str) -> None:
    """Append one line to `path` in a single write and flush it (an append-only log)."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
    try:
        os.write(fd, line.encode("utf-8") + b"\n")
        os.fsync(fd)
    finally:
        os.close(fd)


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file, read in fixed-size chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter_chunks(handle):
            digest.update(chunk)
    return digest.hexdigest()


def iter_chunks(handle: BinaryIO, size: int | None = None) -> Iterator[bytes]:
    """Yield a stream's bytes in chunks of CHUNK_BYTES, up to `size` bytes if given."""
    remaining = size
    while remaining is None or remaining > 0:
        want = CHUNK_BYTES if remaining is None else min(CHUNK_BYTES, remaining)
        chunk = handle.read(want)
        if not chunk:
            return
        if remaining is not None:
            remaining -= len(chunk)
        yield chunk


def unused_path(folder: Path, stem: str, suffix: str = "") -> Path:
    """`folder/stem+suffix`, or `folder/stem.N+suffix` for the first N not taken."""
    target = folder / f"{stem}{suffix}"
    number = 1
    while target.exists() or target.is_symlink():
        target = folder / f"{stem}.{number}{suffix}"
        number += 1
    return target


def remove_tree(path: Path) -> None:
    """Remove a folder and everything in it; a missing folder is fine."""
    if path.exists():
        shutil.rmtree(path)


@contextmanager
def scratch_dir(parent: Path, prefix: str) -> Iterator[Path]:
    """A fresh folder under `parent`, removed on exit whatever happens."""
    parent.mkdir(parents=True, exist_ok=True)
    path = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
