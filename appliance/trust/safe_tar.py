"""Rules for reading an untrusted tar archive, shared by result packs and bundles.

Each check returns what is wrong as text (None when fine); the caller raises its own error
(PackRejected, BundleRejected) with its own reason code.
"""

from __future__ import annotations

import tarfile
from typing import BinaryIO

from appliance.fsio import CHUNK_BYTES

TAR_BLOCK = 512
MEMBER_KINDS = {
    tarfile.SYMTYPE: "a symbolic link",
    tarfile.LNKTYPE: "a hard link",
    tarfile.CHRTYPE: "a character device",
    tarfile.BLKTYPE: "a block device",
    tarfile.FIFOTYPE: "a FIFO",
    tarfile.DIRTYPE: "a directory",
}


def member_kind(member: tarfile.TarInfo) -> str:
    """What a member is, in words, for a refusal message."""
    return MEMBER_KINDS.get(member.type, f"an unsupported member type {member.type!r}")


def trailer_problem(handle: BinaryIO, offset: int) -> str | None:
    """Whether the archive ends with its end-of-archive marker (zero blocks) and nothing else."""
    handle.seek(offset)
    zeros = 0
    while chunk := handle.read(CHUNK_BYTES):
        if chunk.count(0) != len(chunk):
            return "has bytes after its last readable member (corrupt or truncated header)"
        zeros += len(chunk)
    if zeros < 2 * TAR_BLOCK:
        return "is truncated (no end-of-archive marker)"
    return None
