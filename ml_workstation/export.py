"""Copy a result pack to removable media or a share so that a reader never sees a partial file.

The copy goes to a hidden temporary name, is flushed, dropped from the page cache and read back
from the medium to compare its SHA-256 with the source, and only then renamed into place.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path

from appliance.errors import ConfigError
from appliance.fsio import CHUNK_BYTES, format_bytes, fsync_path, sha256_file

PACK_MODE = 0o644  # readable by the node's import user on a shared folder


def _copy_hashing(source: Path, target_fd: int) -> str:
    """Copy `source` into an open file, returning the SHA-256 of what was read."""
    digest = hashlib.sha256()
    with source.open("rb") as reader, os.fdopen(target_fd, "wb", closefd=False) as writer:
        while chunk := reader.read(CHUNK_BYTES):
            digest.update(chunk)
            writer.write(chunk)
        writer.flush()
        os.fsync(target_fd)
    return digest.hexdigest()


def _reread_sha256(path: Path) -> str:
    """SHA-256 of a file as the medium returns it, not as the page cache remembers it."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)
    return sha256_file(path)


def export_pack(pack: Path, destination: Path) -> tuple[Path, str]:
    """Copy `pack` into the folder `destination`; returns (copy, sha256). Safe to run twice."""
    if not pack.is_file():
        msg = f"{pack}: no such pack file"
        raise ConfigError(msg)
    if not destination.is_dir():
        msg = f"{destination}: not a folder (is the stick or share mounted?)"
        raise ConfigError(msg)
    final = destination / pack.name
    size = pack.stat().st_size
    if final.exists():
        if final.stat().st_size == size and sha256_file(final) == sha256_file(pack):
            return final, sha256_file(final)
        msg = f"{final} exists with other content; remove it or export under another name"
        raise ConfigError(msg)
    free = shutil.disk_usage(destination).free
    if free < size:
        msg = f"{destination}: {format_bytes(free)} free, the pack needs {format_bytes(size)}"
        raise ConfigError(msg)
    try:
        fd, temp_name = tempfile.mkstemp(prefix=f".{pack.name}.", suffix=".part", dir=destination)
    except OSError as exc:
        msg = f"{destination}: cannot write there ({exc.strerror}; is it mounted read-only?)"
        raise ConfigError(msg) from exc
    temp = Path(temp_name)
    os.fchmod(fd, PACK_MODE)
    try:
        try:
            source_hash = _copy_hashing(pack, fd)
        finally:
            os.close(fd)
        copy_hash = _reread_sha256(temp)
    except OSError as exc:
        temp.unlink(missing_ok=True)
        msg = f"{destination}: copy failed ({exc.strerror})"
        raise ConfigError(msg) from exc
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    if copy_hash != source_hash:
        temp.unlink()
        msg = f"{destination}: the copy reads back differently from {pack.name} (bad medium?)"
        raise ConfigError(msg)
    os.replace(temp, final)
    fsync_path(destination)
    return final, source_hash
