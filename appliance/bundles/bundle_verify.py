"""Verify an install bundle (`appliance-<version>.tar` or its unpacked folder) before installing it.

The bundle is found, and its members' names and kinds checked, by bundle_reader.py (which the
audit reads it with too). Then the order follows the trust chain: the SSH signature over
SHA256SUMS first (namespace "appliance-bundle", by a key of the allowed signers that is inside
its valid-after/valid-before window and not in their revocation list), then every listed file against its SHA-256, each
read once in archive order, then nothing present but unlisted, then the manifest. Stock `sha256sum -c` and `ssh-keygen -Y verify` reach
the same verdict on the first two; they do not notice unlisted files, which is why this exists.
Given a keyring of Debian's archive keys, the .debs under debs/ are then traced to Debian's own
signatures as well (debian_archive.py): the bundle's signer vouches for them, Debian for their
provenance.

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
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from appliance.bundles import bundle_layout as layout
from appliance.bundles.bundle_checksums import parse_checksums
from appliance.bundles.bundle_reader import Bundle, read_bundle
from appliance.bundles.debian_archive import DebianReport, check_debian_packages
from appliance.errors import BundleRejected, SignatureError
from appliance.fsio import CHUNK_BYTES, SHA256_HEX
from appliance.progress import Progress, quiet
from appliance.trust.sshsig import AllowedSigner, VerifiedSignature, verify
from appliance.trust.strict_json import StrictJSONError, parse_strict_json

_SHA256_HEX = re.compile(SHA256_HEX)
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
    debian: DebianReport | None = None  # None when Debian's signatures were not checked

    def as_json(self) -> dict[str, Any]:
        """The report as a JSON object (what `appliance verify --json` prints)."""
        return {
            "version": self.version,
            "principal": self.principal,
            "fingerprint": self.fingerprint,
            "files": self.files,
            "bytes": self.bytes,
            "manifest": self.manifest,
            "debian": None if self.debian is None else self.debian.as_json(),
        }


def _names(names: Sequence[str]) -> str:
    """A short, sorted list of file names for a one-line message."""
    ordered = sorted(names)
    shown = ", ".join(ordered[:_SHOWN_NAMES])
    more = len(ordered) - _SHOWN_NAMES
    return f"{shown} and {more} more" if more > 0 else shown


def _read_signed_part(bundle: Bundle, name: str) -> bytes:
    """SHA256SUMS or its signature, read whole, refusing a missing one or one over its limit."""
    if name == layout.CHECKSUMS:
        missing, reason, limit = "missing-file", "bad-checksums", layout.MAX_CHECKSUMS_BYTES
    else:
        missing, reason, limit = "signature", "signature", layout.MAX_SIGNATURE_BYTES
    blob = bundle.files.get(name)
    if blob is None:
        raise BundleRejected(missing, f"bundle has no {name}")
    if blob.size > limit:
        raise BundleRejected(reason, f"{name} is {blob.size} bytes, over the {limit}-byte limit")
    with bundle.open(name) as stream:
        data = stream.read(blob.size + 1)
    if len(data) != blob.size:
        raise BundleRejected("truncated", f"bundle is truncated inside {name}")
    return data


def _check_signature(
    bundle: Bundle, signers: Sequence[AllowedSigner], progress: Progress
) -> tuple[VerifiedSignature, dict[str, str]]:
    """Trust SHA256SUMS only once its signature is good; return the signer and what it lists."""
    checksums = _read_signed_part(bundle, layout.CHECKSUMS)
    signature = _read_signed_part(bundle, layout.CHECKSUMS_SIG)
    try:
        signer = verify(checksums, signature, signers, layout.SIGNATURE_NAMESPACE)
    except SignatureError as exc:
        raise BundleRejected("signature", f"{layout.CHECKSUMS_SIG}: {exc}") from exc
    progress(f"signature good: {signer.principal} ({signer.fingerprint})")
    try:
        listed = parse_checksums(checksums)
    except ValueError as exc:
        raise BundleRejected("bad-checksums", str(exc)) from exc
    return signer, listed


def _sha256(bundle: Bundle, name: str, keep: bool) -> tuple[str, bytes | None]:
    """The SHA-256 of one file, read once in order; its bytes too when `keep` (the manifest)."""
    size = bundle.files[name].size
    digest = hashlib.sha256()
    kept = bytearray()
    read = 0
    with bundle.open(name) as stream:
        while chunk := stream.read(CHUNK_BYTES):
            digest.update(chunk)
            read += len(chunk)
            if keep:
                kept += chunk
    if read != size:
        raise BundleRejected("truncated", f"bundle is truncated inside {name}")
    return digest.hexdigest(), bytes(kept) if keep else None


def _check_files(bundle: Bundle, listed: dict[str, str], progress: Progress) -> bytes | None:
    """Every listed file present with its SHA-256, nothing unlisted; returns the manifest's bytes."""
    manifest: bytes | None = None
    unlisted: list[str] = []
    for name, blob in bundle.files.items():
        if name in layout.UNLISTED_FILES:
            continue
        keep = name == layout.MANIFEST
        if keep and blob.size > layout.MAX_MANIFEST_BYTES:
            msg = f"{name} is {blob.size} bytes, over the {layout.MAX_MANIFEST_BYTES}-byte limit"
            raise BundleRejected("bad-manifest", msg)
        digest, data = _sha256(bundle, name, keep)
        if keep:
            manifest = data
        expected = listed.get(name)
        if expected is None:
            unlisted.append(name)
        elif digest != expected:
            msg = f"{name} does not match its SHA-256 in {layout.CHECKSUMS}"
            raise BundleRejected("checksum-mismatch", msg)
    missing = [name for name in listed if name not in bundle.files]
    if missing:
        msg = f"listed in {layout.CHECKSUMS} but missing: {_names(missing)}"
        raise BundleRejected("missing-file", msg)
    if unlisted:
        msg = f"not listed in {layout.CHECKSUMS}: {_names(unlisted)}"
        raise BundleRejected("unlisted-file", msg)
    progress(f"{len(listed)} files, sha256 ok, nothing unlisted")
    return manifest


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
    path: Path,
    signers: Sequence[AllowedSigner],
    progress: Progress = quiet,
    debian_keyring: Path | None = None,
) -> BundleReport:
    """Verify the bundle archive or unpacked folder at `path`; BundleRejected says what is wrong.

    With `debian_keyring`, the .debs under debs/ must also trace to Debian's signatures with it.
    """
    bundle = read_bundle(path)
    signer, listed = _check_signature(bundle, signers, progress)
    manifest_bytes = _check_files(bundle, listed, progress)
    sizes = {name: blob.size for name, blob in bundle.files.items()}
    manifest = _check_manifest(manifest_bytes, bundle.version, listed, sizes)
    debian = None
    if debian_keyring is not None:
        debian = check_debian_packages(bundle, manifest, debian_keyring, progress)
    return BundleReport(
        version=bundle.version,
        principal=signer.principal,
        fingerprint=signer.fingerprint,
        files=len(listed),
        bytes=sum(sizes[name] for name in listed),
        manifest=manifest,
        debian=debian,
    )
