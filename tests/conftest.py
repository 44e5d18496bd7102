"""Fixtures shared by every test: signing keys, small demo tables, a good pack, the CLIs."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest

from appliance.packs.pack_layout import SIGNATURE_NAMESPACE
from appliance.trust.sshsig import AllowedSigner, SignerKey, generate_key, load_allowed_signers
from ml_workstation.demo import DemoSpec, generate_demo
from ml_workstation.pack_builder import PackRequest, build_pack

BIN = Path(sys.executable).parent
SMALL_ITEMS, SMALL_DAYS = 30, 40
GENERATED_AT = datetime(2026, 11, 1, 6, 0, tzinfo=UTC)


@dataclass(frozen=True)
class Signer:
    """A signing key with its allowed_signers file."""

    key: Path
    public: SignerKey
    allowed_signers: Path
    principal: str

    def trusted(self) -> list[AllowedSigner]:
        return load_allowed_signers(self.allowed_signers)


def make_signer(folder: Path, principal: str) -> Signer:
    folder.mkdir(parents=True, exist_ok=True)
    key = folder / "key"
    public = generate_key(key, principal)
    allowed = folder / "allowed_signers"
    allowed.write_text(f'{principal} namespaces="{SIGNATURE_NAMESPACE}" {public.openssh_line()}\n')
    return Signer(key, public, allowed, principal)


@pytest.fixture(scope="session")
def signer(tmp_path_factory: pytest.TempPathFactory) -> Signer:
    """The trusted workstation key."""
    return make_signer(tmp_path_factory.mktemp("signer"), "ml@workstation")


@pytest.fixture(scope="session")
def untrusted_signer(tmp_path_factory: pytest.TempPathFactory) -> Signer:
    """A key that no node trusts."""
    return make_signer(tmp_path_factory.mktemp("untrusted"), "intruder@elsewhere")


def make_tables(folder: Path, seed: int = 7, generated_at: datetime = GENERATED_AT) -> Path:
    generate_demo(
        folder, DemoSpec(items=SMALL_ITEMS, days=SMALL_DAYS, seed=seed, generated_at=generated_at)
    )
    return folder


@pytest.fixture(scope="session")
def demo_tables(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Small demo tables (30 items x 40 days), with metadata columns."""
    return make_tables(tmp_path_factory.mktemp("tables"))


def make_pack(tables: Path, signer: Signer, out: Path, **overrides: object) -> Path:
    fields = {
        "dataset_id": "demo-telecom-spares",
        "model_version": "demo-ensemble-1.0",
        "source": "ensemble",
    } | overrides
    build_pack(PackRequest(tables, **fields), signer.key, out)  # type: ignore[arg-type]
    return out


@pytest.fixture(scope="session")
def good_pack(tmp_path_factory: pytest.TempPathFactory, demo_tables: Path, signer: Signer) -> Path:
    """A valid pack of the small demo tables (copy it before changing it)."""
    return make_pack(demo_tables, signer, tmp_path_factory.mktemp("pack") / "good.pack")


@pytest.fixture(scope="session")
def newer_pack(tmp_path_factory: pytest.TempPathFactory, signer: Signer) -> Path:
    """A valid pack generated a day after good_pack."""
    folder = tmp_path_factory.mktemp("newer")
    tables = make_tables(folder / "tables", seed=8, generated_at=datetime(2026, 11, 2, tzinfo=UTC))
    return make_pack(tables, signer, folder / "newer.pack")


@pytest.fixture
def pack_copy(tmp_path: Path, good_pack: Path) -> Path:
    """A private copy of good_pack."""
    return Path(shutil.copy(good_pack, tmp_path / "copy.pack"))


def run(
    *argv: str | Path, check: bool = False, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run one of the project's commands (appliance, mlws) from this venv."""
    command = [str(BIN / str(argv[0])), *map(str, argv[1:])]
    return subprocess.run(command, capture_output=True, text=True, check=check, timeout=timeout)


def import_into(
    data_dir: Path, pack: Path, signer: Signer, *, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """`appliance import PACK` into `data_dir`, trusting `signer`, as an admin runs it."""
    return run(
        "appliance",
        "import",
        pack,
        "--data-dir",
        data_dir,
        "--signers",
        signer.allowed_signers,
        check=check,
    )


def versions_json(data_dir: Path) -> str:
    """What `appliance versions --json` prints for `data_dir`."""
    return run("appliance", "versions", "--data-dir", data_dir, "--json", check=True).stdout


def current_of(data_dir: Path) -> str | None:
    """The current version id, as `appliance versions --json` reports it."""
    current: str | None = json.loads(versions_json(data_dir))["current"]
    return current
