"""The debs step (bundle/debs.py) against a local mirror signed by a test key: the whole step,
apt-get included, with no network; the cache, offline builds, refresh and a lying mirror.

tests/integration/test_debian_packages.py runs the same step against Debian itself.
"""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from appliance.bundles import bundle_layout as layout
from appliance.bundles.debian_archive import verify_debian_packages
from appliance.errors import ConfigError
from bundle import debs
from tests.debian_repo import TARGET, ArchiveKey, Deb, SignedRepo, make_key, tree_digest
from tests.packs import flip_byte

UNREACHABLE = "http://mirror.invalid"

pytestmark = pytest.mark.skipif(
    any(shutil.which(tool) is None for tool in ("gpg", "gpgv", "gpgconf", "apt-get")),
    reason="needs gpg (to make a test key), gpgv and apt-get",
)


@pytest.fixture(scope="module")
def key(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ArchiveKey]:
    yield from make_key(tmp_path_factory.mktemp("archive-key"))


def node_debs() -> list[Deb]:
    """What python3-venv and Podman need on a node that has nothing: four packages."""
    return [
        Deb(
            "python3-venv",
            "3.11.2-1+b1",
            "pool/main/p/python3-defaults/python3-venv_3.11.2-1+b1_amd64.deb",
            b"v" * 900,
        ),
        Deb(
            "podman",
            "4.3.1+ds1-8+deb12u1",
            "pool/main/libp/libpod/podman_4.3.1+ds1-8+deb12u1_amd64.deb",
            b"p" * 3000,
            depends="libgpgme11 (>= 1.18), runc",
        ),
        Deb(
            "runc",
            "1.1.5+ds1-1+deb12u1",
            "pool/main/r/runc/runc_1.1.5+ds1-1+deb12u1_amd64.deb",
            b"r" * 700,
        ),
        Deb(
            "libgpgme11",
            "1.18.0-3+deb12u1",
            "pool/updates/main/g/gpgme1.0/libgpgme11_1.18.0-3+deb12u1_amd64.deb",
            b"g" * 500,
            archive="debian-security",
        ),
    ]


def mirror(folder: Path, key: ArchiveKey, date: str = "Sat, 11 Jul 2026 10:16:37 UTC") -> str:
    """A mirror's root (debian/ and debian-security/) as a file URL."""
    repo = SignedRepo(folder, key, node_debs(), date=date)
    repo.seal()
    return repo.folder.as_uri()


def filled_cache(cache: Path) -> Path:
    """A cache whose standard installation is empty (nothing is installed), made by hand."""
    status = debs._standard_folder(cache, TARGET) / "status"
    status.parent.mkdir(parents=True)
    status.write_bytes(b"")
    return cache


def collect(options: debs.DebianOptions, out: Path) -> tuple[debs.TargetDebs, list[str]]:
    said: list[str] = []
    [found] = debs.collect([TARGET], ["podman"], options, out, said.append)
    return found, said


def test_the_step_resolves_fetches_and_lays_out_a_verifiable_folder(
    tmp_path: Path, key: ArchiveKey
) -> None:
    url = mirror(tmp_path / "mirror", key)
    options = debs.DebianOptions(filled_cache(tmp_path / "cache"), url, key.keyring)
    out = tmp_path / layout.top_dir("1.0.0")
    found, said = collect(options, out)
    assert sorted(deb.name for deb in found.closure["podman"]) == [
        "libgpgme11",
        "podman",
        "python3-venv",
        "runc",
    ]
    assert {deb.archive for deb in found.debs} == {"debian", "debian-security"}
    assert any("(4 fetched)" in line for line in said)
    report = verify_debian_packages(out, {"targets": [found.manifest_entry()]}, key.keyring)
    assert report.debs == 4


def test_a_filled_cache_needs_no_mirror_and_gives_the_same_bytes(
    tmp_path: Path, key: ArchiveKey
) -> None:
    cache = filled_cache(tmp_path / "cache")
    url = mirror(tmp_path / "mirror", key)
    first, _ = collect(debs.DebianOptions(cache, url, key.keyring), tmp_path / "one")
    shutil.rmtree(tmp_path / "mirror")
    again, said = collect(debs.DebianOptions(cache, UNREACHABLE, key.keyring), tmp_path / "two")
    assert tree_digest(tmp_path / "one") == tree_digest(tmp_path / "two")
    assert again.manifest_entry() == first.manifest_entry()
    assert not any("fetching" in line for line in said)
    assert any("(0 fetched)" in line for line in said)


def test_refresh_takes_the_newer_snapshot(tmp_path: Path, key: ArchiveKey) -> None:
    cache = filled_cache(tmp_path / "cache")
    collect(debs.DebianOptions(cache, mirror(tmp_path / "old", key), key.keyring), tmp_path / "a")
    newer = mirror(tmp_path / "new", key, date="Mon, 30 Nov 2026 02:21:41 UTC")
    kept, _ = collect(debs.DebianOptions(cache, newer, key.keyring), tmp_path / "b")
    assert kept.sources[0].release.date.startswith("Sat")  # no refresh: the cached snapshot
    fresh, _ = collect(debs.DebianOptions(cache, newer, key.keyring, refresh=True), tmp_path / "c")
    assert [s.release.date for s in fresh.sources] == ["Mon, 30 Nov 2026 02:21:41 UTC"] * 3


def test_a_refresh_that_fails_half_way_keeps_the_cached_snapshot(
    tmp_path: Path, key: ArchiveKey
) -> None:
    cache = filled_cache(tmp_path / "cache")
    collect(debs.DebianOptions(cache, mirror(tmp_path / "old", key), key.keyring), tmp_path / "a")
    newer = mirror(tmp_path / "new", key, date="Mon, 30 Nov 2026 02:21:41 UTC")
    shutil.rmtree(tmp_path / "new/debs/debian12/debian-security")  # the last suite is missing
    with pytest.raises(ConfigError, match=r"cannot fetch file://.*bookworm-security/InRelease"):
        collect(debs.DebianOptions(cache, newer, key.keyring, refresh=True), tmp_path / "b")
    kept, _ = collect(debs.DebianOptions(cache, UNREACHABLE, key.keyring), tmp_path / "c")
    assert [s.release.date for s in kept.sources] == ["Sat, 11 Jul 2026 10:16:37 UTC"] * 3


def test_a_mirror_whose_inrelease_is_not_signed_by_the_keyring_is_refused(
    tmp_path: Path, key: ArchiveKey
) -> None:
    url = mirror(tmp_path / "mirror", key)
    options = debs.DebianOptions(filled_cache(tmp_path / "cache"), url, Path(layout.DEBIAN_KEYRING))
    with pytest.raises(ConfigError, match="does not serve Debian's signed metadata"):
        collect(options, tmp_path / "out")


def test_a_mirror_serving_another_deb_is_refused_and_nothing_is_cached(
    tmp_path: Path, key: ArchiveKey
) -> None:
    url = mirror(tmp_path / "mirror", key)
    podman = node_debs()[1]
    flip_byte(tmp_path / "mirror/debs/debian12/debian" / podman.filename, 10)
    cache = filled_cache(tmp_path / "cache")
    with pytest.raises(ConfigError, match="is not the file Debian's metadata lists"):
        collect(debs.DebianOptions(cache, url, key.keyring), tmp_path / "out")
    podman_sha = hashlib.sha256(podman.data).hexdigest()
    for cached in (cache / debs.CACHE_FOLDER / "debs").iterdir():  # each whole, none partial
        assert cached.name == f"{hashlib.sha256(cached.read_bytes()).hexdigest()}.deb"
        assert cached.name != f"{podman_sha}.deb"


def test_a_package_no_suite_has_is_one_line(tmp_path: Path, key: ArchiveKey) -> None:
    repo = SignedRepo(tmp_path / "mirror", key, node_debs()[:2])  # no runc, no libgpgme11
    repo.seal()
    options = debs.DebianOptions(
        filled_cache(tmp_path / "cache"), repo.folder.as_uri(), key.keyring
    )
    with pytest.raises(ConfigError, match="apt-get cannot install python3-venv podman runc"):
        collect(options, tmp_path / "out")


def test_the_hosts_apt_configuration_is_not_read(tmp_path: Path, key: ArchiveKey) -> None:
    """The private apt.conf comes first and points the configuration parts at an empty folder."""
    status = tmp_path / "status"
    status.write_bytes(b"")
    suites = layout.debian_suites(TARGET)
    apt = debs.PrivateApt(tmp_path / "apt", tmp_path / "tree", suites, status, key.keyring)
    config = (tmp_path / "apt/apt.conf").read_text()
    assert f'Dir::Etc::Parts "{tmp_path / "apt/empty"}";' in config
    assert 'Dir::Etc::main "/dev/null";' in config
    assert not any((tmp_path / "apt/empty").iterdir())
    assert apt.env["APT_CONFIG"] == str(tmp_path / "apt/apt.conf")


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("ftp://deb.debian.org", "give the mirror's root"),
        ("deb.debian.org", "give the mirror's root"),
        ("http://deb.debian.org/?x=1", "no query or fragment"),
    ],
)
def test_a_bad_mirror_url_is_refused(url: str, words: str) -> None:
    with pytest.raises(ConfigError, match=words):
        debs.check_mirror(url)


def test_engines_are_chosen_by_name_in_their_own_order() -> None:
    assert debs.selected_engines(["docker", "podman"]) == ("podman", "docker")
    with pytest.raises(ConfigError, match="choose from podman, docker"):
        debs.selected_engines(["lxc"])
