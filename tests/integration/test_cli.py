"""The `mlws` and `appliance` commands as a user runs them: happy paths, stock tools, bad input."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from appliance.packs.pack_layout import SIGNATURE_NAMESPACE
from tests.conftest import BIN, Signer, current_of, import_into, make_pack, run, versions_json
from tests.packs import ForgedPack

REPO = Path(__file__).resolve().parents[2]


def one_error_line(done: subprocess.CompletedProcess[str]) -> str:
    """The single `error:` line a failed command must print, and nothing else on stderr."""
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error:")]
    assert done.returncode != 0, done.stderr
    assert len(errors) == 1, done.stderr
    assert "Traceback" not in done.stderr
    return errors[0]


def extract(pack: Path, folder: Path) -> tuple[Path, Path]:
    """pack.json and pack.json.sig of a pack, extracted with stock tar."""
    subprocess.run(
        ["tar", "-xf", str(pack), "-C", str(folder), "pack.json", "pack.json.sig"], check=True
    )
    return folder / "pack.json", folder / "pack.json.sig"


def stock_verify(
    allowed: Path, principal: str, signature: Path, message: Path
) -> subprocess.CompletedProcess[str]:
    """Check a signature the way an admin would, with stock OpenSSH only."""
    argv = ["ssh-keygen", "-Y", "verify", "-f", str(allowed), "-I", principal]
    with message.open("rb") as stdin:
        return subprocess.run(
            [*argv, "-n", SIGNATURE_NAMESPACE, "-s", str(signature)],
            stdin=stdin,
            capture_output=True,
            text=True,
        )


# --- mlws keygen --------------------------------------------------------------------------------


def test_keygen_prints_an_allowed_signers_line_that_stock_ssh_keygen_accepts(
    tmp_path: Path,
) -> None:
    done = run("mlws", "keygen", "--out", tmp_path / "key", "--principal", "ops@ws", check=True)
    line = done.stdout.strip()
    assert line.startswith(f'ops@ws namespaces="{SIGNATURE_NAMESPACE}" ssh-ed25519 ')
    (tmp_path / "allowed").write_text(line + "\n")
    message = tmp_path / "message"
    message.write_text("hello")
    subprocess.run(
        [
            "ssh-keygen",
            "-Y",
            "sign",
            "-f",
            str(tmp_path / "key"),
            "-n",
            SIGNATURE_NAMESPACE,
            str(message),
        ],
        check=True,
        capture_output=True,
    )
    verified = stock_verify(tmp_path / "allowed", "ops@ws", Path(f"{message}.sig"), message)
    assert verified.returncode == 0, verified.stderr
    assert oct((tmp_path / "key").stat().st_mode & 0o777) == "0o600"


def test_keygen_refuses_to_overwrite_a_key(tmp_path: Path) -> None:
    run("mlws", "keygen", "--out", tmp_path / "key", check=True)
    before = (tmp_path / "key").read_bytes()
    assert "refusing to overwrite" in one_error_line(
        run("mlws", "keygen", "--out", tmp_path / "key")
    )
    assert (tmp_path / "key").read_bytes() == before


def test_a_key_made_by_ssh_keygen_signs_packs(tmp_path: Path, demo_tables: Path) -> None:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "stock", "-f", str(tmp_path / "k")],
        check=True,
    )
    public = (tmp_path / "k.pub").read_text().strip()
    (tmp_path / "allowed").write_text(f"stock@ws {public}\n")
    pack = tmp_path / "stock.pack"
    run("mlws", "pack", demo_tables, "--key", tmp_path / "k", "--dataset-id", "demo-telecom-spares",
        "--model-version", "demo-ensemble-1.0", "--source", "ensemble", "--out", pack, check=True)  # fmt: skip
    done = run("mlws", "verify", pack, "--signers", tmp_path / "allowed", check=True)
    assert "signed by   stock@ws" in done.stdout


# --- stock-tool compatibility of packs ------------------------------------------------------------


def test_stock_ssh_keygen_verifies_the_signature_of_our_pack(
    tmp_path: Path, good_pack: Path, signer: Signer
) -> None:
    manifest, signature = extract(good_pack, tmp_path)
    done = stock_verify(signer.allowed_signers, signer.principal, signature, manifest)
    assert done.returncode == 0, done.stderr
    assert f'Good "{SIGNATURE_NAMESPACE}" signature for {signer.principal}' in done.stdout


def test_stock_ssh_keygen_refuses_a_tampered_manifest(
    tmp_path: Path, good_pack: Path, signer: Signer
) -> None:
    manifest, signature = extract(good_pack, tmp_path)
    manifest.write_bytes(manifest.read_bytes().replace(b"demo-ensemble-1.0", b"demo-ensemble-6.6"))
    done = stock_verify(signer.allowed_signers, signer.principal, signature, manifest)
    assert done.returncode != 0


def test_a_pack_signed_with_stock_ssh_keygen_is_imported(
    tmp_path: Path, good_pack: Path, signer: Signer
) -> None:
    parts = ForgedPack.read(good_pack)
    parts.manifest["pack_id"] = "6f1c1f3e-2a5b-4c8e-9d3a-1b2c3d4e5f60"
    manifest = tmp_path / "pack.json"
    manifest.write_bytes(parts.manifest_bytes())
    subprocess.run(
        [
            "ssh-keygen",
            "-Y",
            "sign",
            "-f",
            str(signer.key),
            "-n",
            SIGNATURE_NAMESPACE,
            str(manifest),
        ],
        check=True,
        capture_output=True,
    )
    stock_signature = (tmp_path / "pack.json.sig").read_bytes()
    pack = parts.write(tmp_path / "stock-signed.pack", signer.key, signature=stock_signature)
    done = import_into(tmp_path / "data", pack, signer, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "v0001"


# --- mlws pack / verify / demo: bad input -----------------------------------------------------------


def pack_args(tables: Path, signer: Signer, out: Path, **flags: str) -> list[str | Path]:
    values = {
        "dataset-id": "demo-telecom-spares",
        "model-version": "demo-ensemble-1.0",
        "source": "ensemble",
    }
    values |= flags
    argv: list[str | Path] = ["mlws", "pack", tables, "--key", signer.key, "--out", out]
    for name, value in values.items():
        argv += [f"--{name}", value]
    return argv


def assert_no_pack_written(folder: Path) -> None:
    assert [
        p.name for p in folder.iterdir() if p.suffix in (".pack", ".part") or p.name.startswith(".")
    ] == []


def test_pack_refuses_flags_that_contradict_the_tables_metadata(
    tmp_path: Path, demo_tables: Path, signer: Signer
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    done = run(*pack_args(demo_tables, signer, out / "x.pack", **{"model-version": "other-2.0"}))
    assert "model_version other than the pack's (other-2.0)" in one_error_line(done)
    assert_no_pack_written(out)


def test_pack_stamps_metadata_onto_tables_that_lack_it(
    tmp_path: Path, demo_tables: Path, signer: Signer
) -> None:
    import duckdb

    bare = tmp_path / "bare"
    bare.mkdir()
    for table in demo_tables.glob("*.parquet"):
        duckdb.sql(
            f"COPY (SELECT * EXCLUDE (model_version, generated_at, source, dataset_id) "
            f"FROM read_parquet('{table}')) TO '{bare / table.name}' (FORMAT parquet)"
        )
    pack = tmp_path / "stamped.pack"
    run(
        *pack_args(
            bare,
            signer,
            pack,
            **{"model-version": "lstm-3.1", "generated-at": "2026-11-05T00:00:00Z"},
        ),
        check=True,
    )
    data = tmp_path / "data"
    import_into(data, pack, signer)
    versions = json.loads(versions_json(data))["versions"]
    assert versions[0]["model_version"] == "lstm-3.1"
    assert versions[0]["generated_at"] == "2026-11-05T00:00:00Z"


@pytest.mark.parametrize(
    ("fault", "expected"),
    [
        ("missing_table", "required table(s) missing: fact_metrics"),
        ("unknown_table", "fact_weather not in the schema registry"),
        ("not_parquet", "not a readable Parquet file"),
        ("wrong_type", "fact_forecast.yhat: type is string, registry says double"),
    ],
)
def test_pack_refuses_bad_tables(
    tmp_path: Path, demo_tables: Path, signer: Signer, fault: str, expected: str
) -> None:
    import duckdb

    tables = Path(shutil.copytree(demo_tables, tmp_path / "tables"))
    if fault == "missing_table":
        (tables / "fact_metrics.parquet").unlink()
    elif fault == "unknown_table":
        shutil.copy(tables / "dim_item.parquet", tables / "fact_weather.parquet")
    elif fault == "not_parquet":
        (tables / "fact_inventory.parquet").write_bytes(b"PAR1 but not really")
    elif fault == "wrong_type":
        source = tables / "fact_forecast.parquet"
        broken = tmp_path / "broken.parquet"
        duckdb.sql(
            f"COPY (SELECT * REPLACE (CAST(yhat AS VARCHAR) AS yhat) FROM read_parquet('{source}')) "
            f"TO '{broken}' (FORMAT parquet)"
        )
        shutil.move(broken, source)
    out = tmp_path / "out"
    out.mkdir()
    assert expected in one_error_line(run(*pack_args(tables, signer, out / "x.pack")))
    assert_no_pack_written(out)


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--out", "X.pack"], "a result pack's name must end in .pack"),
        (["--generated-at", "yesterday"], "not an RFC 3339 timestamp"),
        (["--generated-at", "2026-11-01T06:00:00"], "no UTC offset"),
    ],
)
def test_pack_refuses_bad_flags(
    tmp_path: Path, demo_tables: Path, signer: Signer, argv: list[str], expected: str
) -> None:
    base = pack_args(demo_tables, signer, tmp_path / "x.pack")
    flags = dict(zip(argv[::2], argv[1::2], strict=True))
    if "--out" in flags:
        flags["--out"] = str(tmp_path / "x.txt")
    for flag, value in flags.items():
        if flag in base:
            base[base.index(flag) + 1] = value
        else:
            base += [flag, value]
    done = run(*base)
    assert done.returncode != 0
    assert expected in done.stderr
    assert not (tmp_path / "x.pack").exists()


def test_pack_refuses_a_missing_or_foreign_key(
    tmp_path: Path, demo_tables: Path, signer: Signer
) -> None:
    missing = Signer(tmp_path / "nokey", signer.public, signer.allowed_signers, signer.principal)
    assert "nokey" in one_error_line(run(*pack_args(demo_tables, missing, tmp_path / "x.pack")))
    (tmp_path / "garbage").write_text("not a key\n")
    garbage = Signer(tmp_path / "garbage", signer.public, signer.allowed_signers, signer.principal)
    one_error_line(run(*pack_args(demo_tables, garbage, tmp_path / "x.pack")))
    assert not (tmp_path / "x.pack").exists()


def test_verify_prints_who_signed_and_what(good_pack: Path, signer: Signer) -> None:
    done = run("mlws", "verify", good_pack, "--signers", signer.allowed_signers, check=True)
    assert f"signed by   {signer.principal} ({signer.public.fingerprint})" in done.stdout
    assert "fact_forecast" in done.stdout and f"{30 * 40:,} rows" in done.stdout


def test_verify_refuses_an_untrusted_pack_in_one_line(
    good_pack: Path, untrusted_signer: Signer
) -> None:
    line = one_error_line(
        run("mlws", "verify", good_pack, "--signers", untrusted_signer.allowed_signers)
    )
    assert "not an allowed signer" in line


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--items", "0"], "0 is not in the range 1<=x<=1000000"),
        (["--days", "3"], "3 is not in the range 14<=x<=3660"),
        (["--generated-at", "2026-13-01T00:00:00Z"], "Invalid value for '--generated-at'"),
        (["--seed", "-1"], "seed"),
    ],
)
def test_demo_refuses_bad_flags(tmp_path: Path, argv: list[str], expected: str) -> None:
    done = run("mlws", "demo", "--out", tmp_path / "t", *argv)
    assert done.returncode != 0
    assert expected in done.stderr
    assert not list((tmp_path / "t").glob("*.parquet")) if (tmp_path / "t").exists() else True


# --- mlws export ------------------------------------------------------------------------------


def test_export_copies_verifies_and_is_idempotent(tmp_path: Path, good_pack: Path) -> None:
    stick = tmp_path / "usb"
    stick.mkdir()
    first = run("mlws", "export", good_pack, "--to", stick, check=True)
    copy = stick / good_pack.name
    assert copy.read_bytes() == good_pack.read_bytes()
    sha = subprocess.run(
        ["sha256sum", str(copy)], capture_output=True, text=True, check=True
    ).stdout.split()[0]
    assert first.stdout.strip().endswith(f"sha256 {sha}")
    again = run("mlws", "export", good_pack, "--to", stick, check=True)
    assert again.stdout == first.stdout
    assert sorted(p.name for p in stick.iterdir()) == [good_pack.name]


def test_export_refuses_to_overwrite_a_different_pack(tmp_path: Path, good_pack: Path) -> None:
    stick = tmp_path / "usb"
    stick.mkdir()
    (stick / good_pack.name).write_bytes(b"another pack")
    assert "exists with other content" in one_error_line(
        run("mlws", "export", good_pack, "--to", stick)
    )
    assert (stick / good_pack.name).read_bytes() == b"another pack"
    assert sorted(p.name for p in stick.iterdir()) == [good_pack.name]


def test_export_to_an_unmounted_stick_fails_cleanly(tmp_path: Path, good_pack: Path) -> None:
    assert "not a folder" in one_error_line(
        run("mlws", "export", good_pack, "--to", tmp_path / "nothing")
    )
    assert "no such pack file" in one_error_line(
        run("mlws", "export", tmp_path / "none.pack", "--to", tmp_path)
    )


# --- appliance: settings, errors, lock ------------------------------------------------------------


def test_settings_come_from_the_environment(
    tmp_path: Path, good_pack: Path, signer: Signer
) -> None:
    env = os.environ | {
        "APPLIANCE_DATA_DIR": str(tmp_path / "env-data"),
        "APPLIANCE_SIGNERS": str(signer.allowed_signers),
    }
    done = subprocess.run(
        [str(BIN / "appliance"), "import", str(good_pack)], env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert current_of(tmp_path / "env-data") == "v0001"


def test_flags_win_over_the_environment(tmp_path: Path, good_pack: Path, signer: Signer) -> None:
    env = os.environ | {
        "APPLIANCE_DATA_DIR": str(tmp_path / "env-data"),
        "APPLIANCE_SIGNERS": "/nonexistent",
    }
    argv = [
        str(BIN / "appliance"),
        "import",
        str(good_pack),
        "--data-dir",
        str(tmp_path / "flag-data"),
    ]
    done = subprocess.run(
        [*argv, "--signers", str(signer.allowed_signers)], env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert current_of(tmp_path / "flag-data") == "v0001"
    assert not (tmp_path / "env-data").exists()


def test_each_commands_help_names_the_environment_variables_it_reads() -> None:
    reads = {
        "import": (
            "APPLIANCE_DATA_DIR",
            "APPLIANCE_SIGNERS",
            "APPLIANCE_IMPORT_MEMORY",
            "APPLIANCE_IMPORT_THREADS",
        ),
        "watch": (
            "APPLIANCE_DATA_DIR",
            "APPLIANCE_SIGNERS",
            "APPLIANCE_WATCH_INTERVAL",
            "APPLIANCE_IMPORT_MEMORY",
        ),
        "versions": ("APPLIANCE_DATA_DIR",),
        "rollback": ("APPLIANCE_DATA_DIR",),
        "serve": (
            "APPLIANCE_DATA_DIR",
            "APPLIANCE_SIGNERS",
            "APPLIANCE_HOST",
            "APPLIANCE_PORT",
            "APPLIANCE_WORKERS",
        ),
    }
    for command, envs in reads.items():
        text = run("appliance", command, "--help").stdout
        for env in envs:
            assert env in text, f"{command}: {env}"


def test_import_with_a_missing_signers_file_fails_before_touching_the_store(
    tmp_path: Path, good_pack: Path
) -> None:
    done = run(
        "appliance",
        "import",
        good_pack,
        "--data-dir",
        tmp_path / "data",
        "--signers",
        tmp_path / "none",
    )
    assert "none" in one_error_line(done)
    assert done.returncode == 2
    assert not (tmp_path / "data").exists()


def test_import_of_a_missing_file_is_refused(tmp_path: Path, signer: Signer) -> None:
    done = import_into(tmp_path / "d", tmp_path / "ghost.pack", signer, check=False)
    assert "ghost.pack" in one_error_line(done)


def test_a_locked_store_is_reported_not_waited_on(
    tmp_path: Path, good_pack: Path, signer: Signer
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    with (data / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        done = import_into(data, good_pack, signer, check=False)
    assert "locked by another import" in one_error_line(done)
    assert done.returncode == 4


def test_versions_on_an_empty_store(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()  # a missing store is refused (test_appliance_cli_errors.py)
    done = run("appliance", "versions", "--data-dir", tmp_path / "empty", check=True)
    assert "no data versions" in done.stdout
    assert json.loads(versions_json(tmp_path / "empty")) == {"current": None, "versions": []}


def test_rollback_switches_versions_and_is_recorded(
    tmp_path: Path, good_pack: Path, newer_pack: Path, signer: Signer
) -> None:
    data = tmp_path / "data"
    for pack in (good_pack, newer_pack):
        import_into(data, pack, signer)
    assert current_of(data) == "v0002"
    done = run("appliance", "rollback", "v0001", "--data-dir", data, check=True)
    assert done.stdout.strip() == "current version: v0001 (was v0002)"
    assert current_of(data) == "v0001"
    last = json.loads((data / "history.jsonl").read_text().splitlines()[-1])
    assert (last["event"], last["version"], last["previous"]) == ("rollback", "v0001", "v0002")
    run("appliance", "rollback", "v0002", "--data-dir", data, check=True)
    assert current_of(data) == "v0002"


@pytest.mark.parametrize(
    ("vid", "expected"),
    [
        ("v0009", "no version v0009"),
        ("../../etc", "is not a version id"),
        ("v0001", "already the current version"),
    ],
)
def test_rollback_refuses_bad_targets(
    tmp_path: Path, good_pack: Path, signer: Signer, vid: str, expected: str
) -> None:
    data = tmp_path / "data"
    import_into(data, good_pack, signer)
    before = versions_json(data)
    assert expected in one_error_line(run("appliance", "rollback", vid, "--data-dir", data))
    assert versions_json(data) == before


def test_the_served_database_is_sorted_for_item_lookups(
    tmp_path: Path, good_pack: Path, signer: Signer
) -> None:
    import duckdb

    data = tmp_path / "data"
    import_into(data, good_pack, signer)
    con = duckdb.connect(str(data / "current" / "data.duckdb"), read_only=True)
    unsorted = con.execute(
        "SELECT count(*) FROM (SELECT item_id, date, lag(item_id) OVER w AS pi, lag(date) OVER w AS pd "
        "FROM fact_forecast WINDOW w AS (ORDER BY rowid)) WHERE pi IS NOT NULL AND (item_id, date) <= (pi, pd)"
    ).fetchone()
    meta = dict(con.execute("SELECT key, value FROM appliance_version").fetchall())
    con.close()
    assert unsorted == (0,)
    assert meta["dataset_id"] == "demo-telecom-spares"
    assert meta["generated_at"] == "2026-11-01T06:00:00Z"


def test_help_of_every_command_exits_zero() -> None:
    for command in (["appliance"], ["mlws"]):
        top = run(*command, "--help", check=True).stdout
        for line in top.split("Commands:")[1].splitlines():
            if line.strip():
                run(*command, line.split()[0], "--help", check=True)


def test_make_pack_fixture_matches_cli_output(
    tmp_path: Path, demo_tables: Path, signer: Signer
) -> None:
    pack = make_pack(demo_tables, signer, tmp_path / "lib.pack")
    with tarfile.open(pack) as tar:
        names = tar.getnames()
    assert names[:2] == ["pack.json", "pack.json.sig"]
    assert names[2:] == [
        f"tables/{t}.parquet"
        for t in ("dim_item", "fact_forecast", "fact_inventory", "fact_metrics")
    ]


def test_export_to_read_only_media_fails_in_one_line(tmp_path: Path, good_pack: Path) -> None:
    media = tmp_path / "ro-stick"
    media.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "ro,size=4m", "tmpfs", str(media)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip(
            f"mounting a read-only tmpfs needs CAP_SYS_ADMIN: {mounted.stderr.decode().strip()}"
        )
    try:
        line = one_error_line(run("mlws", "export", good_pack, "--to", media))
        assert "Read-only file system" in line
        assert list(media.iterdir()) == []
    finally:
        subprocess.run(["umount", str(media)], check=True)


def test_packs_and_exported_copies_are_readable_by_the_import_user(
    tmp_path: Path, demo_tables: Path, signer: Signer
) -> None:
    pack = make_pack(demo_tables, signer, tmp_path / "modes.pack")
    assert pack.stat().st_mode & 0o777 == 0o644
    (tmp_path / "share").mkdir()
    run("mlws", "export", pack, "--to", tmp_path / "share", check=True)
    assert (tmp_path / "share" / "modes.pack").stat().st_mode & 0o777 == 0o644


def test_a_memory_limit_that_is_not_a_size_is_a_usage_error(
    tmp_path: Path, good_pack: Path, signer: Signer
) -> None:
    argv: list[str | Path] = [
        "appliance",
        "import",
        good_pack,
        "--data-dir",
        tmp_path / "d",
        "--signers",
        signer.allowed_signers,
    ]
    done = run(*argv, "--import-memory", "lots")
    assert done.returncode == 2
    assert "'lots' is not a memory size like 4GB or 512MiB" in done.stderr
    assert "Traceback" not in done.stderr


def test_running_out_of_memory_is_the_nodes_problem_not_a_refusal(
    tmp_path: Path, good_pack: Path, signer: Signer
) -> None:
    data = tmp_path / "data"
    argv: list[str | Path] = [
        "appliance",
        "import",
        good_pack,
        "--data-dir",
        data,
        "--signers",
        signer.allowed_signers,
    ]
    line = one_error_line(run(*argv, "--import-memory", "1MB"))
    assert "failed on this node" in line and "raise --import-memory" in line
    assert list((data / "rejected").iterdir()) == []
    events = [json.loads(e) for e in (data / "history.jsonl").read_text().splitlines()]
    assert [(e["event"], e["reason"]) for e in events] == [("fault", "out-of-memory")]
    assert list((data / "staging").iterdir()) == []
    run(*argv, check=True)  # the same pack, with enough memory, imports


def test_rollback_repairs_a_broken_current_pointer(
    tmp_path: Path, good_pack: Path, signer: Signer
) -> None:
    data = tmp_path / "data"
    import_into(data, good_pack, signer)
    (data / "current").unlink()
    (data / "current").symlink_to("versions/v0042")
    line = one_error_line(run("appliance", "versions", "--data-dir", data))
    assert "appliance rollback VID" in line
    run("appliance", "rollback", "v0001", "--data-dir", data, check=True)
    assert current_of(data) == "v0001"


def test_audit_of_this_repository_finds_no_ml_on_the_node() -> None:
    done = run("appliance", "audit", "--source", REPO, check=True)
    assert done.stdout.startswith("no ML on the node:")


def test_audit_reports_a_planted_ml_import_and_writes_json(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    (tree / "appliance").mkdir(parents=True)
    shutil.copy(REPO / "pyproject.toml", tree / "pyproject.toml")
    (tree / "appliance" / "shortcut.py").write_text(
        "import json\nfrom sklearn.linear_model import Ridge\n"
    )
    report = tmp_path / "audit.json"
    done = run("appliance", "audit", "--source", tree, "--json", report)
    assert done.returncode == 1
    assert "appliance/shortcut.py:2" in done.stdout and "sklearn" in done.stdout
    assert "1 ML finding(s)" in one_error_line(done)
    findings = json.loads(report.read_text())["findings"]
    assert [(f["kind"], f["where"]) for f in findings] == [("import", "appliance/shortcut.py:2")]


def test_audit_of_a_missing_tree_is_a_usage_error(tmp_path: Path) -> None:
    done = run("appliance", "audit", "--source", tmp_path / "nothing")
    assert done.returncode == 2
