"""Read an install bundle in place: find it in a `.tar` or an unpacked folder, list its files.

`appliance verify` (bundle_verify.py) and `appliance audit` (bundle_audit.py) both read a bundle
with `read_bundle`, so they agree on what a bundle is (docs/formats.md, "Reading a bundle"):

- an archive: its first member is the folder `appliance-<version>/` and every other member is
  below it, each a safe relative path, met once, a folder or a regular file (`member_file_name`);
  the archive ends with its end-of-archive marker and nothing else;
- a folder: the top folder `appliance-<version>` itself, or a folder holding exactly one entry,
  that top folder (not a link); every file below it is a regular file, never a link or device.

Nothing is extracted or copied: each file is a `Blob`, bytes at an offset of a file on disk, read
with positional reads, so threads may read several files of one archive at once (the audit gzips
an image's layers in parallel). A tar inside the bundle (an image archive) is listed the same way
with `tar_files`. Nothing here checks a signature or a checksum: that is bundle_verify.py's job.
"""

from __future__ import annotations

import io
import os
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from appliance.bundles import bundle_layout as layout
from appliance.bundles.bundle_checksums import bundle_files, check_relative_path
from appliance.errors import BundleRejected, ConfigError
from appliance.fsio import CHUNK_BYTES
from appliance.trust.safe_tar import member_kind, trailer_problem


@dataclass(frozen=True)
class Blob:
    """The `size` bytes at `start` in the file at `path`: a bundle's file, an image's member, a layer."""

    path: Path
    start: int
    size: int

    def within(self, member: tarfile.TarInfo, where: str) -> Blob:
        """A member of the tar held in this blob, as a blob of the same file."""
        if member.offset_data + member.size > self.size:
            raise BundleRejected("truncated", f"{where} is truncated")
        return Blob(self.path, self.start + member.offset_data, member.size)

    def open(self) -> io.BufferedReader:
        """A read-only, seekable file over the blob; OSError if its file cannot be opened plainly."""
        return io.BufferedReader(_Window(self), CHUNK_BYTES)


class _Window(io.RawIOBase):
    """A read-only, seekable file over one blob; positional reads, so threads may share the file."""

    def __init__(self, blob: Blob) -> None:
        super().__init__()
        self.blob = blob
        self.fd = os.open(blob.path, os.O_RDONLY | os.O_NOFOLLOW)
        self.position = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.position, io.SEEK_END: self.blob.size}[whence]
        self.position = max(0, base + offset)
        return self.position

    def readinto(self, buffer: Any) -> int:
        wanted = min(len(buffer), self.blob.size - self.position)
        if wanted <= 0:
            return 0
        data = os.pread(self.fd, wanted, self.blob.start + self.position)
        buffer[: len(data)] = data
        self.position += len(data)
        return len(data)

    def close(self) -> None:
        if not self.closed:
            os.close(self.fd)
        super().close()


def read_small(blob: Blob, limit: int, where: str) -> bytes:
    """A small file read whole; BundleRejected when it is over `limit` bytes or cut short."""
    if blob.size > limit:
        msg = f"{where} is {blob.size} bytes, over the {limit}-byte limit"
        raise BundleRejected("too-large", msg)
    with blob.open() as stream:
        data = stream.read(blob.size)
    if len(data) != blob.size:
        raise BundleRejected("truncated", f"{where} is truncated")
    return data


# --- tars we write: bundles, image archives, layers -------------------------------------------


def open_tar(stream: io.BufferedReader, where: str, reason: str = "not-a-tar") -> tarfile.TarFile:
    """`stream` as an uncompressed tar; BundleRejected(`reason`) when it is not one."""
    try:
        return tarfile.open(fileobj=stream, mode="r:")
    except tarfile.TarError as exc:
        msg = f"{where} is not an uncompressed tar archive ({exc})"
        raise BundleRejected(reason, msg) from exc


def next_member(tar: tarfile.TarFile, where: str) -> tarfile.TarInfo | None:
    """The next member's header, None at the end; BundleRejected when it cannot be read."""
    try:
        return tar.next()
    except tarfile.TarError as exc:
        raise BundleRejected("truncated", f"{where} is not a readable tar ({exc})") from exc


def check_trailer(stream: io.BufferedReader, offset: int, where: str) -> None:
    """The tar must end at `offset` with its end-of-archive marker: zero blocks and nothing else."""
    problem = trailer_problem(stream, offset)
    if problem is not None:
        raise BundleRejected("truncated", f"{where} {problem}")


def member_file_name(member: tarfile.TarInfo, seen: set[str]) -> str | None:
    """The name of a member that carries a file, None for a folder; ValueError for anything else.

    The rules for every tar the project writes (bundles, image archives, layers): a safe relative
    path, each name once, and only folders and regular files (no links, devices or sparse files).
    The ValueError's text is one line starting with "member".
    """
    name = member.name.rstrip("/") if member.isdir() else member.name
    try:
        check_relative_path(name)
    except ValueError as exc:
        msg = f"member {exc}"
        raise ValueError(msg) from exc
    if name in seen:
        msg = f"member {name!r} appears twice"
        raise ValueError(msg)
    seen.add(name)
    if member.isdir():
        return None
    if not member.isreg():
        msg = f"member {name!r} is {member_kind(member)}"
        raise ValueError(msg)
    if member.issparse():
        msg = f"member {name!r} is a sparse file"
        raise ValueError(msg)
    return name


def tar_files(blob: Blob, where: str) -> Iterator[tuple[str, Blob]]:
    """(name, blob) for each regular file of a tar we write, in order; refuse anything else."""
    seen: set[str] = set()
    with blob.open() as stream, open_tar(stream, where) as tar:
        while (member := next_member(tar, where)) is not None:
            try:
                name = member_file_name(member, seen)
            except ValueError as exc:
                raise BundleRejected("unsafe-member", f"{where}: {exc}") from exc
            if name is not None:
                yield name, blob.within(member, f"{where}: {name}")
        check_trailer(stream, tar.offset, where)


# --- the bundle: an archive or an unpacked folder ----------------------------------------------


@dataclass(frozen=True)
class Bundle:
    """A bundle's version and files (path below the top folder -> bytes), in archive or path order."""

    version: str
    files: dict[str, Blob]
    unpacked: bool

    def open(self, name: str) -> io.BufferedReader:
        """One file of the bundle, refusing a link swapped into an unpacked bundle meanwhile."""
        try:
            return self.files[name].open()
        except OSError as exc:
            if not self.unpacked:
                raise
            msg = f"member {name!r} cannot be opened as a plain file ({exc.strerror})"
            raise BundleRejected("unsafe-member", msg) from exc


def read_bundle(path: Path) -> Bundle:
    """Find the bundle at `path` and list its files (see the module docstring for the rules).

    BundleRejected when `path` is not a bundle or holds an unsafe member; ConfigError when it
    cannot be read at all.
    """
    try:
        if path.is_file():
            return _read_archive(path)
        if path.is_dir():
            return _read_folder(path)
    except OSError as exc:
        msg = f"{path}: cannot read ({exc.strerror or exc})"
        raise ConfigError(msg) from exc
    raise BundleRejected("not-a-bundle", f"{path} is neither a file nor a folder")


def _top_member(tar: tarfile.TarFile) -> str:
    """The version named by the first member, which must be the folder appliance-<version>/."""
    first = next_member(tar, "bundle")
    if first is None:
        raise BundleRejected("not-a-bundle", "bundle archive is empty")
    version = layout.version_of(first.name.rstrip("/"))
    if not first.isdir() or version is None:
        msg = f"first member {first.name!r} must be the folder {layout.BUNDLE_PREFIX}<version>/"
        raise BundleRejected("not-a-bundle", msg)
    return version


def _read_archive(path: Path) -> Bundle:
    """Walk the archive's headers once, in order, checking each member; data is not read."""
    whole = Blob(path, 0, path.stat().st_size)
    files: dict[str, Blob] = {}
    with whole.open() as stream, open_tar(stream, "bundle", "not-a-bundle") as tar:
        version = _top_member(tar)
        top = layout.top_dir(version)
        seen = {top}
        while (member := next_member(tar, "bundle")) is not None:
            try:
                name = member_file_name(member, seen)
            except ValueError as exc:
                raise BundleRejected("unsafe-member", str(exc)) from exc
            path_in_tar = member.name.rstrip("/")
            if not path_in_tar.startswith(f"{top}/"):
                msg = f"member {path_in_tar!r} is outside the top folder {top}/"
                raise BundleRejected("unsafe-member", msg)
            if name is not None:
                relative = name[len(top) + 1 :]
                files[relative] = whole.within(member, f"bundle file {relative}")
        check_trailer(stream, tar.offset, "bundle")
    return Bundle(version, files, unpacked=False)


def _folder_top(path: Path) -> tuple[Path, str]:
    """The bundle folder itself, or the one entry of a folder a bundle was unpacked into."""
    version = layout.version_of(path.name)
    if version is not None:
        return path, version
    children = list(path.iterdir())
    if len(children) == 1 and children[0].is_dir() and not children[0].is_symlink():
        version = layout.version_of(children[0].name)
        if version is not None:
            return children[0], version
    msg = f"{path} is neither a {layout.BUNDLE_PREFIX}<version> folder nor holds exactly one"
    raise BundleRejected("not-a-bundle", msg)


def _read_folder(path: Path) -> Bundle:
    """List an unpacked bundle: every file below the top folder, by path."""
    top, version = _folder_top(path)
    try:
        names = bundle_files(top)
    except ConfigError as exc:
        raise BundleRejected("unsafe-member", str(exc)) from exc
    for name in names:
        try:
            check_relative_path(name)
        except ValueError as exc:
            raise BundleRejected("unsafe-member", f"file {exc}") from exc
    files = {name: Blob(top / name, 0, (top / name).lstat().st_size) for name in names}
    return Bundle(version, files, unpacked=True)
