"""Result packs: the signed manifest, and reading a pack safely from an untrusted file.

Verification follows the manifest as the root of trust: the signature over pack.json first (by a
key of the allowed signers, inside its validity window, not in their revocation list), then
every member against the manifest's size and SHA-256 while it is copied out, then nothing unlisted,
then each table's Parquet schema against the registry. Data checks run later, in DuckDB.
"""

from __future__ import annotations

import hashlib
import json
import re
import tarfile
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, BinaryIO, TypeGuard

from appliance.errors import PackRejected, SignatureError, UnreadableParquet
from appliance.fsio import CHUNK_BYTES, SHA256_HEX
from appliance.packs import pack_layout as layout
from appliance.packs.parquet_footer import footer_reader
from appliance.packs.schema_registry import SchemaRegistry, load_registry, schema_problems
from appliance.progress import Progress, quiet
from appliance.trust.safe_tar import member_kind, trailer_problem
from appliance.trust.sshsig import AllowedSigner, VerifiedSignature, verify
from appliance.trust.strict_json import StrictJSONError, parse_strict_json

_SHA256_HEX = re.compile(SHA256_HEX)
_LABEL = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:+@/ -]{0,127}")
# RFC 3339's date-time, and only that: datetime.fromisoformat alone also takes ISO 8601's basic
# (20261102T060000Z) and week (2026-W45-1) forms. At most six fraction digits, the microseconds
# the metadata columns hold, so two different strings never name one stored instant.
_RFC3339 = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,6})?"
    r"(?P<offset>Z|[+-][0-9]{2}:[0-9]{2})?"
)


@dataclass(frozen=True)
class TableEntry:
    """One table as the manifest lists it."""

    name: str
    path: str
    rows: int
    bytes: int
    sha256: str
    schema: list[dict[str, Any]]

    def as_json(self) -> dict[str, Any]:
        """The entry as written in pack.json."""
        return {
            "path": self.path,
            "rows": self.rows,
            "bytes": self.bytes,
            "sha256": self.sha256,
            "schema": self.schema,
        }


@dataclass(frozen=True)
class PackManifest:
    """The content of pack.json: who made the results, when, and the exact bytes of each table."""

    pack_id: str
    dataset_id: str
    model_version: str
    source: str
    generated_at: datetime
    created_by: str
    schema_registry_version: int
    tables: dict[str, TableEntry]

    @property
    def metadata(self) -> dict[str, Any]:
        """The traceability values every row of every table must carry."""
        return {
            "model_version": self.model_version,
            "generated_at": self.generated_at,
            "source": self.source,
            "dataset_id": self.dataset_id,
        }

    def as_json(self) -> dict[str, Any]:
        """The manifest as a JSON object, fields in format order."""
        return {
            "format": layout.FORMAT_NAME,
            "format_version": layout.FORMAT_VERSION,
            "pack_id": self.pack_id,
            "dataset_id": self.dataset_id,
            "model_version": self.model_version,
            "source": self.source,
            "generated_at": format_timestamp(self.generated_at),
            "created_by": self.created_by,
            "schema_registry_version": self.schema_registry_version,
            "tables": {name: entry.as_json() for name, entry in sorted(self.tables.items())},
        }

    def to_bytes(self) -> bytes:
        """Canonical pack.json bytes (the exact bytes that get signed)."""
        return (json.dumps(self.as_json(), indent=2, ensure_ascii=True) + "\n").encode("ascii")


def format_timestamp(moment: datetime) -> str:
    """RFC 3339 in UTC with a Z, microseconds only when present."""
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def parse_timestamp(text: str) -> datetime:
    """Parse an RFC 3339 date-time with its offset; ValueError for anything else (ISO 8601 too)."""
    match = _RFC3339.fullmatch(text) if isinstance(text, str) else None
    if match is None:
        msg = f"not an RFC 3339 timestamp (YYYY-MM-DDTHH:MM:SS[.ffffff] then Z or +HH:MM): {text!r}"
        raise ValueError(msg)
    if match["offset"] is None:
        msg = f"timestamp has no UTC offset (Z or +HH:MM): {text!r}"
        raise ValueError(msg)
    try:
        return datetime.fromisoformat(text).astimezone(UTC)
    except ValueError as exc:
        msg = f"not a date and time that exists: {text!r} ({exc})"
        raise ValueError(msg) from exc


def is_integer(value: object) -> TypeGuard[int]:
    """Whether a parsed JSON value is an integer: not a bool (an int in Python), not 1.0."""
    return type(value) is int


def _reject_manifest(message: str) -> PackRejected:
    return PackRejected("bad-manifest", f"pack.json: {message}")


def _label(raw: dict[str, Any], key: str) -> str:
    value = raw.get(key)
    if not isinstance(value, str) or not _LABEL.fullmatch(value):
        msg = f"{key} must be 1-128 printable characters starting with a letter or digit"
        raise _reject_manifest(msg)
    return value


def _count(raw: dict[str, Any], key: str, where: str) -> int:
    value = raw.get(key)
    if not is_integer(value) or value < 0:
        msg = f"{where}: {key} must be a whole number >= 0"
        raise _reject_manifest(msg)
    return value


def _table_entry(name: str, raw: Any, registry: SchemaRegistry) -> TableEntry:
    where = f"table {name}"
    if name not in registry.tables:
        msg = f"{where} is not in the schema registry (known: {', '.join(sorted(registry.tables))})"
        raise _reject_manifest(msg)
    if not isinstance(raw, dict) or set(raw) != set(layout.TABLE_ENTRY_FIELDS):
        msg = f"{where}: entry must have exactly {', '.join(layout.TABLE_ENTRY_FIELDS)}"
        raise _reject_manifest(msg)
    if raw["path"] != layout.table_member(name):
        msg = f"{where}: path must be {layout.table_member(name)}"
        raise _reject_manifest(msg)
    if not isinstance(raw["sha256"], str) or not _SHA256_HEX.fullmatch(raw["sha256"]):
        msg = f"{where}: sha256 must be 64 lowercase hex digits"
        raise _reject_manifest(msg)
    if raw["schema"] != registry.table(name).describe():
        msg = f"{where}: schema differs from the schema registry v{registry.version}"
        raise PackRejected("schema", f"pack.json: {msg}")
    return TableEntry(
        name=name,
        path=raw["path"],
        rows=_count(raw, "rows", where),
        bytes=_count(raw, "bytes", where),
        sha256=raw["sha256"],
        schema=raw["schema"],
    )


def _manifest_object(data: bytes) -> dict[str, Any]:
    """pack.json as a JSON object of format version 1 with exactly the format's fields."""
    try:
        raw = parse_strict_json(data)
    except StrictJSONError as exc:
        raise _reject_manifest(str(exc)) from exc
    if not isinstance(raw, dict):
        msg = "must be a JSON object"
        raise _reject_manifest(msg)
    if raw.get("format") != layout.FORMAT_NAME:
        msg = f"format must be {layout.FORMAT_NAME!r}"
        raise _reject_manifest(msg)
    if "format_version" in raw and not is_integer(raw["format_version"]):
        msg = f"format_version must be an integer, not {raw['format_version']!r}"
        raise _reject_manifest(msg)
    if raw.get("format_version") != layout.FORMAT_VERSION:
        msg = (
            f"format_version {raw.get('format_version')!r} is not supported "
            f"(this appliance reads version {layout.FORMAT_VERSION})"
        )
        raise PackRejected("unsupported-format", f"pack.json: {msg}")
    missing = [f for f in layout.MANIFEST_FIELDS if f not in raw]
    unknown = sorted(set(raw) - set(layout.MANIFEST_FIELDS))
    if missing or unknown:
        parts = [f"missing {', '.join(missing)}"] if missing else []
        parts += [f"unknown {', '.join(unknown)}"] if unknown else []
        raise _reject_manifest("; ".join(parts))
    return raw


def _pack_id(raw: dict[str, Any]) -> str:
    """The pack_id, a UUID given as a string, in its canonical form."""
    msg = "pack_id must be a UUID"
    if not isinstance(raw["pack_id"], str):
        raise _reject_manifest(msg)
    try:
        return str(uuid.UUID(raw["pack_id"]))
    except ValueError as exc:
        raise _reject_manifest(msg) from exc


def _registry_version(raw: dict[str, Any], registry: SchemaRegistry) -> int:
    """The schema_registry_version, an integer this node's registry covers."""
    version = raw["schema_registry_version"]
    if not is_integer(version) or not 1 <= version <= registry.version:
        msg = f"schema_registry_version {version!r} is not one this node knows (1..{registry.version})"
        raise PackRejected("schema", f"pack.json: {msg}")
    return version


def parse_manifest(data: bytes, registry: SchemaRegistry | None = None) -> PackManifest:
    """Parse and check pack.json; PackRejected with a one-line reason on anything off."""
    registry = registry or load_registry()
    raw = _manifest_object(data)
    pack_id = _pack_id(raw)
    try:
        generated_at = parse_timestamp(raw["generated_at"])
    except ValueError as exc:
        raise _reject_manifest(f"generated_at: {exc}") from exc
    version = _registry_version(raw, registry)
    tables_raw = raw["tables"]
    if not isinstance(tables_raw, dict) or not 0 < len(tables_raw) <= layout.MAX_TABLES:
        msg = f"tables must be an object with 1..{layout.MAX_TABLES} entries"
        raise _reject_manifest(msg)
    tables = {name: _table_entry(name, entry, registry) for name, entry in tables_raw.items()}
    absent = [name for name in registry.required_tables if name not in tables]
    if absent:
        msg = f"required table(s) missing: {', '.join(absent)}"
        raise _reject_manifest(msg)
    created_by = raw["created_by"]
    if not isinstance(created_by, str) or len(created_by) > 256:
        msg = "created_by must be a string of at most 256 characters"
        raise _reject_manifest(msg)
    return PackManifest(
        pack_id=pack_id,
        dataset_id=_label(raw, "dataset_id"),
        model_version=_label(raw, "model_version"),
        source=_label(raw, "source"),
        generated_at=generated_at,
        created_by=created_by,
        schema_registry_version=version,
        tables=tables,
    )


@dataclass
class OpenedPack:
    """A pack whose signature, members and hashes are verified, its tables copied out to a folder."""

    path: Path
    manifest: PackManifest
    manifest_bytes: bytes
    signature: bytes
    signer: VerifiedSignature
    tables_dir: Path
    table_files: dict[str, Path] = field(default_factory=dict)

    @property
    def manifest_sha256(self) -> str:
        """SHA-256 of pack.json: with the signature, the pack's identity in the audit trail."""
        return hashlib.sha256(self.manifest_bytes).hexdigest()


def _check_member_name(name: str) -> None:
    """Refuse names that could escape the extraction folder or are not canonical."""
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        raise PackRejected("unsafe-member", f"member {name!r} has an absolute path")
    parts = name.split("/")
    if ".." in parts:
        raise PackRejected("unsafe-member", f"member {name!r} climbs out with '..'")
    if "\\" in name or "\x00" in name or any(p in ("", ".") for p in parts):
        raise PackRejected("unsafe-member", f"member {name!r} is not a plain relative path")


def _check_member(member: tarfile.TarInfo, seen: set[str]) -> bool:
    """Check one tar member; True if it carries a file to read, False for the tables folder."""
    name = member.name
    _check_member_name(name)
    if name in seen:
        raise PackRejected("unsafe-member", f"member {name!r} appears twice")
    seen.add(name)
    if member.isdir() and name.rstrip("/") == layout.TABLES_DIR:
        return False
    if not member.isreg():
        raise PackRejected("unsafe-member", f"member {name!r} is {member_kind(member)}")
    if member.issparse():
        raise PackRejected("unsafe-member", f"member {name!r} is a sparse file")
    return True


def _member_stream(tar: tarfile.TarFile, member: tarfile.TarInfo) -> IO[bytes]:
    handle = tar.extractfile(member)
    if handle is None:
        raise PackRejected("unsafe-member", f"member {member.name!r} has no readable data")
    return handle


class _PackReader:
    """Walks the members of one open tar archive in order, refusing anything unsafe."""

    def __init__(self, tar: tarfile.TarFile, handle: BinaryIO) -> None:
        self.tar = tar
        self.handle = handle
        self.seen: set[str] = set()

    def next_file(self) -> tarfile.TarInfo | None:
        """The next member that carries a file, or None at the end of the archive."""
        while True:
            try:
                member = self.tar.next()
            except tarfile.TarError as exc:
                msg = f"pack is not a readable tar archive ({exc})"
                raise PackRejected("truncated", msg) from exc
            if member is None or _check_member(member, self.seen):
                return member

    def expect(self, name: str, limit: int) -> bytes:
        """Read the next member, which must be `name` and at most `limit` bytes."""
        member = self.next_file()
        if member is None:
            raise PackRejected("missing-member", f"pack ends before {name}")
        if member.name != name:
            msg = f"member {member.name!r} where {name} must be (pack.json, then pack.json.sig)"
            raise PackRejected("missing-member", msg)
        if member.size > limit:
            msg = f"{name} is {member.size} bytes, over the {limit}-byte limit"
            raise PackRejected("bad-manifest", msg)
        try:
            data = _member_stream(self.tar, member).read()
        except tarfile.TarError as exc:
            raise PackRejected("truncated", f"pack is truncated inside {name}") from exc
        if len(data) != member.size:
            raise PackRejected("truncated", f"pack is truncated inside {name}")
        return data

    def copy_tables(
        self, manifest: PackManifest, tables_dir: Path, progress: Progress
    ) -> dict[str, Path]:
        """Copy every table member out, verified against the manifest; refuse unlisted ones."""
        by_path = {entry.path: entry for entry in manifest.tables.values()}
        files: dict[str, Path] = {}
        while (member := self.next_file()) is not None:
            entry = by_path.get(member.name)
            if entry is None:
                msg = f"member {member.name!r} is not listed in pack.json"
                raise PackRejected("unlisted-member", msg)
            target = tables_dir / f"{entry.name}{layout.TABLE_SUFFIX}"
            _copy_verified(self.tar, member, entry, target)
            files[entry.name] = target
            progress(f"{entry.name}: {entry.bytes:,} bytes, sha256 ok")
        _check_trailer(self.handle, self.tar.offset)
        missing = sorted(set(manifest.tables) - set(files))
        if missing:
            msg = f"table(s) listed in pack.json but missing: {', '.join(missing)}"
            raise PackRejected("missing-member", msg)
        return files


def _copy_verified(
    tar: tarfile.TarFile, member: tarfile.TarInfo, entry: TableEntry, target: Path
) -> None:
    """Copy a table out of the archive, hashing as it goes; refuse on any size or hash mismatch."""
    if member.size != entry.bytes:
        msg = f"{member.name} is {member.size} bytes, the manifest says {entry.bytes}"
        raise PackRejected("hash-mismatch", msg)
    handle = _member_stream(tar, member)
    digest = hashlib.sha256()
    copied = 0
    try:
        with target.open("xb") as out:
            while chunk := handle.read(CHUNK_BYTES):
                digest.update(chunk)
                out.write(chunk)
                copied += len(chunk)
    except tarfile.TarError as exc:
        raise PackRejected("truncated", f"pack is truncated inside {member.name}") from exc
    if copied != entry.bytes:
        raise PackRejected("truncated", f"pack is truncated inside {member.name}")
    if digest.hexdigest() != entry.sha256:
        raise PackRejected(
            "hash-mismatch", f"{member.name} does not match its SHA-256 in pack.json"
        )


def _check_trailer(handle: BinaryIO, offset: int) -> None:
    """The archive must end with its end-of-archive marker: zero blocks and nothing else."""
    problem = trailer_problem(handle, offset)
    if problem is not None:
        raise PackRejected("truncated", f"pack {problem}")


def open_pack(
    path: Path,
    tables_dir: Path,
    signers: Sequence[AllowedSigner],
    progress: Progress = quiet,
    registry: SchemaRegistry | None = None,
    admit: Callable[[PackManifest], None] | None = None,
) -> OpenedPack:
    """Verify the pack at `path` and copy its tables into the empty folder `tables_dir`.

    `admit` sees the verified manifest before any table is copied and may refuse the pack.
    A refusal after the manifest is known carries its pack_id and dataset_id in `details`.
    """
    registry = registry or load_registry()
    if not path.is_file():
        raise PackRejected("not-a-pack", "not a regular file")
    try:
        handle = path.open("rb")
    except OSError as exc:
        raise PackRejected("not-a-pack", f"cannot be read ({exc.strerror})") from exc
    with handle:
        try:
            tar = tarfile.open(fileobj=handle, mode="r:")  # noqa: SIM115 (closed below)
        except tarfile.TarError as exc:
            msg = f"not an uncompressed tar archive ({exc})"
            raise PackRejected("not-a-pack", msg) from exc
        with tar:
            reader = _PackReader(tar, handle)
            manifest_bytes = reader.expect(layout.MANIFEST_NAME, layout.MAX_MANIFEST_BYTES)
            signature = reader.expect(layout.SIGNATURE_NAME, layout.MAX_SIGNATURE_BYTES)
            try:
                signer = verify(manifest_bytes, signature, signers, layout.SIGNATURE_NAMESPACE)
            except SignatureError as exc:
                raise PackRejected("signature", f"signature: {exc}") from exc
            progress(f"signature good: {signer.principal} ({signer.fingerprint})")
            manifest = parse_manifest(manifest_bytes, registry)
            opened = OpenedPack(path, manifest, manifest_bytes, signature, signer, tables_dir)
            try:
                if admit is not None:
                    admit(manifest)
                opened.table_files = reader.copy_tables(manifest, tables_dir, progress)
                check_parquet_files(opened, registry)
            except PackRejected as exc:
                exc.details |= {"pack_id": manifest.pack_id, "dataset_id": manifest.dataset_id}
                raise
    return opened


def check_parquet_files(opened: OpenedPack, registry: SchemaRegistry) -> None:
    """Each copied table must be readable Parquet with the registry schema and the listed rows."""
    with footer_reader() as read_footer:
        for name, file in opened.table_files.items():
            entry = opened.manifest.tables[name]
            try:
                footer = read_footer(file)
            except UnreadableParquet as exc:
                msg = f"{entry.path} is not a readable Parquet file ({exc})"
                raise PackRejected("schema", msg) from exc
            problems = schema_problems(registry.table(name), footer.columns)
            if problems:
                raise PackRejected("schema", problems[0])
            if footer.rows != entry.rows:
                msg = f"{entry.path} has {footer.rows} rows, the manifest says {entry.rows}"
                raise PackRejected("schema", msg)
