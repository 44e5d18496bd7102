"""Verify an install bundle (`appliance-<version>.tar` or its unpacked folder) before installing it.

The order follows the trust chain: the SSH signature over SHA256SUMS first (namespace
"appliance-bundle"), then every listed file against its SHA-256 while it is read, then nothing
present but unlisted, then the manifest. Stock `sha256sum -c` and `ssh-keygen -Y verify` reach
the same verdict on the first two; they do not notice unlisted files, which is why this exists.

manifest.json, the part this module checks (any other keys, e.g. `build` or `components`, pass):

    {
      "format": "appliance-bundle",
      "format_version": 1,
      "version": "<version>",             same as the top folder appliance-<version>/
      "min_upgrade_from": "<version>",    the oldest installed version that may upgrade to this one
      "images": [                         each file listed in SHA256SUMS with the same digest
        {"file": "images/server.tar", "sha256": "<64 hex>", "size": <bytes>}
      ]
    }
"""

from __future__ import annotations

import hashlib
import os
import re
import tarfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, BinaryIO

from appliance import bundle_layout as layout
from appliance.bundle_checksums import bundle_files, check_relative_path, parse_checksums
from appliance.errors import BundleRejected, ConfigError, SignatureError
from appliance.fsio import CHUNK_BYTES
from appliance.safe_tar import member_kind, trailer_problem
from appliance.sshsig import AllowedSigner, VerifiedSignature, verify
from appliance.strict_json import StrictJSONError, parse_strict_json

Progress = Callable[[str], None]

_SHA256_HEX = re.compile(r"[0-9a-f]{64}")
_SHOWN_NAMES = 5


@dataclass(frozen=True)
class BundleReport:
    """What a verified bundle is, who signed it, and how much was checked."""

    version: str
    principal: str
    fingerprint: str
    files: int
    bytes: int
    manifest: dict[str, Any]

    def as_json(self) -> dict[str, Any]:
        """The report as a JSON object (what `appliance verify --json` prints)."""
        return {
            "version": self.version,
            "principal": self.principal,
            "fingerprint": self.fingerprint,
            "files": self.files,
            "bytes": self.bytes,
            "manifest": self.manifest,
        }


def _quiet(_message: str) -> None:
    """Progress sink that drops messages."""


def _names(names: Sequence[str]) -> str:
    """A short, sorted list of file names for a one-line message."""
    ordered = sorted(names)
    shown = ", ".join(ordered[:_SHOWN_NAMES])
    more = len(ordered) - _SHOWN_NAMES
    return f"{shown} and {more} more" if more > 0 else shown


@dataclass
class _Tally:
    """Files met so far, checked against SHA256SUMS as soon as its signature is known good."""

    signers: Sequence[AllowedSigner]
    progress: Progress
    checksums: bytes | None = None
    signature: bytes | None = None
    signer: VerifiedSignature | None = None
    listed: dict[str, str] | None = None
    sizes: dict[str, int] = field(default_factory=dict)
    pending: dict[str, str] = field(default_factory=dict)
    unlisted: list[str] = field(default_factory=list)
    manifest_bytes: bytes | None = None

    def add(self, name: str, stream: IO[bytes], size: int) -> None:
        """Take one file of the bundle, `size` bytes, read from `stream` once."""
        if name in layout.UNLISTED_FILES:
            self._add_signed_part(name, _read_small(name, stream, size))
            return
        keep = name == layout.MANIFEST
        if keep and size > layout.MAX_MANIFEST_BYTES:
            msg = f"{name} is {size} bytes, over the {layout.MAX_MANIFEST_BYTES}-byte limit"
            raise BundleRejected("bad-manifest", msg)
        digest = hashlib.sha256()
        kept = bytearray()
        read = 0
        while chunk := stream.read(CHUNK_BYTES):
            digest.update(chunk)
            read += len(chunk)
            if keep:
                kept += chunk
        if read != size:
            raise BundleRejected("truncated", f"bundle is truncated inside {name}")
        if keep:
            self.manifest_bytes = bytes(kept)
        self.sizes[name] = size
        if self.listed is None:
            self.pending[name] = digest.hexdigest()
        else:
            self._check(self.listed, name, digest.hexdigest())

    def _add_signed_part(self, name: str, data: bytes) -> None:
        if name == layout.CHECKSUMS:
            self.checksums = data
        else:
            self.signature = data
        if self.checksums is not None and self.signature is not None:
            self._verify_signature(self.checksums, self.signature)

    def _verify_signature(self, checksums: bytes, signature: bytes) -> None:
        """Trust SHA256SUMS only once its signature is good, then check the files met so far."""
        try:
            self.signer = verify(checksums, signature, self.signers, layout.SIGNATURE_NAMESPACE)
        except SignatureError as exc:
            raise BundleRejected("signature", f"{layout.CHECKSUMS_SIG}: {exc}") from exc
        self.progress(f"signature good: {self.signer.principal} ({self.signer.fingerprint})")
        try:
            self.listed = parse_checksums(checksums)
        except ValueError as exc:
            raise BundleRejected("bad-checksums", str(exc)) from exc
        for name, digest in sorted(self.pending.items()):
            self._check(self.listed, name, digest)
        self.pending.clear()

    def _check(self, listed: dict[str, str], name: str, digest: str) -> None:
        expected = listed.get(name)
        if expected is None:
            self.unlisted.append(name)
        elif digest != expected:
            msg = f"{name} does not match its SHA-256 in {layout.CHECKSUMS}"
            raise BundleRejected("checksum-mismatch", msg)

    def finish(self) -> tuple[VerifiedSignature, dict[str, str]]:
        """After the last file: refuse a missing signature, missing files, unlisted files."""
        if self.checksums is None:
            raise BundleRejected("missing-file", f"bundle has no {layout.CHECKSUMS}")
        if self.signer is None or self.listed is None:
            raise BundleRejected("signature", f"bundle has no {layout.CHECKSUMS_SIG}")
        missing = [name for name in self.listed if name not in self.sizes]
        if missing:
            msg = f"listed in {layout.CHECKSUMS} but missing: {_names(missing)}"
            raise BundleRejected("missing-file", msg)
        if self.unlisted:
            msg = f"not listed in {layout.CHECKSUMS}: {_names(self.unlisted)}"
            raise BundleRejected("unlisted-file", msg)
        self.progress(f"{len(self.listed)} files, sha256 ok, nothing unlisted")
        return self.signer, self.listed


def _read_small(name: str, stream: IO[bytes], size: int) -> bytes:
    """Read SHA256SUMS or its signature whole, refusing one over its size limit."""
    limit = layout.MAX_CHECKSUMS_BYTES if name == layout.CHECKSUMS else layout.MAX_SIGNATURE_BYTES
    if size > limit:
        reason = "bad-checksums" if name == layout.CHECKSUMS else "signature"
        raise BundleRejected(reason, f"{name} is {size} bytes, over the {limit}-byte limit")
    data = stream.read(size + 1)
    if len(data) != size:
        raise BundleRejected("truncated", f"bundle is truncated inside {name}")
    return data


def _unsafe(name: str, problem: str) -> BundleRejected:
    return BundleRejected("unsafe-member", f"member {name!r} {problem}")


def _next_member(tar: tarfile.TarFile) -> tarfile.TarInfo | None:
    try:
        return tar.next()
    except tarfile.TarError as exc:
        msg = f"bundle is not a readable tar archive ({exc})"
        raise BundleRejected("truncated", msg) from exc


def _top_member(tar: tarfile.TarFile) -> str:
    """The version named by the first member, which must be the folder appliance-<version>/."""
    first = _next_member(tar)
    if first is None:
        raise BundleRejected("not-a-bundle", "bundle archive is empty")
    name = first.name.rstrip("/")
    version = layout.version_of(name)
    if not first.isdir() or version is None:
        msg = f"first member {first.name!r} must be the folder {layout.BUNDLE_PREFIX}<version>/"
        raise BundleRejected("not-a-bundle", msg)
    return version


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


def _member_path(member: tarfile.TarInfo, top: str, seen: set[str]) -> str | None:
    """The path of a member below the top folder if it carries a file, None for a folder."""
    try:
        name = member_file_name(member, seen)
    except ValueError as exc:
        raise BundleRejected("unsafe-member", str(exc)) from exc
    path = member.name.rstrip("/")
    if not path.startswith(f"{top}/"):
        raise _unsafe(path, f"is outside the top folder {top}/")
    return None if name is None else name[len(top) + 1 :]


def _check_trailer(handle: BinaryIO, offset: int) -> None:
    """The archive must end with its end-of-archive marker: zero blocks and nothing else."""
    problem = trailer_problem(handle, offset)
    if problem is not None:
        raise BundleRejected("truncated", f"bundle {problem}")


def _read_archive(path: Path, tally: _Tally) -> str:
    """Walk the tar once, in order, hashing each file as it streams past; return the version."""
    with path.open("rb") as handle:
        try:
            tar = tarfile.open(fileobj=handle, mode="r:")  # noqa: SIM115 (closed below)
        except tarfile.TarError as exc:
            msg = f"not an uncompressed tar archive ({exc})"
            raise BundleRejected("not-a-bundle", msg) from exc
        with tar:
            version = _top_member(tar)
            top = layout.top_dir(version)
            seen = {top}
            while (member := _next_member(tar)) is not None:
                name = _member_path(member, top, seen)
                if name is None:
                    continue
                stream = tar.extractfile(member)
                if stream is None:
                    raise _unsafe(member.name, "has no readable data")
                try:
                    tally.add(name, stream, member.size)
                except tarfile.TarError as exc:
                    msg = f"bundle is truncated inside {name}"
                    raise BundleRejected("truncated", msg) from exc
            _check_trailer(handle, tar.offset)
    return version


def _folder_top(path: Path) -> tuple[Path, str]:
    """The bundle folder itself, or the one appliance-<version> folder a tar was unpacked into."""
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


def _add_file(tally: _Tally, top: Path, name: str) -> None:
    """Hash one file of an unpacked bundle, refusing to follow a link swapped in meanwhile."""
    try:
        fd = os.open(top / name, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError as exc:
        raise _unsafe(name, f"cannot be opened as a plain file ({exc.strerror})") from exc
    with os.fdopen(fd, "rb") as stream:
        tally.add(name, stream, os.fstat(fd).st_size)


def _read_folder(path: Path, tally: _Tally) -> str:
    """Check an unpacked bundle: SHA256SUMS and its signature first, then every file by path."""
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
    signed_parts = [name for name in layout.UNLISTED_FILES if name in names]
    for name in [*signed_parts, *(name for name in names if name not in signed_parts)]:
        _add_file(tally, top, name)
    return version


def _manifest_error(message: str) -> BundleRejected:
    return BundleRejected("bad-manifest", f"{layout.MANIFEST}: {message}")


def _check_image(index: int, entry: Any, listed: dict[str, str], sizes: dict[str, int]) -> None:
    """An image entry must name a listed file and agree with its digest and size."""
    where = f"images[{index}]"
    if not isinstance(entry, dict) or not set(layout.IMAGE_ENTRY_FIELDS) <= set(entry):
        msg = f"{where} must be an object with {', '.join(layout.IMAGE_ENTRY_FIELDS)}"
        raise _manifest_error(msg)
    file, digest, size = entry["file"], entry["sha256"], entry["size"]
    if not isinstance(file, str) or file not in listed:
        raise _manifest_error(f"{where}: file {file!r} is not listed in {layout.CHECKSUMS}")
    if not isinstance(digest, str) or not _SHA256_HEX.fullmatch(digest):
        raise _manifest_error(f"{where}: sha256 must be 64 lowercase hex digits")
    if digest != listed[file]:
        raise _manifest_error(f"{where}: sha256 of {file} differs from {layout.CHECKSUMS}")
    if not isinstance(size, int) or isinstance(size, bool) or size != sizes[file]:
        raise _manifest_error(f"{where}: size {size!r} of {file} is not {sizes[file]}")


def _check_manifest(
    data: bytes | None, version: str, listed: dict[str, str], sizes: dict[str, int]
) -> dict[str, Any]:
    """The manifest must be listed, well formed, name this bundle's version and its images."""
    if layout.MANIFEST not in listed or data is None:
        raise _manifest_error(f"not listed in {layout.CHECKSUMS}")
    try:
        raw = parse_strict_json(data)
    except StrictJSONError as exc:
        raise _manifest_error(str(exc)) from exc
    if not isinstance(raw, dict):
        raise _manifest_error("must be a JSON object")
    missing = [key for key in layout.MANIFEST_REQUIRED_FIELDS if key not in raw]
    if missing:
        raise _manifest_error(f"missing {', '.join(missing)}")
    if raw["format"] != layout.MANIFEST_FORMAT:
        raise _manifest_error(f"format must be {layout.MANIFEST_FORMAT!r}")
    version_field = raw["format_version"]
    # `true == 1` and `1.0 == 1` in Python: the type must be exactly an integer.
    if type(version_field) is not int or version_field != layout.MANIFEST_VERSION:
        msg = f"format_version {raw['format_version']!r} is not {layout.MANIFEST_VERSION}"
        raise _manifest_error(msg)
    if raw["version"] != version:
        msg = f"version {raw['version']!r} differs from the folder {layout.top_dir(version)}/"
        raise _manifest_error(msg)
    floor = raw["min_upgrade_from"]
    if not isinstance(floor, str) or not layout.VERSION_PATTERN.fullmatch(floor):
        raise _manifest_error("min_upgrade_from must be a version string")
    images = raw["images"]
    if not isinstance(images, list):
        raise _manifest_error("images must be a list")
    for index, entry in enumerate(images):
        _check_image(index, entry, listed, sizes)
    return raw


def verify_bundle(
    path: Path, signers: Sequence[AllowedSigner], progress: Progress = _quiet
) -> BundleReport:
    """Verify the bundle archive or unpacked folder at `path`; BundleRejected says what is wrong."""
    tally = _Tally(signers, progress)
    if path.is_file():
        version = _read_archive(path, tally)
    elif path.is_dir():
        version = _read_folder(path, tally)
    else:
        raise BundleRejected("not-a-bundle", f"{path} is neither a file nor a folder")
    signer, listed = tally.finish()
    manifest = _check_manifest(tally.manifest_bytes, version, listed, tally.sizes)
    return BundleReport(
        version=version,
        principal=signer.principal,
        fingerprint=signer.fingerprint,
        files=len(listed),
        bytes=sum(tally.sizes[name] for name in listed),
        manifest=manifest,
    )
