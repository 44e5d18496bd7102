"""Write the bundle folder as a reproducible uncompressed POSIX tar.

Same tree + same SOURCE_DATE_EPOCH => byte-identical archive: entries in a fixed order, every
timestamp set to SOURCE_DATE_EPOCH, owner root:root with empty names, modes reduced to 0755/0644.
SHA256SUMS and SHA256SUMS.sig come right after the top folder so a verifier reading the archive
as a stream checks the signature before hashing anything else; the rest follows sorted by path.
"""

from __future__ import annotations

import os
import stat
import tarfile
from pathlib import Path

from appliance.errors import ConfigError
from appliance.fsio import atomic_output
from bundle import layout

DIR_MODE = 0o755
EXECUTABLE_MODE = 0o755
FILE_MODE = 0o644


def _entries(root: Path) -> list[tuple[str, Path]]:
    """(archive name, source path) for the top folder and everything below it, in archive order."""
    top = root.name
    below: list[tuple[str, Path]] = []
    for dirpath, dirnames, filenames in os.walk(root):
        folder = Path(dirpath)
        for name in [*dirnames, *filenames]:
            path = folder / name
            mode = path.lstat().st_mode
            if not (stat.S_ISDIR(mode) or stat.S_ISREG(mode)):
                msg = f"{path} is not a regular file or folder; a bundle holds only those"
                raise ConfigError(msg)
            below.append((path.relative_to(root).as_posix(), path))
    first = [entry for entry in below if entry[0] in layout.UNLISTED_FILES]
    rest = [entry for entry in below if entry[0] not in layout.UNLISTED_FILES]
    ordered = sorted(first) + sorted(rest)
    return [(top, root)] + [(f"{top}/{name}", path) for name, path in ordered]


def _tar_info(name: str, path: Path, source_date_epoch: int) -> tarfile.TarInfo:
    """A header that depends only on the name, type, size and executable bit of `path`."""
    st = path.lstat()
    info = tarfile.TarInfo(name)
    info.mtime = source_date_epoch
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    if stat.S_ISDIR(st.st_mode):
        info.type = tarfile.DIRTYPE
        info.mode = DIR_MODE
    else:
        info.type = tarfile.REGTYPE
        info.size = st.st_size
        info.mode = EXECUTABLE_MODE if st.st_mode & 0o111 else FILE_MODE
    return info


def write_archive(root: Path, out: Path, source_date_epoch: int) -> None:
    """Write the folder `root` (named appliance-<version>) as the tar `out`, reproducibly."""
    if layout.version_of(root.name) is None:
        msg = f"bundle folder {root} must be named {layout.BUNDLE_PREFIX}<version>"
        raise ConfigError(msg)
    if source_date_epoch < 0:
        msg = f"SOURCE_DATE_EPOCH must be >= 0, got {source_date_epoch}"
        raise ConfigError(msg)
    entries = _entries(root)
    with (
        atomic_output(out, FILE_MODE) as handle,
        tarfile.open(fileobj=handle, mode="w", format=tarfile.PAX_FORMAT) as tar,
    ):
        for name, path in entries:
            info = _tar_info(name, path, source_date_epoch)
            if info.isdir():
                tar.addfile(info)
                continue
            with path.open("rb") as source:
                tar.addfile(info, source)
