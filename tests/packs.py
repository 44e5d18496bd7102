"""Forge result packs with one thing wrong, for the bad-input corpus.

A forged pack starts from a good one: its members are read back, one fault is applied (to the
manifest, a table, or the tar structure), the manifest is re-signed, and the tar is written with
whatever member types the fault needs. Every pack here is signed by a trusted key unless the fault
is the signature, so each refusal is for the named fault only.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb

from appliance.packs.pack_layout import MANIFEST_NAME, SIGNATURE_NAME, SIGNATURE_NAMESPACE
from appliance.trust.sshsig import load_private_key, sign


@dataclass
class Member:
    """One tar member to write: a name, a type, and data or a link target."""

    name: str
    data: bytes = b""
    type: bytes = tarfile.REGTYPE
    linkname: str = ""

    def info(self) -> tarfile.TarInfo:
        info = tarfile.TarInfo(self.name)
        info.type = self.type
        info.size = len(self.data) if self.type == tarfile.REGTYPE else 0
        info.linkname = self.linkname
        info.mode = 0o644
        info.mtime = 1_700_000_000
        if self.type in (tarfile.CHRTYPE, tarfile.BLKTYPE):
            info.devmajor, info.devminor = 1, 3
        return info


@dataclass
class ForgedPack:
    """A pack's parts, editable before they are written out again."""

    manifest: dict[str, Any]
    tables: dict[str, bytes]
    extra: list[Member] = field(default_factory=list)

    @classmethod
    def read(cls, pack: Path) -> ForgedPack:
        with tarfile.open(pack, "r:") as tar:
            data = {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isreg()}  # type: ignore[union-attr]
        manifest = json.loads(data.pop(MANIFEST_NAME))
        data.pop(SIGNATURE_NAME)
        return cls(manifest, data)

    def set_table(self, name: str, data: bytes, *, update_manifest: bool = True) -> None:
        """Replace a table's bytes, keeping the manifest's size and hash in step unless told not to."""
        path = f"tables/{name}.parquet"
        self.tables[path] = data
        if update_manifest:
            entry = self.manifest["tables"][name]
            entry["bytes"] = len(data)
            entry["sha256"] = hashlib.sha256(data).hexdigest()

    def edit_table(self, name: str, select_sql: str, workdir: Path) -> None:
        """Rewrite a table through DuckDB: `select_sql` reads FROM t; rows count stays in step."""
        source = workdir / f"{name}.in.parquet"
        target = workdir / f"{name}.out.parquet"
        source.write_bytes(self.tables[f"tables/{name}.parquet"])
        con = duckdb.connect()
        con.execute(f"CREATE VIEW t AS SELECT * FROM read_parquet('{source}')")
        con.execute(f"COPY ({select_sql}) TO '{target}' (FORMAT parquet)")
        rows = con.execute(f"SELECT count(*) FROM read_parquet('{target}')").fetchone()[0]  # type: ignore[index]
        con.close()
        self.set_table(name, target.read_bytes())
        self.manifest["tables"][name]["rows"] = rows

    def manifest_bytes(self) -> bytes:
        return (json.dumps(self.manifest, indent=2) + "\n").encode()

    def members(self, key: Path, signature: bytes | None = None) -> list[Member]:
        """Manifest, signature, tables, then the extra members, in pack order."""
        manifest = self.manifest_bytes()
        if signature is None:
            signature = sign(manifest, load_private_key(key), SIGNATURE_NAMESPACE)
        members = [Member(MANIFEST_NAME, manifest), Member(SIGNATURE_NAME, signature)]
        members += [Member(name, data) for name, data in self.tables.items()]
        return members + self.extra

    def write(
        self,
        out: Path,
        key: Path,
        *,
        signature: bytes | None = None,
        transform: Callable[[list[Member]], list[Member]] | None = None,
    ) -> Path:
        members = self.members(key, signature)
        if transform is not None:
            members = transform(members)
        write_members(out, members)
        return out


def _varint(value: int, width: int = 0) -> bytes:
    """`value` as a Thrift compact-protocol varint: in the fewest bytes, or padded to `width`."""
    groups = [value >> shift & 0x7F for shift in range(0, max(value.bit_length(), 1), 7)]
    groups += [0] * (width - len(groups))
    return bytes([g | 0x80 for g in groups[:-1]] + [groups[-1]])


def with_footer_rows(data: bytes, rows: int, claimed: int) -> bytes:
    """The Parquet file `data`, of `rows` rows, with a footer that says `claimed` rows instead.

    FileMetaData.num_rows (field 3, an i64, so header byte 0x16 after field 2, the schema) is the
    first field of its kind in the footer; the row groups' counts and the pages stay as they are.
    It is rewritten in place as a padded varint, which Thrift readers accept, so no offset moves.
    """
    footer_length = int.from_bytes(data[-8:-4], "little")
    start = len(data) - 8 - footer_length
    field = b"\x16" + _varint(rows * 2)  # zigzag encoding of a non-negative i64
    at = data.index(field, start)
    replacement = b"\x16" + _varint(claimed * 2, width=len(field) - 1)
    assert len(replacement) == len(field), "the claimed count needs more bytes than the real one"
    return data[:at] + replacement + data[at + len(field) :]


def write_members(out: Path, members: list[Member]) -> None:
    """Write members as a POSIX tar, exactly as given (no safety checks: that is the point)."""
    with tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as tar:
        for member in members:
            info = member.info()
            tar.addfile(info, io.BytesIO(member.data) if info.isreg() else None)


def flip_byte(path: Path, offset: int) -> None:
    """Flip one bit of one byte in place (bit rot, or a hand that slipped)."""
    path.chmod(0o644)
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))
