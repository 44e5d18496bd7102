"""The bad-pack corpus: every broken or hostile pack is refused in one line and changes nothing.

Acceptance point: each pack below is named for its one fault. `appliance import` refuses it with
exit code 3 and a single `error: <pack>: <reason>` line, `appliance versions --json` is
byte-identical before and after, staging/ is left empty, and the refusal is recorded in
history.jsonl and rejected/ with its reason code.

Every forged pack starts from good_pack under a fresh pack_id (so no refusal is a replay by
accident) and is signed by the trusted key unless the signature is the fault.
test_forged_pack_without_fault_is_accepted shows that the forge itself adds no fault.
"""

from __future__ import annotations

import gzip
import io
import json
import random
import re
import shutil
import subprocess
import tarfile
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import appliance.data.store
from appliance.data.importer import import_pack
from appliance.data.store import DataStore
from appliance.errors import PackRejected
from appliance.packs.pack_layout import (
    MANIFEST_NAME,
    MAX_MANIFEST_BYTES,
    SIGNATURE_NAME,
    SIGNATURE_NAMESPACE,
    table_member,
)
from appliance.trust.safe_tar import TAR_BLOCK
from appliance.trust.sshsig import load_private_key, sign
from tests.conftest import Signer, current_of, make_pack, run, versions_json
from tests.packs import ForgedPack, Member, with_footer_rows

Transform = Callable[[list[Member]], list[Member]]

PROGRESS_LINE = re.compile(r"\[\s*\d+\.\d+s\] ")
GOOD_GENERATED_AT = "2026-11-01T06:00:00Z"
TABLES = ("dim_item", "fact_forecast", "fact_inventory", "fact_metrics")


# --- helpers -------------------------------------------------------------------------------------


def import_packs(
    data_dir: Path, signer: Signer, *packs: Path, force_older: bool = False
) -> subprocess.CompletedProcess[str]:
    """Run `appliance import` on `packs` into `data_dir`, trusting `signer`."""
    flags = ["--force-older"] if force_older else []
    return run(
        "appliance",
        "import",
        *packs,
        "--data-dir",
        data_dir,
        "--signers",
        signer.allowed_signers,
        *flags,
    )


def error_lines(stderr: str) -> list[str]:
    """The `error:` lines of a command's stderr (the rest is progress)."""
    return [line for line in stderr.splitlines() if line.startswith("error:")]


def last_event(data_dir: Path) -> dict[str, object]:
    """The last event of the store's audit trail."""
    lines = (data_dir / "history.jsonl").read_text(encoding="utf-8").splitlines()
    event: dict[str, object] = json.loads(lines[-1])
    return event


def reason_files(data_dir: Path, pack: Path) -> list[Path]:
    """The reason files rejected/ holds for the pack file named like `pack`."""
    return sorted((data_dir / "rejected").glob(f"*-{pack.name}*.reason.json"))


def assert_refused(
    result: subprocess.CompletedProcess[str],
    data_dir: Path,
    pack: Path,
    before: str,
    reason: str | None,
    words: tuple[str, ...],
) -> None:
    """`pack` was refused for `reason` (None: any), in one line with `words`; nothing changed."""
    lines = result.stderr.splitlines()
    assert result.returncode == 3, result.stderr
    assert lines, "no reason given"
    assert error_lines(result.stderr) == [lines[-1]], "one error line, last, no traceback"
    assert all(PROGRESS_LINE.match(line) for line in lines[:-1]), result.stderr
    assert lines[-1].startswith(f"error: {pack.name}: "), lines[-1]
    assert all(word in lines[-1] for word in words), lines[-1]
    assert result.stdout == ""
    assert versions_json(data_dir) == before
    assert list((data_dir / "staging").iterdir()) == []
    event = last_event(data_dir)
    assert (event["event"], event["pack_file"]) == ("reject", str(pack))
    (reason_file,) = reason_files(data_dir, pack)
    assert json.loads(reason_file.read_text())["reason"] == event["reason"]
    assert reason is None or event["reason"] == reason


def member_layout(pack: Path) -> tuple[dict[str, tarfile.TarInfo], int]:
    """Each member's header of `pack` by name, and the offset of its end-of-archive marker."""
    with tarfile.open(pack, "r:") as tar:
        members = {m.name: m for m in tar.getmembers()}
        return members, tar.offset


def cut(pack: Path, out: Path, at: int) -> Path:
    """Write the first `at` bytes of `pack` to `out`."""
    out.write_bytes(pack.read_bytes()[:at])
    return out


def replacing(name: str, member: Member) -> Transform:
    """Transform: put `member` where member `name` was."""
    return lambda members: [member if m.name == name else m for m in members]


def with_manifest(data: bytes, key: Path) -> Transform:
    """Transform: make `data`, properly signed, the pack.json, so only its content is wrong."""
    signature = sign(data, load_private_key(key), SIGNATURE_NAMESPACE)
    return lambda members: [
        Member(MANIFEST_NAME, data),
        Member(SIGNATURE_NAME, signature),
        *members[2:],
    ]


def restamp(parts: ForgedPack, moment: str, workdir: Path) -> None:
    """Set generated_at to `moment` in the manifest and in every row of every table."""
    parts.manifest["generated_at"] = moment
    for name in TABLES:
        parts.edit_table(
            name,
            f"SELECT * REPLACE ('{moment}'::TIMESTAMPTZ AS generated_at) FROM t",
            workdir,
        )


def flip_byte(data: bytes, at: int) -> bytes:
    """`data` with the byte at `at` inverted."""
    return data[:at] + bytes([data[at] ^ 0xFF]) + data[at + 1 :]


# --- the store the corpus is refused by -----------------------------------------------------------


@pytest.fixture(scope="module")
def store_serving_good_pack(
    tmp_path_factory: pytest.TempPathFactory, good_pack: Path, signer: Signer
) -> Path:
    """A data store whose current version v0001 is good_pack (generated 2026-11-01T06:00Z)."""
    data_dir = tmp_path_factory.mktemp("store") / "data"
    result = import_packs(data_dir, signer, good_pack)
    assert result.returncode == 0, result.stderr
    return data_dir


@pytest.fixture
def good_parts(good_pack: Path) -> ForgedPack:
    """good_pack's manifest and tables, under a fresh pack_id, ready to be spoiled."""
    parts = ForgedPack.read(good_pack)
    parts.manifest["pack_id"] = str(uuid.uuid4())
    return parts


@pytest.fixture
def intact_pack(good_parts: ForgedPack, tmp_path: Path, signer: Signer) -> Path:
    """good_parts written out unchanged: the pack the truncated ones are cut from."""
    return good_parts.write(tmp_path / "intact.pack", signer.key)


# --- signature ----------------------------------------------------------------------------------


@pytest.fixture
def pack_with_bad_signature(good_parts: ForgedPack, tmp_path: Path, signer: Signer) -> Path:
    signature = sign(good_parts.manifest_bytes(), load_private_key(signer.key), SIGNATURE_NAMESPACE)
    good_parts.manifest["model_version"] = "changed-after-signing"
    return good_parts.write(
        tmp_path / "pack_with_bad_signature.pack", signer.key, signature=signature
    )


@pytest.fixture
def pack_signed_by_untrusted_key(
    good_parts: ForgedPack, tmp_path: Path, untrusted_signer: Signer
) -> Path:
    return good_parts.write(tmp_path / "pack_signed_by_untrusted_key.pack", untrusted_signer.key)


@pytest.fixture
def pack_signed_for_another_namespace(
    good_parts: ForgedPack, tmp_path: Path, signer: Signer
) -> Path:
    signature = sign(good_parts.manifest_bytes(), load_private_key(signer.key), "file")
    out = tmp_path / "pack_signed_for_another_namespace.pack"
    return good_parts.write(out, signer.key, signature=signature)


@pytest.fixture
def pack_with_garbage_signature(good_parts: ForgedPack, tmp_path: Path, signer: Signer) -> Path:
    out = tmp_path / "pack_with_garbage_signature.pack"
    return good_parts.write(out, signer.key, signature=b"\xff\xfe not an SSH signature\n")


@pytest.fixture
def pack_without_signature(good_parts: ForgedPack, tmp_path: Path, signer: Signer) -> Path:
    def drop_signature(members: list[Member]) -> list[Member]:
        return [m for m in members if m.name != SIGNATURE_NAME]

    out = tmp_path / "pack_without_signature.pack"
    return good_parts.write(out, signer.key, transform=drop_signature)


@pytest.fixture
def pack_with_signature_first(good_parts: ForgedPack, tmp_path: Path, signer: Signer) -> Path:
    def swap_first_two(members: list[Member]) -> list[Member]:
        return [members[1], members[0], *members[2:]]

    out = tmp_path / "pack_with_signature_first.pack"
    return good_parts.write(out, signer.key, transform=swap_first_two)


# --- not a pack, truncated, trailing bytes --------------------------------------------------------


@pytest.fixture
def pack_not_a_tar(tmp_path: Path) -> Path:
    out = tmp_path / "pack_not_a_tar.pack"
    out.write_bytes(random.Random(1).randbytes(8 * TAR_BLOCK))
    return out


@pytest.fixture
def empty_pack(tmp_path: Path) -> Path:
    out = tmp_path / "empty_pack.pack"
    out.write_bytes(b"")
    return out


@pytest.fixture
def gzip_compressed_pack(intact_pack: Path, tmp_path: Path) -> Path:
    out = tmp_path / "gzip_compressed_pack.pack"
    out.write_bytes(gzip.compress(intact_pack.read_bytes(), mtime=0))
    return out


@pytest.fixture
def pack_truncated_in_first_header(intact_pack: Path, tmp_path: Path) -> Path:
    return cut(intact_pack, tmp_path / "pack_truncated_in_first_header.pack", 100)


@pytest.fixture
def pack_truncated_in_manifest(intact_pack: Path, tmp_path: Path) -> Path:
    manifest = member_layout(intact_pack)[0][MANIFEST_NAME]
    at = manifest.offset_data + manifest.size // 2
    return cut(intact_pack, tmp_path / "pack_truncated_in_manifest.pack", at)


@pytest.fixture
def pack_truncated_in_table(intact_pack: Path, tmp_path: Path) -> Path:
    table = member_layout(intact_pack)[0][table_member("fact_forecast")]
    at = table.offset_data + table.size // 2
    return cut(intact_pack, tmp_path / "pack_truncated_in_table.pack", at)


@pytest.fixture
def pack_truncated_in_member_header(intact_pack: Path, tmp_path: Path) -> Path:
    at = member_layout(intact_pack)[0][table_member("fact_inventory")].offset + 200
    return cut(intact_pack, tmp_path / "pack_truncated_in_member_header.pack", at)


@pytest.fixture
def pack_truncated_between_members(intact_pack: Path, tmp_path: Path) -> Path:
    at = member_layout(intact_pack)[0][table_member("fact_inventory")].offset
    return cut(intact_pack, tmp_path / "pack_truncated_between_members.pack", at)


@pytest.fixture
def pack_truncated_before_end_marker(intact_pack: Path, tmp_path: Path) -> Path:
    end = member_layout(intact_pack)[1]
    return cut(intact_pack, tmp_path / "pack_truncated_before_end_marker.pack", end)


@pytest.fixture
def pack_truncated_in_end_marker(intact_pack: Path, tmp_path: Path) -> Path:
    end = member_layout(intact_pack)[1]
    return cut(intact_pack, tmp_path / "pack_truncated_in_end_marker.pack", end + TAR_BLOCK)


@pytest.fixture
def pack_with_garbage_after_end(intact_pack: Path, tmp_path: Path) -> Path:
    out = tmp_path / "pack_with_garbage_after_end.pack"
    out.write_bytes(intact_pack.read_bytes() + b"#!/bin/sh\nrm -rf /\n")
    return out


@pytest.fixture
def pack_with_corrupt_member_header(intact_pack: Path, tmp_path: Path) -> Path:
    # A header with a bad checksum after the first member ends tarfile's walk without an error:
    # the table behind it would be hidden if the bytes after the last member were not checked.
    at = member_layout(intact_pack)[0][table_member("fact_inventory")].offset + 10
    out = tmp_path / "pack_with_corrupt_member_header.pack"
    out.write_bytes(flip_byte(intact_pack.read_bytes(), at))
    return out


# --- members: listed, missing, extra, hashes ------------------------------------------------------


@pytest.fixture
def pack_with_extra_file(good_parts: ForgedPack, tmp_path: Path, signer: Signer) -> Path:
    good_parts.extra.append(Member("tables/notes.txt", b"not in the manifest\n"))
    return good_parts.write(tmp_path / "pack_with_extra_file.pack", signer.key)


@pytest.fixture
def pack_with_missing_file(good_parts: ForgedPack, tmp_path: Path, signer: Signer) -> Path:
    del good_parts.tables[table_member("fact_inventory")]
    return good_parts.write(tmp_path / "pack_with_missing_file.pack", signer.key)


@pytest.fixture
def pack_missing_required_table(good_parts: ForgedPack, tmp_path: Path, signer: Signer) -> Path:
    del good_parts.tables[table_member("fact_metrics")]
    del good_parts.manifest["tables"]["fact_metrics"]
    return good_parts.write(tmp_path / "pack_missing_required_table.pack", signer.key)


@pytest.fixture
def pack_with_hash_mismatch(good_parts: ForgedPack, tmp_path: Path, signer: Signer) -> Path:
    data = good_parts.tables[table_member("fact_forecast")]
    good_parts.set_table("fact_forecast", flip_byte(data, len(data) // 2), update_manifest=False)
    return good_parts.write(tmp_path / "pack_with_hash_mismatch.pack", signer.key)


@pytest.fixture
def pack_with_size_mismatch(good_parts: ForgedPack, tmp_path: Path, signer: Signer) -> Path:
    data = good_parts.tables[table_member("fact_forecast")]
    good_parts.set_table("fact_forecast", data + b"\0", update_manifest=False)
    return good_parts.write(tmp_path / "pack_with_size_mismatch.pack", signer.key)


# --- unsafe members ------------------------------------------------------------------------------


@pytest.fixture
def pack_with_absolute_path(good_parts: ForgedPack, tmp_path: Path, signer: Signer) -> Path:
    good_parts.extra.append(Member("/etc/cron.d/appliance", b"* * * * * root sh\n"))
    return good_parts.write(tmp_path / "pack_with_absolute_path.pack", signer.key)


@pytest.fixture
def pack_with_dotdot_path(good_parts: ForgedPack, tmp_path: Path, signer: Signer) -> Path:
    good_parts.extra.append(Member("tables/../../etc/cron.d/appliance", b"* * * * * root sh\n"))
    return good_parts.write(tmp_path / "pack_with_dotdot_path.pack", signer.key)


@pytest.fixture
def pack_with_symlink(good_parts: ForgedPack, tmp_path: Path, signer: Signer) -> Path:
    name = table_member("fact_metrics")
    link = Member(name, type=tarfile.SYMTYPE, linkname="/etc/shadow")
    out = tmp_path / "pack_with_symlink.pack"
    return good_parts.write(out, signer.key, transform=replacing(name, link))


@pytest.fixture
def pack_with_hardlink(good_parts: ForgedPack, tmp_path: Path, signer: Signer) -> Path:
    name = table_member("fact_metrics")
    link = Member(name, type=tarfile.LNKTYPE, linkname=table_member("dim_item"))
    out = tmp_path / "pack_with_hardlink.pack"
    return good_parts.write(out, signer.key, transform=replacing(name, link))


@pytest.fixture
def pack_with_device_node(good_parts: ForgedPack, tmp_path: Path, signer: Signer) -> Path:
    name = table_member("fact_metrics")
    device = Member(name, type=tarfile.CHRTYPE)
    out = tmp_path / "pack_with_device_node.pack"
    return good_parts.write(out, signer.key, transform=replacing(name, device))


@pytest.fixture
def pack_with_fifo(good_parts: ForgedPack, tmp_path: Path, signer: Signer) -> Path:
    name = table_member("fact_metrics")
    fifo = Member(name, type=tarfile.FIFOTYPE)
    return good_parts.write(
        tmp_path / "pack_with_fifo.pack", signer.key, transform=replacing(name, fifo)
    )


@pytest.fixture
def pack_with_directory(good_parts: ForgedPack, tmp_path: Path, signer: Signer) -> Path:
    good_parts.extra.append(Member("tables/more", type=tarfile.DIRTYPE))
    return good_parts.write(tmp_path / "pack_with_directory.pack", signer.key)


@pytest.fixture
def pack_with_duplicate_member(good_parts: ForgedPack, tmp_path: Path, signer: Signer) -> Path:
    name = table_member("dim_item")
    good_parts.extra.append(Member(name, good_parts.tables[name]))
    return good_parts.write(tmp_path / "pack_with_duplicate_member.pack", signer.key)


# --- manifest -----------------------------------------------------------------------------------


@pytest.fixture
def pack_with_manifest_not_json(good_parts: ForgedPack, tmp_path: Path, signer: Signer) -> Path:
    out = tmp_path / "pack_with_manifest_not_json.pack"
    return good_parts.write(out, signer.key, transform=with_manifest(b"{'not': json", signer.key))


@pytest.fixture
def pack_with_oversized_manifest(good_parts: ForgedPack, tmp_path: Path, signer: Signer) -> Path:
    padded = good_parts.manifest_bytes() + b" " * MAX_MANIFEST_BYTES
    out = tmp_path / "pack_with_oversized_manifest.pack"
    return good_parts.write(out, signer.key, transform=with_manifest(padded, signer.key))


@pytest.fixture
def pack_with_unknown_manifest_field(
    good_parts: ForgedPack, tmp_path: Path, signer: Signer
) -> Path:
    good_parts.manifest["comment"] = "a field format version 1 does not have"
    return good_parts.write(tmp_path / "pack_with_unknown_manifest_field.pack", signer.key)


@pytest.fixture
def pack_with_unsupported_format_version(
    good_parts: ForgedPack, tmp_path: Path, signer: Signer
) -> Path:
    good_parts.manifest["format_version"] = 2
    return good_parts.write(tmp_path / "pack_with_unsupported_format_version.pack", signer.key)


@pytest.fixture
def pack_with_manifest_schema_mismatch(
    good_parts: ForgedPack, tmp_path: Path, signer: Signer
) -> Path:
    good_parts.manifest["tables"]["dim_item"]["schema"][0]["type"] = "int32"
    return good_parts.write(tmp_path / "pack_with_manifest_schema_mismatch.pack", signer.key)


@pytest.fixture
def pack_with_row_count_lie(good_parts: ForgedPack, tmp_path: Path, signer: Signer) -> Path:
    good_parts.manifest["tables"]["dim_item"]["rows"] += 1
    return good_parts.write(tmp_path / "pack_with_row_count_lie.pack", signer.key)


def with_duplicate_key(manifest: bytes, key: str, first_value: str) -> bytes:
    """`manifest` with `"key": first_value` put in front of the first `"key":` it holds."""
    needle = f'"{key}":'.encode()
    at = manifest.index(needle)
    return manifest[:at] + f'"{key}": {first_value}, '.encode() + manifest[at:]


@pytest.fixture
def pack_with_duplicate_manifest_key(
    good_parts: ForgedPack, tmp_path: Path, signer: Signer
) -> Path:
    # Python's json keeps the last value, other readers the first: two readings of one signature.
    data = with_duplicate_key(good_parts.manifest_bytes(), "dataset_id", '"../../etc"')
    out = tmp_path / "pack_with_duplicate_manifest_key.pack"
    return good_parts.write(out, signer.key, transform=with_manifest(data, signer.key))


@pytest.fixture
def pack_with_duplicate_key_in_table_entry(
    good_parts: ForgedPack, tmp_path: Path, signer: Signer
) -> Path:
    data = with_duplicate_key(good_parts.manifest_bytes(), "rows", "0")
    out = tmp_path / "pack_with_duplicate_key_in_table_entry.pack"
    return good_parts.write(out, signer.key, transform=with_manifest(data, signer.key))


@pytest.fixture
def pack_with_boolean_format_version(
    good_parts: ForgedPack, tmp_path: Path, signer: Signer
) -> Path:
    good_parts.manifest["format_version"] = True  # == 1 in Python
    return good_parts.write(tmp_path / "pack_with_boolean_format_version.pack", signer.key)


@pytest.fixture
def pack_with_float_format_version(good_parts: ForgedPack, tmp_path: Path, signer: Signer) -> Path:
    good_parts.manifest["format_version"] = 1.0  # == 1 in Python
    return good_parts.write(tmp_path / "pack_with_float_format_version.pack", signer.key)


@pytest.fixture
def pack_with_boolean_registry_version(
    good_parts: ForgedPack, tmp_path: Path, signer: Signer
) -> Path:
    good_parts.manifest["schema_registry_version"] = True
    return good_parts.write(tmp_path / "pack_with_boolean_registry_version.pack", signer.key)


@pytest.fixture
def pack_with_basic_format_generated_at(
    good_parts: ForgedPack, tmp_path: Path, signer: Signer
) -> Path:
    good_parts.manifest["generated_at"] = "20261101T060000Z"  # ISO 8601, not RFC 3339
    return good_parts.write(tmp_path / "pack_with_basic_format_generated_at.pack", signer.key)


@pytest.fixture
def pack_with_week_date_generated_at(
    good_parts: ForgedPack, tmp_path: Path, signer: Signer
) -> Path:
    good_parts.manifest["generated_at"] = "2026-W44-7T06:00:00Z"  # 2026-11-01, as an ISO week
    return good_parts.write(tmp_path / "pack_with_week_date_generated_at.pack", signer.key)


# --- table files and rows -----------------------------------------------------------------------


@pytest.fixture
def pack_with_footer_claiming_no_rows(
    good_parts: ForgedPack, tmp_path: Path, signer: Signer
) -> Path:
    # The footer (and the signed manifest) say 0 rows; the row groups hold all 1,200.
    name = "fact_forecast"
    rows = good_parts.manifest["tables"][name]["rows"]
    good_parts.set_table(name, with_footer_rows(good_parts.tables[table_member(name)], rows, 0))
    good_parts.manifest["tables"][name]["rows"] = 0
    return good_parts.write(tmp_path / "pack_with_footer_claiming_no_rows.pack", signer.key)


@pytest.fixture
def pack_with_table_not_parquet(good_parts: ForgedPack, tmp_path: Path, signer: Signer) -> Path:
    good_parts.set_table("dim_item", b"item_id,name\nA-1,bolt\n")
    return good_parts.write(tmp_path / "pack_with_table_not_parquet.pack", signer.key)


@pytest.fixture
def pack_with_corrupt_parquet_page(good_parts: ForgedPack, tmp_path: Path, signer: Signer) -> Path:
    # The footer stays intact, so the schema reads fine; the first page header (right after the
    # leading PAR1 magic) is garbage, which only reading the rows finds.
    data = good_parts.tables[table_member("dim_item")]
    good_parts.set_table("dim_item", data[:4] + b"\xff" * 16 + data[20:])
    return good_parts.write(tmp_path / "pack_with_corrupt_parquet_page.pack", signer.key)


@pytest.fixture
def pack_with_wrong_column_type(good_parts: ForgedPack, tmp_path: Path, signer: Signer) -> Path:
    sql = "SELECT * REPLACE (CAST(yhat AS VARCHAR) AS yhat) FROM t"
    good_parts.edit_table("fact_forecast", sql, tmp_path)
    return good_parts.write(tmp_path / "pack_with_wrong_column_type.pack", signer.key)


@pytest.fixture
def pack_with_missing_metadata_column(
    good_parts: ForgedPack, tmp_path: Path, signer: Signer
) -> Path:
    good_parts.edit_table("fact_forecast", "SELECT * EXCLUDE (dataset_id) FROM t", tmp_path)
    return good_parts.write(tmp_path / "pack_with_missing_metadata_column.pack", signer.key)


@pytest.fixture
def pack_with_int64_column(good_parts: ForgedPack, tmp_path: Path, signer: Signer) -> Path:
    sql = "SELECT * REPLACE (CAST(lead_time_days AS BIGINT) AS lead_time_days) FROM t"
    good_parts.edit_table("dim_item", sql, tmp_path)
    return good_parts.write(tmp_path / "pack_with_int64_column.pack", signer.key)


@pytest.fixture
def pack_with_binary_string_column(good_parts: ForgedPack, tmp_path: Path, signer: Signer) -> Path:
    good_parts.edit_table(
        "dim_item", "SELECT * REPLACE (CAST(name AS BLOB) AS name) FROM t", tmp_path
    )
    return good_parts.write(tmp_path / "pack_with_binary_string_column.pack", signer.key)


@pytest.fixture
def pack_with_date_as_timestamp(good_parts: ForgedPack, tmp_path: Path, signer: Signer) -> Path:
    sql = "SELECT * REPLACE (CAST(date AS TIMESTAMP) AS date) FROM t"
    good_parts.edit_table("fact_forecast", sql, tmp_path)
    return good_parts.write(tmp_path / "pack_with_date_as_timestamp.pack", signer.key)


@pytest.fixture
def pack_with_local_timestamp(good_parts: ForgedPack, tmp_path: Path, signer: Signer) -> Path:
    sql = "SELECT * REPLACE (CAST(generated_at AS TIMESTAMP) AS generated_at) FROM t"
    good_parts.edit_table("fact_inventory", sql, tmp_path)
    return good_parts.write(tmp_path / "pack_with_local_timestamp.pack", signer.key)


def _retype_with_pyarrow(
    parts: ForgedPack, name: str, column: str, arrow_type: pa.DataType
) -> None:
    """Rewrite table `name` with pyarrow, `column` cast to `arrow_type` (values kept)."""
    table = pq.read_table(io.BytesIO(parts.tables[table_member(name)]))
    index = table.schema.get_field_index(column)
    table = table.set_column(index, column, table[column].cast(arrow_type))
    out = io.BytesIO()
    pq.write_table(table, out)
    parts.set_table(name, out.getvalue())


@pytest.fixture
def pack_with_millisecond_timestamp(good_parts: ForgedPack, tmp_path: Path, signer: Signer) -> Path:
    _retype_with_pyarrow(good_parts, "dim_item", "generated_at", pa.timestamp("ms", tz="UTC"))
    return good_parts.write(tmp_path / "pack_with_millisecond_timestamp.pack", signer.key)


@pytest.fixture
def pack_with_nanosecond_timestamp(good_parts: ForgedPack, tmp_path: Path, signer: Signer) -> Path:
    _retype_with_pyarrow(good_parts, "dim_item", "generated_at", pa.timestamp("ns", tz="UTC"))
    return good_parts.write(tmp_path / "pack_with_nanosecond_timestamp.pack", signer.key)


@pytest.fixture
def pack_with_columns_out_of_order(good_parts: ForgedPack, tmp_path: Path, signer: Signer) -> Path:
    sql = "SELECT name, item_id, * EXCLUDE (name, item_id) FROM t"
    good_parts.edit_table("dim_item", sql, tmp_path)
    return good_parts.write(tmp_path / "pack_with_columns_out_of_order.pack", signer.key)


@pytest.fixture
def pack_with_extra_column(good_parts: ForgedPack, tmp_path: Path, signer: Signer) -> Path:
    good_parts.edit_table("fact_metrics", "SELECT *, 'checked' AS note FROM t", tmp_path)
    return good_parts.write(tmp_path / "pack_with_extra_column.pack", signer.key)


@pytest.fixture
def pack_with_contradicting_metadata(
    good_parts: ForgedPack, tmp_path: Path, signer: Signer
) -> Path:
    sql = "SELECT * REPLACE ('demo-ensemble-0.9' AS model_version) FROM t"
    good_parts.edit_table("fact_forecast", sql, tmp_path)
    return good_parts.write(tmp_path / "pack_with_contradicting_metadata.pack", signer.key)


@pytest.fixture
def pack_with_contradicting_generated_at(
    good_parts: ForgedPack, tmp_path: Path, signer: Signer
) -> Path:
    sql = "SELECT * REPLACE (generated_at + INTERVAL 1 HOUR AS generated_at) FROM t"
    good_parts.edit_table("fact_inventory", sql, tmp_path)
    return good_parts.write(tmp_path / "pack_with_contradicting_generated_at.pack", signer.key)


@pytest.fixture
def pack_with_null_in_required_column(
    good_parts: ForgedPack, tmp_path: Path, signer: Signer
) -> Path:
    sql = "SELECT * REPLACE (NULLIF(yhat, (SELECT max(yhat) FROM t)) AS yhat) FROM t"
    good_parts.edit_table("fact_forecast", sql, tmp_path)
    return good_parts.write(tmp_path / "pack_with_null_in_required_column.pack", signer.key)


@pytest.fixture
def pack_with_duplicate_primary_key(good_parts: ForgedPack, tmp_path: Path, signer: Signer) -> Path:
    sql = "SELECT * FROM t UNION ALL (SELECT * FROM t ORDER BY item_id, date LIMIT 1)"
    good_parts.edit_table("fact_forecast", sql, tmp_path)
    return good_parts.write(tmp_path / "pack_with_duplicate_primary_key.pack", signer.key)


@pytest.fixture
def pack_with_dangling_item(good_parts: ForgedPack, tmp_path: Path, signer: Signer) -> Path:
    ghost = "SELECT * REPLACE ('GHOST-0001' AS item_id) FROM t ORDER BY item_id, date LIMIT 1"
    good_parts.edit_table("fact_forecast", f"SELECT * FROM t UNION ALL ({ghost})", tmp_path)
    return good_parts.write(tmp_path / "pack_with_dangling_item.pack", signer.key)


@pytest.fixture
def pack_with_nan_forecast(good_parts: ForgedPack, tmp_path: Path, signer: Signer) -> Path:
    sql = (
        "SELECT * REPLACE (CASE WHEN yhat = (SELECT max(yhat) FROM t) "
        "THEN 'NaN'::DOUBLE ELSE yhat END AS yhat) FROM t"
    )
    good_parts.edit_table("fact_forecast", sql, tmp_path)
    return good_parts.write(tmp_path / "pack_with_nan_forecast.pack", signer.key)


@pytest.fixture
def pack_with_inverted_interval(good_parts: ForgedPack, tmp_path: Path, signer: Signer) -> Path:
    sql = "SELECT * REPLACE (yhat_upper AS yhat_lower, yhat_lower AS yhat_upper) FROM t"
    good_parts.edit_table("fact_forecast", sql, tmp_path)
    return good_parts.write(tmp_path / "pack_with_inverted_interval.pack", signer.key)


def _rename_first_item(parts: ForgedPack, item_id: str, workdir: Path) -> None:
    """Give the first item of dim_item the id `item_id` (its facts then dangle too)."""
    sql = (
        f"SELECT * REPLACE (CASE WHEN item_id = (SELECT min(item_id) FROM t) "
        f"THEN '{item_id}' ELSE item_id END AS item_id) FROM t"
    )
    parts.edit_table("dim_item", sql, workdir)


@pytest.fixture
def pack_with_dotdot_item_id(good_parts: ForgedPack, tmp_path: Path, signer: Signer) -> Path:
    _rename_first_item(good_parts, "../etc", tmp_path)
    return good_parts.write(tmp_path / "pack_with_dotdot_item_id.pack", signer.key)


@pytest.fixture
def pack_with_sql_in_item_id(good_parts: ForgedPack, tmp_path: Path, signer: Signer) -> Path:
    _rename_first_item(good_parts, "a b;DROP TABLE dim_item;--", tmp_path)
    return good_parts.write(tmp_path / "pack_with_sql_in_item_id.pack", signer.key)


def _change_first_row(
    parts: ForgedPack, name: str, column: str, value_sql: str, workdir: Path
) -> None:
    """Set `column` of the first row (in sort order) of table `name` to the SQL `value_sql`."""
    key = "item_id" if name == "dim_item" else "item_id, date"
    sql = (
        f"SELECT * REPLACE (CASE WHEN row_number() OVER (ORDER BY {key}) = 1 "
        f"THEN {value_sql} ELSE {column} END AS {column}) FROM t"
    )
    parts.edit_table(name, sql, workdir)


@pytest.fixture
def pack_with_20_mb_item_name(good_parts: ForgedPack, tmp_path: Path, signer: Signer) -> Path:
    _change_first_row(good_parts, "dim_item", "name", "repeat('x', 20000000)", tmp_path)
    return good_parts.write(tmp_path / "pack_with_20_mb_item_name.pack", signer.key)


@pytest.fixture
def pack_with_1_mb_category(good_parts: ForgedPack, tmp_path: Path, signer: Signer) -> Path:
    _change_first_row(good_parts, "dim_item", "category", "repeat('Radio', 200000)", tmp_path)
    return good_parts.write(tmp_path / "pack_with_1_mb_category.pack", signer.key)


@pytest.fixture
def pack_with_empty_fact_table(good_parts: ForgedPack, tmp_path: Path, signer: Signer) -> Path:
    good_parts.edit_table("fact_inventory", "SELECT * FROM t LIMIT 0", tmp_path)
    return good_parts.write(tmp_path / "pack_with_empty_fact_table.pack", signer.key)


@pytest.fixture
def pack_with_date_in_year_200000(good_parts: ForgedPack, tmp_path: Path, signer: Signer) -> Path:
    _change_first_row(good_parts, "fact_forecast", "date", "'200000-01-01'::DATE", tmp_path)
    return good_parts.write(tmp_path / "pack_with_date_in_year_200000.pack", signer.key)


@pytest.fixture
def pack_with_date_in_1000_bc(good_parts: ForgedPack, tmp_path: Path, signer: Signer) -> Path:
    _change_first_row(good_parts, "fact_inventory", "date", "'1000-01-01 (BC)'::DATE", tmp_path)
    return good_parts.write(tmp_path / "pack_with_date_in_1000_bc.pack", signer.key)


# --- history: replay and older ------------------------------------------------------------------


@pytest.fixture
def replayed_pack(good_pack: Path, tmp_path: Path) -> Path:
    return Path(shutil.copy(good_pack, tmp_path / "replayed_pack.pack"))


@pytest.fixture
def pack_older_than_current(good_parts: ForgedPack, tmp_path: Path, signer: Signer) -> Path:
    restamp(good_parts, "2026-10-31T06:00:00Z", tmp_path)
    return good_parts.write(tmp_path / "pack_older_than_current.pack", signer.key)


# --- the corpus ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Fault:
    """A bad pack (the fixture named for its fault) and how its refusal must read."""

    pack: str
    reason: str | None  # None: the importer has no reason code for this fault yet
    words: tuple[str, ...]


def fault(pack: str, reason: str | None, *words: str) -> Fault:
    """A corpus entry: the refusal's reason code and the words its one line must contain."""
    return Fault(pack, reason, words)


CORPUS = [
    fault("pack_with_bad_signature", "signature", "signature does not match the data"),
    fault("pack_signed_by_untrusted_key", "signature", "is not an allowed signer"),
    fault("pack_signed_for_another_namespace", "signature", "signed for namespace 'file'"),
    fault("pack_with_garbage_signature", "signature", "not an SSH signature"),
    fault("pack_without_signature", "missing-member", "where pack.json.sig must be"),
    fault("pack_with_signature_first", "missing-member", "'pack.json.sig' where pack.json must be"),
    fault("pack_not_a_tar", "not-a-pack", "not an uncompressed tar archive"),
    fault("empty_pack", "not-a-pack", "not an uncompressed tar archive (empty file)"),
    fault("gzip_compressed_pack", "not-a-pack", "not an uncompressed tar archive"),
    fault("pack_truncated_in_first_header", "not-a-pack", "(truncated header)"),
    fault("pack_truncated_in_manifest", "truncated", "truncated inside pack.json"),
    fault("pack_truncated_in_table", "truncated", "truncated inside tables/fact_forecast.parquet"),
    fault("pack_truncated_in_member_header", "truncated", "bytes after its last readable member"),
    fault("pack_truncated_between_members", "truncated", "no end-of-archive marker"),
    fault("pack_truncated_before_end_marker", "truncated", "no end-of-archive marker"),
    fault("pack_truncated_in_end_marker", "truncated", "no end-of-archive marker"),
    fault("pack_with_garbage_after_end", "truncated", "bytes after its last readable member"),
    fault("pack_with_corrupt_member_header", "truncated", "bytes after its last readable member"),
    fault(
        "pack_with_extra_file", "unlisted-member", "'tables/notes.txt' is not listed in pack.json"
    ),
    fault(
        "pack_with_missing_file",
        "missing-member",
        "listed in pack.json but missing: fact_inventory",
    ),
    fault("pack_missing_required_table", "bad-manifest", "required table(s) missing: fact_metrics"),
    fault("pack_with_hash_mismatch", "hash-mismatch", "does not match its SHA-256 in pack.json"),
    fault("pack_with_size_mismatch", "hash-mismatch", "bytes, the manifest says"),
    fault("pack_with_absolute_path", "unsafe-member", "has an absolute path"),
    fault("pack_with_dotdot_path", "unsafe-member", "climbs out with '..'"),
    fault("pack_with_symlink", "unsafe-member", "is a symbolic link"),
    fault("pack_with_hardlink", "unsafe-member", "is a hard link"),
    fault("pack_with_device_node", "unsafe-member", "is a character device"),
    fault("pack_with_fifo", "unsafe-member", "is a FIFO"),
    fault("pack_with_directory", "unsafe-member", "'tables/more' is a directory"),
    fault("pack_with_duplicate_member", "unsafe-member", "'tables/dim_item.parquet' appears twice"),
    fault("pack_with_manifest_not_json", "bad-manifest", "pack.json: not valid UTF-8 JSON"),
    fault("pack_with_oversized_manifest", "bad-manifest", "over the 1048576-byte limit"),
    fault("pack_with_unknown_manifest_field", "bad-manifest", "unknown comment"),
    fault("pack_with_unsupported_format_version", "unsupported-format", "format_version 2 is not"),
    fault("pack_with_manifest_schema_mismatch", "schema", "dim_item: schema differs"),
    fault("pack_with_row_count_lie", "schema", "the manifest says"),
    fault("pack_with_duplicate_manifest_key", "bad-manifest", "key 'dataset_id' appears twice"),
    fault("pack_with_duplicate_key_in_table_entry", "bad-manifest", "key 'rows' appears twice"),
    fault("pack_with_boolean_format_version", "bad-manifest", "format_version must be an integer"),
    fault("pack_with_float_format_version", "bad-manifest", "format_version must be an integer"),
    fault("pack_with_boolean_registry_version", "schema", "schema_registry_version True is not"),
    fault("pack_with_basic_format_generated_at", "bad-manifest", "generated_at: not an RFC 3339"),
    fault("pack_with_week_date_generated_at", "bad-manifest", "generated_at: not an RFC 3339"),
    fault("pack_with_table_not_parquet", "schema", "is not a readable Parquet file"),
    fault("pack_with_corrupt_parquet_page", None, "dim_item"),
    fault("pack_with_wrong_column_type", "schema", "yhat: type is string, registry says double"),
    fault("pack_with_missing_metadata_column", "schema", "missing column(s) dataset_id"),
    fault("pack_with_int64_column", "schema", "dim_item.lead_time_days: type is BIGINT"),
    fault("pack_with_binary_string_column", "schema", "dim_item.name: type is BLOB"),
    fault("pack_with_date_as_timestamp", "schema", "fact_forecast.date: type is TIMESTAMP ("),
    fault(
        "pack_with_local_timestamp", "schema", "fact_inventory.generated_at: type is TIMESTAMP ("
    ),
    fault("pack_with_millisecond_timestamp", "schema", "generated_at: type is", "TIMESTAMP_MILLIS"),
    fault(
        "pack_with_nanosecond_timestamp",
        "schema",
        "generated_at: type is TIMESTAMPTZ_NS (Parquet INT64)",
    ),
    fault(
        "pack_with_columns_out_of_order", "schema", "dim_item: columns must be in registry order"
    ),
    fault("pack_with_extra_column", "schema", "fact_metrics: unexpected column(s) note"),
    fault("pack_with_contradicting_metadata", "metadata", "fact_forecast", "model_version"),
    fault("pack_with_contradicting_generated_at", "metadata", "fact_inventory", "generated_at"),
    fault("pack_with_null_in_required_column", "data", "row(s) with null yhat"),
    fault("pack_with_duplicate_primary_key", "data", "duplicated primary key(s) (item_id, date)"),
    fault("pack_with_dangling_item", "data", "whose item_id is not in dim_item.item_id"),
    fault("pack_with_nan_forecast", "data", "'forecast values are finite'"),
    fault("pack_with_inverted_interval", "data", "'interval contains the forecast'"),
    fault("pack_with_dotdot_item_id", "data", "dim_item: 1 row(s) with item_id not matching"),
    fault("pack_with_sql_in_item_id", "data", "dim_item: 1 row(s) with item_id not matching"),
    fault(
        "pack_with_footer_claiming_no_rows",
        "schema",
        "fact_forecast: 1,200 rows loaded, the manifest says 0",
    ),
    fault("pack_with_20_mb_item_name", "data", "dim_item: 1 row(s) with name longer than 200"),
    fault("pack_with_1_mb_category", "data", "dim_item: 1 row(s) with category longer than 64"),
    fault("pack_with_empty_fact_table", "data", "fact_inventory: 0 row(s), the registry needs"),
    fault("pack_with_date_in_year_200000", "data", "fact_forecast: 1 row(s) with date after"),
    fault("pack_with_date_in_1000_bc", "data", "fact_inventory: 1 row(s) with date before"),
    fault("replayed_pack", "replay", "was already imported as v0001"),
    fault("pack_older_than_current", "older", "before the current version v0001"),
]


@pytest.mark.parametrize("fault", CORPUS, ids=[fault.pack for fault in CORPUS])
def test_bad_pack_is_refused_in_one_line_and_changes_nothing(
    fault: Fault, request: pytest.FixtureRequest, store_serving_good_pack: Path, signer: Signer
) -> None:
    data_dir = store_serving_good_pack
    pack: Path = request.getfixturevalue(fault.pack)
    before = versions_json(data_dir)
    result = import_packs(data_dir, signer, pack)
    assert_refused(result, data_dir, pack, before, fault.reason, fault.words)


# --- around the corpus --------------------------------------------------------------------------


def test_forged_pack_without_fault_is_accepted(
    good_parts: ForgedPack, tmp_path: Path, signer: Signer
) -> None:
    """The forge adds no fault of its own, so each corpus pack is refused for its named one."""
    for name in TABLES:
        good_parts.edit_table(name, "SELECT * FROM t", tmp_path)
    pack = good_parts.write(tmp_path / "forged_faultless.pack", signer.key)
    result = import_packs(tmp_path / "data", signer, pack)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "v0001\n"


def test_replayed_pack_is_refused_under_any_file_name(
    demo_tables: Path, tmp_path: Path, signer: Signer
) -> None:
    data_dir = tmp_path / "data"
    pack = make_pack(demo_tables, signer, tmp_path / "fresh.pack")
    assert import_packs(data_dir, signer, pack).returncode == 0
    before = versions_json(data_dir)
    for replay in (pack, Path(shutil.copy(pack, tmp_path / "renamed.pack"))):
        result = import_packs(data_dir, signer, replay)
        assert_refused(result, data_dir, replay, before, "replay", ("already imported as v0001",))


def test_older_pack_is_refused_unless_forced(
    newer_pack: Path, good_pack: Path, tmp_path: Path, signer: Signer
) -> None:
    data_dir = tmp_path / "data"
    assert import_packs(data_dir, signer, newer_pack).returncode == 0
    before = versions_json(data_dir)
    refused = import_packs(data_dir, signer, good_pack)
    assert_refused(refused, data_dir, good_pack, before, "older", ("use --force-older",))

    forced = import_packs(data_dir, signer, good_pack, force_older=True)
    assert forced.returncode == 0, forced.stderr
    assert forced.stdout == "v0002\n"
    assert current_of(data_dir) == "v0002"
    (served,) = [v for v in json.loads(versions_json(data_dir))["versions"] if v["current"]]
    assert served["generated_at"] == GOOD_GENERATED_AT


def test_bad_pack_among_good_ones_is_refused_and_the_good_ones_publish(
    good_pack: Path, newer_pack: Path, pack_with_symlink: Path, tmp_path: Path, signer: Signer
) -> None:
    data_dir = tmp_path / "data"
    result = import_packs(data_dir, signer, good_pack, pack_with_symlink, newer_pack)
    assert result.returncode != 0
    assert result.stdout == "v0001\nv0002\n"
    (line,) = error_lines(result.stderr)
    assert line.startswith(f"error: {pack_with_symlink.name}: "), line
    assert "symbolic link" in line
    assert current_of(data_dir) == "v0002"
    assert last_event(data_dir)["event"] == "import"


def test_refused_pack_leaves_its_reason_in_rejected(
    pack_with_hash_mismatch: Path, tmp_path: Path, signer: Signer
) -> None:
    data_dir = tmp_path / "data"
    result = import_packs(data_dir, signer, pack_with_hash_mismatch)
    assert result.returncode == 3
    (reason_file,) = (data_dir / "rejected").glob("*.reason.json")
    assert reason_file.name.endswith("-pack_with_hash_mismatch.pack.reason.json")
    reason = json.loads(reason_file.read_text())
    assert reason["reason"] == "hash-mismatch"
    assert reason["pack_file"] == str(pack_with_hash_mismatch)
    assert reason["message"] == error_lines(result.stderr)[0].split(": ", 2)[2]
    assert reason["pack_id"] == ForgedPack.read(pack_with_hash_mismatch).manifest["pack_id"]
    assert {"refused_at", "actor", "dataset_id"} <= set(reason)
    assert current_of(data_dir) is None


def test_refused_packs_with_the_same_file_name_each_leave_a_reason(
    pack_with_symlink: Path,
    pack_with_hardlink: Path,
    tmp_path: Path,
    signer: Signer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Two different bad packs, both called bad.pack, refused in the same second: both reasons stay."""
    monkeypatch.setattr(appliance.data.store, "now_utc", lambda: datetime(2026, 11, 2, tzinfo=UTC))
    store = DataStore(tmp_path / "data")
    packs = []
    for folder, bad in (("a", pack_with_symlink), ("b", pack_with_hardlink)):
        (tmp_path / folder).mkdir()
        packs.append(Path(shutil.copy(bad, tmp_path / folder / "bad.pack")))
        with pytest.raises(PackRejected):
            import_pack(store, packs[-1], signer.trusted())
    reasons = [json.loads(f.read_text()) for f in reason_files(store.root, packs[0])]
    assert sorted(r["pack_file"] for r in reasons) == [str(p) for p in packs]


def test_pack_generated_half_a_second_after_current_is_not_older(
    good_parts: ForgedPack, good_pack: Path, tmp_path: Path, signer: Signer
) -> None:
    """generated_at is compared as an instant, not as text ("06:00:00.500000Z" < "06:00:00Z")."""
    restamp(good_parts, "2026-11-01T06:00:00.5Z", tmp_path)
    later = good_parts.write(tmp_path / "half_a_second_later.pack", signer.key)
    data_dir = tmp_path / "data"
    assert import_packs(data_dir, signer, good_pack).returncode == 0
    result = import_packs(data_dir, signer, later)
    assert result.returncode == 0, result.stderr
    assert current_of(data_dir) == "v0002"
