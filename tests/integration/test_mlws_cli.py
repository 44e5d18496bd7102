"""`mlws` as a workstation user runs it: metadata flags default from the tables, and broken input
gives one error line and a documented exit code, never a traceback."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import duckdb
import pytest

from appliance.packs.pack_layout import table_member
from tests.conftest import Signer, run
from tests.packs import ForgedPack, with_footer_rows

USAGE = 2  # click's usage errors, and ConfigError/KeyFileError: a bad flag, path or key
REFUSED = 3  # bad tables or a refused pack


def the_error_line(done: subprocess.CompletedProcess[str]) -> str:
    """The one error line of a failed command: our `error:` last, or click's `Error:` for usage."""
    assert "Traceback" not in done.stderr, done.stderr
    assert done.stdout == "", done.stdout
    lines = done.stderr.splitlines()
    errors = [line for line in lines if line.startswith(("error:", "Error:"))]
    assert len(errors) == 1, done.stderr
    if errors[0].startswith("error:"):
        assert lines[-1] == errors[0], done.stderr
    return errors[0]


def copy_tables(demo_tables: Path, folder: Path) -> Path:
    return Path(shutil.copytree(demo_tables, folder))


def restamp_table(tables: Path, name: str, column: str, value: str) -> None:
    """Give every row of table `name` another value of metadata column `column`."""
    path = tables / f"{name}.parquet"
    edited = tables / "edited.tmp"
    duckdb.sql(
        f"COPY (SELECT * REPLACE ('{value}' AS {column}) FROM read_parquet('{path}')) "
        f"TO '{edited}' (FORMAT parquet)"
    )
    edited.replace(path)


# --- metadata flags default from the tables ----------------------------------------------------


def test_pack_takes_the_metadata_the_tables_carry(
    tmp_path: Path, demo_tables: Path, signer: Signer
) -> None:
    pack = tmp_path / "defaults.pack"
    done = run("mlws", "pack", demo_tables, "--key", signer.key, "--out", pack)
    assert done.returncode == 0, done.stderr
    manifest = ForgedPack.read(pack).manifest
    assert (manifest["dataset_id"], manifest["model_version"], manifest["source"]) == (
        "demo-telecom-spares",
        "demo-ensemble-1.0",
        "ensemble",
    )
    assert manifest["generated_at"] == "2026-11-01T06:00:00Z"
    verified = run("mlws", "verify", pack, "--signers", signer.allowed_signers)
    assert verified.returncode == 0, verified.stderr


def test_pack_takes_a_flag_that_agrees_with_the_tables(
    tmp_path: Path, demo_tables: Path, signer: Signer
) -> None:
    pack = tmp_path / "agrees.pack"
    argv: list[str | Path] = ["--source", "ensemble", "--key", signer.key, "--out", pack]
    done = run("mlws", "pack", demo_tables, *argv)
    assert done.returncode == 0, done.stderr


def test_pack_refuses_tables_that_disagree_among_themselves(
    tmp_path: Path, demo_tables: Path, signer: Signer
) -> None:
    tables = copy_tables(demo_tables, tmp_path / "tables")
    restamp_table(tables, "fact_metrics", "model_version", "other-2.0")
    out = tmp_path / "x.pack"
    done = run("mlws", "pack", tables, "--key", signer.key, "--out", out)
    assert done.returncode == REFUSED
    assert the_error_line(done) == (
        "error: the tables carry different model_version values "
        "(demo-ensemble-1.0, other-2.0); pass --model-version"
    )
    # With the flag, the tables that say otherwise are named by the node's own data check.
    done = run("mlws", "pack", tables, "--key", signer.key, "--out", out, "--model-version", "m")
    assert done.returncode == REFUSED
    assert "row(s) with model_version other than the pack's (m)" in the_error_line(done)
    assert not out.exists()


def test_pack_needs_the_flags_only_for_tables_without_metadata(
    tmp_path: Path, demo_tables: Path, signer: Signer
) -> None:
    bare = tmp_path / "bare"
    bare.mkdir()
    for table in demo_tables.glob("*.parquet"):
        duckdb.sql(
            f"COPY (SELECT * EXCLUDE (model_version, generated_at, source, dataset_id) "
            f"FROM read_parquet('{table}')) TO '{bare / table.name}' (FORMAT parquet)"
        )
    out = tmp_path / "x.pack"
    done = run("mlws", "pack", bare, "--key", signer.key, "--out", out, "--dataset-id", "d1")
    assert done.returncode == USAGE
    assert the_error_line(done) == "error: no table carries model_version: pass --model-version"
    assert not out.exists()


# --- broken input: one line, a documented exit code --------------------------------------------


@pytest.fixture
def broken(tmp_path: Path, demo_tables: Path, good_pack: Path, signer: Signer) -> dict[str, Path]:
    """Inputs named for what is wrong with them, beside good ones."""
    paths = {
        "tables": demo_tables,
        "key": signer.key,
        "public_key": Path(f"{signer.key}.pub"),
        "signers": signer.allowed_signers,
        "good_pack": good_pack,
        "missing": tmp_path / "missing",
        "a_file": tmp_path / "a_file",
        "a_folder": tmp_path / "a_folder",
        "garbage": tmp_path / "garbage",
        "pack_not_a_tar": tmp_path / "not_a_tar.pack",
        "tables_with_table_not_parquet": copy_tables(demo_tables, tmp_path / "not_parquet"),
        "tables_with_folder_as_table": copy_tables(demo_tables, tmp_path / "folder_table"),
        "tables_with_footer_lying_about_rows": copy_tables(demo_tables, tmp_path / "lying"),
    }
    paths["a_file"].write_text("a file\n")
    paths["a_folder"].mkdir()
    paths["garbage"].write_bytes(b"\x00\xffnot a key, not a signers line\n")
    paths["pack_not_a_tar"].write_bytes(b"\x00" * 10 + b"PAR1" * 300)
    (paths["tables_with_table_not_parquet"] / "fact_metrics.parquet").write_bytes(b"PAR1" * 999)
    folder_table = paths["tables_with_folder_as_table"] / "dim_item.parquet"
    folder_table.unlink()
    folder_table.mkdir()
    lying = paths["tables_with_footer_lying_about_rows"] / "fact_forecast.parquet"
    lying.write_bytes(with_footer_rows(lying.read_bytes(), 30 * 40, 0))
    assert table_member("fact_forecast").endswith(lying.name)
    return paths


Argv = Callable[[dict[str, Path], Path], list[str | Path]]


def mlws_pack(tables: str, key: str = "key", out: str | None = None) -> Argv:
    def argv(p: dict[str, Path], tmp: Path) -> list[str | Path]:
        target: Path = p[out] if out else tmp / "x.pack"
        return ["mlws", "pack", p[tables], "--key", p[key], "--out", target]

    return argv


def command(*args: str) -> Argv:
    """An mlws command line; a word naming an input (alone or before /) stands for its path."""

    def resolve(p: dict[str, Path], word: str) -> str | Path:
        head, slash, rest = word.partition("/")
        return p[head] / rest if slash and head in p else p.get(word, word)

    def argv(p: dict[str, Path], tmp: Path) -> list[str | Path]:
        return ["mlws", *(resolve(p, a) for a in args)]

    return argv


BROKEN = [
    ("pack_missing_tables_folder", mlws_pack("missing"), USAGE, "is not a folder of"),
    ("pack_tables_folder_is_a_file", mlws_pack("a_file"), USAGE, "is a file"),
    ("pack_table_not_parquet", mlws_pack("tables_with_table_not_parquet"), REFUSED, "not a readable Parquet"),
    ("pack_folder_as_table", mlws_pack("tables_with_folder_as_table"), REFUSED, "not a readable Parquet"),
    (
        "pack_footer_lying_about_rows",
        mlws_pack("tables_with_footer_lying_about_rows"),
        REFUSED,
        "fact_forecast: the Parquet footer says 0 rows, the data holds 1,200",
    ),
    ("pack_missing_key", mlws_pack("tables", key="missing"), USAGE, "does not exist"),
    ("pack_garbage_key", mlws_pack("tables", key="garbage"), USAGE, "not an OpenSSH private key"),
    ("pack_public_key", mlws_pack("tables", key="public_key"), USAGE, "not an OpenSSH private key"),
    ("pack_folder_as_key", mlws_pack("tables", key="a_folder"), USAGE, "is a directory"),
    ("pack_folder_as_out", mlws_pack("tables", out="a_folder"), USAGE, "is a directory"),
    ("pack_out_not_a_pack_name", mlws_pack("tables", out="a_file"), USAGE, "must end in .pack"),
    ("pack_out_in_missing_folder", command("pack", "tables", "--key", "key", "--out", "missing/x.pack"), USAGE, "is not a folder"),
    ("pack_out_where_nothing_can_be_written", command("pack", "tables", "--key", "key", "--out", "/proc/x.pack"), USAGE, "/proc: cannot write there"),
    ("verify_missing_pack", command("verify", "missing", "--signers", "signers"), REFUSED, "missing: not a regular file"),
    ("verify_folder_as_pack", command("verify", "a_folder", "--signers", "signers"), USAGE, "is a directory"),
    ("verify_pack_not_a_tar", command("verify", "pack_not_a_tar", "--signers", "signers"), REFUSED, "not an uncompressed tar"),
    ("verify_missing_signers", command("verify", "good_pack", "--signers", "missing"), USAGE, "does not exist"),
    ("verify_garbage_signers", command("verify", "good_pack", "--signers", "garbage"), USAGE, "cannot read allowed signers file"),
    ("verify_key_as_signers", command("verify", "good_pack", "--signers", "key"), USAGE, "line 1"),
    ("export_missing_pack", command("export", "missing", "--to", "a_folder"), USAGE, "no such pack file"),
    ("export_to_missing_folder", command("export", "good_pack", "--to", "missing"), USAGE, "not a folder"),
    ("export_to_a_file", command("export", "good_pack", "--to", "a_file"), USAGE, "is a file"),
    ("demo_out_under_a_file", command("demo", "--out", "a_file/t"), USAGE, "cannot write there"),
    ("demo_out_where_nothing_can_be_written", command("demo", "--out", "/proc/t"), USAGE, "cannot write there"),
    ("keygen_out_in_missing_folder", command("keygen", "--out", "missing/k"), USAGE, "cannot write key file"),
    ("keygen_out_over_a_key", command("keygen", "--out", "key"), USAGE, "refusing to overwrite"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("argv", "code", "words"),
    [case[1:] for case in BROKEN],
    ids=[case[0] for case in BROKEN],
)
def test_broken_input_gives_one_line_and_a_documented_exit_code(
    broken: dict[str, Path], tmp_path: Path, argv: Argv, code: int, words: str
) -> None:
    done = run(*argv(broken, tmp_path))
    line = the_error_line(done)
    assert done.returncode == code, done.stderr
    assert words in line, line
    assert not (tmp_path / "x.pack").exists()
