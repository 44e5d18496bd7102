"""build_bundle.py end to end: a real bundle, checked with stock tools, Podman and a fresh venv.

One bundle is built per session (tests/integration/conftest.py) with the engine check on; the
tests read it as an operator, an auditor and the node would. A second build proves that the
same sources, lock and SOURCE_DATE_EPOCH give the same bytes.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
import venv
import zipfile
from pathlib import Path
from typing import Any

import pytest
from packaging.tags import compatible_tags, cpython_tags
from packaging.utils import parse_wheel_filename

from appliance.audit.distribution_names import normalise_name
from bundle import checksums, image, layout, rootfs, sign
from bundle.image import SERVER_DISTRIBUTIONS
from bundle.oci import iso_time
from bundle.wheels import read_lock, target_platforms
from tests.conftest import Signer, import_into, run
from tests.integration.conftest import (
    BUNDLE_VERSION,
    PODMAN_FLAGS,
    REPO,
    SOURCE_DATE_EPOCH,
    BuiltBundle,
    build_command,
    build_env,
)
from tests.sbom_schema import graph_errors, schema_errors

ULIMITS = ("--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1000:1000")
IMAGE_GOAL_BYTES = 150_000_000
READY_WITHIN_SECONDS = 60.0


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def manifest_of(unpacked: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((unpacked / layout.MANIFEST).read_text())
    return data


def podman(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["podman", *PODMAN_FLAGS, *args], capture_output=True, text=True, check=check, timeout=300
    )


def layer_names(unpacked: Path) -> dict[str, list[str]]:
    """Every path in each layer of the server image, by layer diff_id."""
    names: dict[str, list[str]] = {}
    with tarfile.open(unpacked / layout.SERVER_IMAGE_FILE) as image:
        manifest = json.load(image.extractfile("manifest.json"))  # type: ignore[arg-type]
        for layer in manifest[0]["Layers"]:
            handle = image.extractfile(layer)
            assert handle is not None
            with tarfile.open(fileobj=handle, mode="r|") as members:
                names[layer.split("/")[0]] = [member.name for member in members]
    return names


# --- the archive and its manifest -----------------------------------------------------------------


def test_the_bundle_has_the_documented_layout(unpacked_bundle: Path) -> None:
    top = sorted(p.name for p in unpacked_bundle.iterdir())
    for expected in (
        layout.CHECKSUMS,
        layout.CHECKSUMS_SIG,
        layout.MANIFEST,
        layout.WHEELS_DIR,
        layout.IMAGES_DIR,
        layout.SBOM_DIR,
        layout.DOCS_DIR,
    ):
        assert expected in top
    assert (unpacked_bundle / layout.SERVER_IMAGE_FILE).is_file()
    assert (unpacked_bundle / layout.WHEELS_DIR / layout.WHEELS_LOCK).is_file()
    # The guides, and the admin guide's alerting rules where its link finds them.
    docs = unpacked_bundle / layout.DOCS_DIR
    assert (docs / "admin-guide.md").is_file() and (docs / "operator-guide.md").is_file()
    assert "](examples/appliance-alerts.yml)" in (docs / "admin-guide.md").read_text()
    assert (docs / "examples" / "appliance-alerts.yml").is_file()


def test_the_manifest_records_version_revision_time_target_and_images(
    unpacked_bundle: Path,
) -> None:
    manifest = manifest_of(unpacked_bundle)
    head = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.strip()
    assert manifest["format"] == layout.MANIFEST_FORMAT
    assert manifest["version"] == BUNDLE_VERSION
    assert manifest["min_upgrade_from"] == "0.1.0"
    assert manifest["build"]["revision"].removesuffix("-dirty") == head
    assert manifest["build"]["source_date_epoch"] == int(SOURCE_DATE_EPOCH)
    assert manifest["build"]["created"] == iso_time(int(SOURCE_DATE_EPOCH))
    assert manifest["image_base"] == {"os": "debian (bookworm)", "arch": "amd64", "python": "3.11"}
    [image] = manifest["images"]
    image_file = unpacked_bundle / image["file"]
    assert image["sha256"] == sha256_of(image_file)
    assert image["size"] == image_file.stat().st_size
    assert image["name"] == f"{layout.SERVER_IMAGE_NAME}:{BUNDLE_VERSION}"
    assert image["uncompressed_bytes"] == sum(layer["size"] for layer in image["layers"])


def test_signer_pub_is_the_signing_key(unpacked_bundle: Path, built_bundle: BuiltBundle) -> None:
    """signer.pub lets a first install trust the key by fingerprint (install.sh --trust-fingerprint)."""
    if shutil.which("ssh-keygen") is None:
        pytest.skip("needs OpenSSH's ssh-keygen (.ci/run installs openssh-client)")
    listed = subprocess.run(
        ["ssh-keygen", "-lf", str(unpacked_bundle / layout.SIGNER_KEY)],
        capture_output=True,
        text=True,
        check=True,
    )
    assert listed.stdout.split()[1] == built_bundle.fingerprint


def test_stock_sha256sum_and_ssh_keygen_accept_the_bundle(
    unpacked_bundle: Path, built_bundle: BuiltBundle
) -> None:
    if shutil.which("ssh-keygen") is None:
        pytest.skip("needs OpenSSH's ssh-keygen (.ci/run installs openssh-client)")
    sums = subprocess.run(
        ["sha256sum", "--strict", "-c", layout.CHECKSUMS],
        cwd=unpacked_bundle,
        capture_output=True,
        text=True,
        check=False,
    )
    assert sums.returncode == 0, sums.stdout + sums.stderr
    listed = [
        line.split("  ", 1)[1]
        for line in (unpacked_bundle / layout.CHECKSUMS).read_text().splitlines()
    ]
    on_disk = sorted(
        p.relative_to(unpacked_bundle).as_posix()
        for p in unpacked_bundle.rglob("*")
        if p.is_file() and p.name not in layout.UNLISTED_FILES
    )
    assert sorted(listed) == on_disk
    with (unpacked_bundle / layout.CHECKSUMS).open("rb") as message:
        verify = subprocess.run(
            [
                "ssh-keygen",
                "-Y",
                "verify",
                "-f",
                str(built_bundle.allowed_signers),
                "-I",
                built_bundle.principal,
                "-n",
                layout.SIGNATURE_NAMESPACE,
                "-s",
                str(unpacked_bundle / layout.CHECKSUMS_SIG),
            ],
            stdin=message,
            capture_output=True,
            text=True,
            check=False,
        )
    assert verify.returncode == 0, verify.stderr
    assert built_bundle.fingerprint in verify.stdout + verify.stderr


def test_appliance_verify_accepts_the_bundle_and_names_the_signer(
    built_bundle: BuiltBundle,
) -> None:
    result = run(
        "appliance",
        "verify",
        built_bundle.archive,
        "--signers",
        built_bundle.allowed_signers,
        "--json",
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["principal"] == built_bundle.principal
    assert report["fingerprint"] == built_bundle.fingerprint
    assert report["version"] == BUNDLE_VERSION


def test_the_build_prints_each_step_and_the_archive_digest(built_bundle: BuiltBundle) -> None:
    for step in (
        "lock",
        "wheels",
        "frontend",
        "rootfs",
        "image",
        "engine",
        "sbom",
        "manifest",
        "sign",
        "archive",
    ):
        assert f"] {step}" in built_bundle.build_output
    assert f"sha256   {sha256_of(built_bundle.archive)}" in built_bundle.build_output
    assert "engine: healthy after" in built_bundle.build_output


def test_a_second_build_is_byte_identical(tmp_path: Path, built_bundle: BuiltBundle) -> None:
    """Same sources, lock and SOURCE_DATE_EPOCH: same sha256 (image and archive are rebuilt)."""
    result = subprocess.run(
        build_command(BUNDLE_VERSION, built_bundle.key, tmp_path, "--skip-engine-check"),
        capture_output=True,
        text=True,
        env=build_env(),
        timeout=900,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "image: base layer" in result.stderr  # the image was made again, not copied
    again = tmp_path / layout.archive_name(BUNDLE_VERSION)
    assert sha256_of(again) == sha256_of(built_bundle.archive)


# --- the server image ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def loaded_image(unpacked_bundle: Path, built_bundle: BuiltBundle) -> str:
    """The image loaded with the podman CLI (as `podman load` on a node); returns its name."""
    loaded = podman("load", "-i", str(unpacked_bundle / layout.SERVER_IMAGE_FILE))
    assert "Loaded image" in loaded.stdout + loaded.stderr
    return f"{layout.SERVER_IMAGE_NAME}:{BUNDLE_VERSION}"


def test_podman_load_gives_the_image_id_the_manifest_names(
    loaded_image: str, unpacked_bundle: Path
) -> None:
    [entry] = manifest_of(unpacked_bundle)["images"]
    inspected = json.loads(podman("image", "inspect", loaded_image).stdout)[0]
    assert f"sha256:{inspected['Id']}" == entry["image_id"] or inspected["Id"] == entry["image_id"]


def test_the_docker_cli_loads_the_image(unpacked_bundle: Path, built_bundle: BuiltBundle) -> None:
    """`docker load`, the Docker CLI itself, against the engine's Docker-compatible API."""
    if shutil.which("docker") is None:
        pytest.skip("needs the docker CLI (this machine kind ships it; no Docker Engine is needed)")
    loaded = subprocess.run(
        [
            "docker",
            "-H",
            built_bundle.engine_url,
            "load",
            "-i",
            str(unpacked_bundle / layout.SERVER_IMAGE_FILE),
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert loaded.returncode == 0, loaded.stderr
    assert f"Loaded image: {layout.SERVER_IMAGE_NAME}:{BUNDLE_VERSION}" in loaded.stdout


def test_the_image_is_non_root_labelled_and_has_a_healthcheck(
    loaded_image: str, unpacked_bundle: Path
) -> None:
    inspected = json.loads(podman("image", "inspect", loaded_image).stdout)[0]
    config = inspected["Config"]
    assert config["User"] == f"{layout.IMAGE_USER_ID}:{layout.IMAGE_USER_ID}"
    labels = config["Labels"]
    revision = manifest_of(unpacked_bundle)["build"]["revision"]
    assert labels["org.opencontainers.image.title"] == "appliance-server"
    assert labels["org.opencontainers.image.version"] == BUNDLE_VERSION
    assert labels["org.opencontainers.image.revision"] == revision
    assert f"APPLIANCE_REVISION={revision}" in config["Env"]  # what /metrics' build_info shows
    assert labels["org.opencontainers.image.created"] == iso_time(int(SOURCE_DATE_EPOCH))
    assert labels["org.opencontainers.image.licenses"] == "Apache-2.0"
    # No base image: no base.name; the base rootfs tar is named under the project's own prefix.
    assert "org.opencontainers.image.base.name" not in labels
    base_rootfs = manifest_of(unpacked_bundle)["components"]["base_rootfs"]
    assert labels[image.BASE_ROOTFS_LABEL] == base_rootfs.removeprefix("rootfs ")
    project = {
        k.removeprefix(image.OCI_LABEL): v
        for k, v in labels.items()
        if k.removeprefix(image.OCI_LABEL) in image.PROJECT_LABELS
    }
    assert project == image.project_labels(REPO)
    healthcheck = (
        config.get("Healthcheck") or inspected["Healthcheck"]
    )  # Podman lifts it out of Config
    assert healthcheck["Test"] == ["CMD", layout.IMAGE_PYTHON, "-m", "appliance.healthcheck"]


def test_the_image_holds_only_what_the_server_needs(unpacked_bundle: Path) -> None:
    manifest = manifest_of(unpacked_bundle)
    [entry] = manifest["images"]
    assert entry["uncompressed_bytes"] <= IMAGE_GOAL_BYTES
    names = [name for layer in layer_names(unpacked_bundle).values() for name in layer]
    site = layout.IMAGE_SITE_PACKAGES
    assert not [n for n in names if n.endswith(".pyc")]
    for absent in ("pyarrow", "faker", "pip", "ansible", "ml_workstation", "setuptools", "rich"):
        assert not [n for n in names if n.startswith(f"{site}/{absent}/")], absent
    for absent in ("usr/bin/gcc", "usr/bin/apt", "usr/bin/dpkg", "usr/share/man", "usr/bin/perl"):
        assert not [n for n in names if n == absent or n.startswith(f"{absent}/")], absent
    dists = {
        normalise_name(n.split("/")[-2].split("-")[0])
        for n in names
        if n.endswith(".dist-info/METADATA")
    }
    assert dists == {*SERVER_DISTRIBUTIONS, "appliance"}
    assert not [
        n for n in names if "/usr/share/doc/" in f"/{n}" and not n.endswith(("/copyright", "/doc"))
    ]


def _exec(container: str, *command: str) -> subprocess.CompletedProcess[str]:
    return podman("exec", container, *command, check=False)


def test_the_image_serves_imported_data_read_only_with_no_network(
    tmp_path: Path, loaded_image: str, good_pack: Path, signer: Signer
) -> None:
    """The node's way to run it: read-only root, /tmp tmpfs, no capabilities, no network."""
    data = tmp_path / "data"
    import_into(data, good_pack, signer)
    subprocess.run(
        ["chown", "-R", f"{layout.IMAGE_USER_ID}:{layout.IMAGE_USER_ID}", str(data)], check=True
    )
    name = f"appliance-test-{tmp_path.name}"
    podman(
        "run",
        "-d",
        "--name",
        name,
        "--read-only",
        "--tmpfs",
        "/tmp:rw,size=128m,mode=1777",
        "--cap-drop",
        "ALL",
        "--security-opt",
        "no-new-privileges",
        "--network",
        "none",
        *ULIMITS,
        "-e",
        "APPLIANCE_WORKERS=1",
        "-v",
        f"{data}:{layout.IMAGE_DATA_DIR}",
        loaded_image,
    )
    try:
        deadline = time.monotonic() + READY_WITHIN_SECONDS
        ready = _exec(name, layout.IMAGE_PYTHON, "-m", "appliance.healthcheck", "/health/ready")
        while ready.returncode != 0 and time.monotonic() < deadline:
            time.sleep(0.5)
            ready = _exec(name, layout.IMAGE_PYTHON, "-m", "appliance.healthcheck", "/health/ready")
        assert ready.returncode == 0, podman("logs", name, check=False).stderr[-2000:]
        fetch = (
            "import json, urllib.request; "
            "print(json.load(urllib.request.urlopen('http://127.0.0.1:8080/api/v1/items?limit=5'))['items'][0]['item_id'])"
        )
        answer = _exec(name, layout.IMAGE_PYTHON, "-c", fetch)
        assert answer.returncode == 0, answer.stderr
        assert answer.stdout.strip()
        written = _exec(name, layout.IMAGE_PYTHON, "-c", "open('/usr/x', 'w')")
        assert "Read-only file system" in written.stderr
        whoami = _exec(name, layout.IMAGE_PYTHON, "-c", "import os; print(os.getuid())")
        assert whoami.stdout.strip() == str(layout.IMAGE_USER_ID)
    finally:
        podman("rm", "-f", name, check=False)


# --- the wheel cache -----------------------------------------------------------------------------


def test_the_wheel_cache_installs_the_cli_and_ansible_with_no_index(
    tmp_path: Path, unpacked_bundle: Path
) -> None:
    wheels = unpacked_bundle / layout.WHEELS_DIR
    for wheel in wheels.glob("*.whl"):
        tags = wheel.name.removesuffix(".whl").split("-")[-3:]
        assert tags[0] in ("py3", "cp311", "cp312", "cp313", "py2.py3"), wheel.name
        assert tags[2] == "any" or "manylinux" in tags[2], wheel.name
    # Every pinned distribution has a wheel for each target's CPython (what install.sh relies on).
    for target in layout.NODE_TARGETS:
        major, minor = map(int, target.python.split("."))
        platforms = target_platforms()
        runs = set(cpython_tags((major, minor), platforms=platforms)) | set(
            compatible_tags((major, minor), platforms=platforms)
        )
        for pin in read_lock(wheels / layout.WHEELS_LOCK):
            files = [
                w for w in wheels.glob("*.whl") if normalise_name(w.name.split("-")[0]) == pin.key
            ]
            assert any(set(parse_wheel_filename(w.name)[3]) & runs for w in files), (
                f"no wheel of {pin.key} for CPython {target.python}"
            )
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    python = env_dir / "bin" / "python"
    install = subprocess.run(
        [
            str(python),
            "-m",
            "pip",
            "install",
            "--no-index",
            "--find-links",
            str(wheels),
            "--require-hashes",
            "-r",
            str(wheels / layout.WHEELS_LOCK),
            "--disable-pip-version-check",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert install.returncode == 0, install.stderr[-2000:]
    cli = subprocess.run(
        [str(env_dir / "bin" / "appliance"), "--version"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert cli.returncode == 0 and "appliance" in cli.stdout
    ansible = subprocess.run(
        [str(env_dir / "bin" / "ansible-playbook"), "--version"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert ansible.returncode == 0 and "core 2.19" in ansible.stdout
    pinned = {pin.key for pin in read_lock(wheels / layout.WHEELS_LOCK)}
    assert {"ansible-core", "appliance"} <= pinned
    assert "pyarrow" not in pinned  # the workstation's, not the node's
    [project_wheel] = wheels.glob("appliance-*.whl")
    with zipfile.ZipFile(project_wheel) as archive:
        packages = {name.split("/")[0] for name in archive.namelist()}
    shipped = {package for package in packages if not package.endswith(".dist-info")}
    assert shipped == set(layout.NODE_PACKAGES)  # appliance and server: no bundle/, the builder


def test_the_bootstrap_lock_sets_up_ansible_with_pip_from_its_wheel(
    tmp_path: Path, unpacked_bundle: Path
) -> None:
    """What install.sh does before anything on the node changes: no venv, no pip installed."""
    wheels = unpacked_bundle / layout.WHEELS_DIR
    [pip_wheel] = wheels.glob("pip-*-py3-none-any.whl")
    target = tmp_path / "ansible"
    install = subprocess.run(
        [sys.executable, f"{pip_wheel}/pip", "install", "--quiet", "--no-index",
         "--disable-pip-version-check", "--find-links", str(wheels), "--require-hashes",
         "--target", str(target), "-r", str(wheels / layout.BOOTSTRAP_LOCK)],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert install.returncode == 0, install.stderr[-2000:]
    installed = {p.name.split("-")[0] for p in target.glob("*.dist-info")}
    assert "ansible_core" in installed and "duckdb" not in installed  # Ansible's needs only
    version = subprocess.run(
        [sys.executable, "-c", "import sys; sys.path.insert(0, sys.argv.pop(1)); "
         "from ansible.cli.playbook import main; sys.argv[0] = 'ansible-playbook'; sys.exit(main())",
         str(target), "--version"],
        capture_output=True, text=True, check=False, env={**os.environ, "PYTHONPATH": ""},
    )  # fmt: skip
    assert version.returncode == 0 and "core 2.19" in version.stdout, version.stderr[-2000:]


# --- SBOMs ----------------------------------------------------------------------------------------


def sboms_of(unpacked: Path) -> dict[str, dict[str, Any]]:
    """Every SBOM of the bundle, by its path in the bundle."""
    folder = unpacked / layout.SBOM_DIR
    return {
        f"{layout.SBOM_DIR}/{p.name}": json.loads(p.read_text()) for p in folder.glob("*.cdx.json")
    }


def test_every_sbom_passes_the_official_cyclonedx_schema(unpacked_bundle: Path) -> None:
    sboms = sboms_of(unpacked_bundle)
    debs = [layout.debs_sbom(t) for t in layout.NODE_TARGETS]
    assert sorted(sboms) == sorted([layout.SBOM_WHEELS, layout.SBOM_SERVER_IMAGE, *debs])
    for name, doc in sboms.items():
        assert (doc["bomFormat"], doc["specVersion"]) == ("CycloneDX", "1.6"), name
        assert doc["$schema"] == "http://cyclonedx.org/schema/bom-1.6.schema.json", name
        assert schema_errors(doc) == [], name
        assert graph_errors(doc) == [], name


def test_the_wheel_sbom_lists_every_wheel_with_its_hash_and_file(unpacked_bundle: Path) -> None:
    sbom = json.loads((unpacked_bundle / layout.SBOM_WHEELS).read_text())
    wheels = list((unpacked_bundle / layout.WHEELS_DIR).glob("*.whl"))
    assert len(sbom["components"]) == len(wheels)
    hashes = {c["hashes"][0]["content"] for c in sbom["components"]}
    assert hashes == {sha256_of(w) for w in wheels}
    assert all(c["purl"].startswith("pkg:pypi/") for c in sbom["components"])
    files = {c["purl"].split("?file_name=")[1] for c in sbom["components"]}
    assert files == {w.name for w in wheels}


def test_the_sboms_licences_are_spdx_ids_expressions_or_names(unpacked_bundle: Path) -> None:
    sbom = json.loads((unpacked_bundle / layout.SBOM_WHEELS).read_text())
    licences = {c["name"]: c.get("licenses", []) for c in sbom["components"]}
    assert licences["appliance"] == [
        {"license": {"id": "Apache-2.0", "acknowledgement": "declared"}}
    ]
    assert licences["cryptography"] == [
        {"expression": "Apache-2.0 OR BSD-3-Clause", "acknowledgement": "declared"}
    ]
    names = [
        e["license"]["name"]
        for found in licences.values()
        for e in found
        if "name" in e.get("license", {})
    ]
    assert not [n for n in names if " OR " in n or " AND " in n]  # an expression never as a name


def test_the_image_sbom_lists_debian_and_python_packages(unpacked_bundle: Path) -> None:
    sbom = json.loads((unpacked_bundle / layout.SBOM_SERVER_IMAGE).read_text())
    [entry] = manifest_of(unpacked_bundle)["images"]
    subject = sbom["metadata"]["component"]
    assert subject["type"] == "container"
    assert f"sha256:{subject['hashes'][0]['content']}" == entry["image_id"]
    purls = {c["purl"].split("@")[0] for c in sbom["components"]}
    for package in ("libc6", "libpython3.11-stdlib", "python3.11-minimal", "libstdc%2B%2B6"):
        assert f"pkg:deb/debian/{package}" in purls
    for dist in ("litestar", "granian", "duckdb"):
        assert f"pkg:pypi/{dist}" in purls
    assert not [p for p in purls if "pyarrow" in p or "torch" in p]
    rootfs_digest = manifest_of(unpacked_bundle)["components"]["base_rootfs"].removeprefix(
        "rootfs "
    )
    assert {"name": "appliance:base-rootfs", "value": rootfs_digest} in subject["properties"]


def test_the_image_sbom_graph_follows_the_server_s_requirements(unpacked_bundle: Path) -> None:
    sbom = json.loads((unpacked_bundle / layout.SBOM_SERVER_IMAGE).read_text())
    ref = {c["name"].lower(): c["bom-ref"] for c in sbom["components"]}
    edges = {d["ref"]: set(d.get("dependsOn", [])) for d in sbom["dependencies"]}
    assert ref["appliance"] in edges[sbom["metadata"]["component"]["bom-ref"]]
    assert {ref["litestar"], ref["duckdb"], ref["granian"]} <= edges[ref["appliance"]]
    assert ref["cffi"] in edges[ref["cryptography"]]
    # The base's Debian packages, from each .deb's Pre-Depends and Depends (mmdebstrap's listing).
    assert {ref["libc6"], ref["libpython3.11-minimal"]} <= edges[ref["python3.11-minimal"]]
    stdlib_needs = {
        ref["libpython3.11-minimal"],
        ref["media-types"],
    }  # "media-types | mime-support"
    assert stdlib_needs <= edges[ref["libpython3.11-stdlib"]]
    debian = [c["bom-ref"] for c in sbom["components"] if c["purl"].startswith("pkg:deb/")]
    assert all(r in edges for r in debian)  # every relation known: the rootfs was listed whole


# --- bad input to build_bundle.py -----------------------------------------------------------------


def _build(
    tmp_path: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(REPO / "build_bundle.py"), *args],
        capture_output=True,
        text=True,
        env=env or build_env(),
        timeout=600,
        check=False,
        cwd=tmp_path,
    )


@pytest.mark.parametrize(
    ("args", "env_extra", "message"),
    [
        (["--version", "../1"], {}, "--version '../1' must match"),
        (["--version", ""], {}, "must match"),
        (["--version", "1.0", "--targets", "debian11"], {}, "choose from debian12, debian13"),
        (["--version", "1.0", "--min-upgrade-from", "a b"], {}, "is not a version"),
        (["--version", "1.0"], {"SOURCE_DATE_EPOCH": "yesterday"}, "not a whole number"),
        (["--version", "1.0"], {"SOURCE_DATE_EPOCH": "1"}, "before 1980"),
    ],
)
def test_bad_flags_are_one_line_errors_and_leave_nothing(
    tmp_path: Path,
    release_key: tuple[Path, Path, str, str],
    args: list[str],
    env_extra: dict[str, str],
    message: str,
) -> None:
    out = tmp_path / "out"
    result = _build(
        tmp_path,
        *args,
        "--key",
        str(release_key[0]),
        "--out",
        str(out),
        env={**build_env(), **env_extra},
    )
    assert result.returncode == 2, result.stderr
    [line] = result.stderr.strip().splitlines()[-1:]
    assert line.startswith("error: ") and message in line
    assert not out.exists() or not list(out.iterdir())


def test_a_missing_or_broken_key_is_refused(tmp_path: Path) -> None:
    broken = tmp_path / "broken.key"
    broken.write_text("-----BEGIN OPENSSH PRIVATE KEY-----\nnot a key\n")
    for key in (tmp_path / "absent.key", broken):
        out = tmp_path / f"out-{key.stem}"
        result = _build(tmp_path, "--version", "1.0", "--key", str(key), "--out", str(out))
        assert result.returncode == 2, result.stderr
        assert result.stderr.strip().splitlines()[-1].startswith("error: ")
        assert not out.exists() or not list(out.iterdir())


def test_a_broken_base_rootfs_stops_the_build_with_nothing_written(
    tmp_path: Path, release_key: tuple[Path, Path, str, str]
) -> None:
    out = tmp_path / "out"
    not_a_tar = tmp_path / "rootfs.tar"
    not_a_tar.write_bytes(b"\x00garbage" * 100)
    for base in (tmp_path / "absent.tar", not_a_tar):
        result = _build(
            tmp_path,
            "--version",
            "1.0",
            "--key",
            str(release_key[0]),
            "--out",
            str(out),
            "--base-rootfs",
            str(base),
            "--skip-engine-check",
        )
        assert result.returncode == 2, result.stderr
        assert "error: " in result.stderr.strip().splitlines()[-1]
        assert "rootfs" in result.stderr.strip().splitlines()[-1]
        assert not out.exists() or not list(out.iterdir())


def test_no_engine_stops_the_build_before_an_archive_exists(
    tmp_path: Path, release_key: tuple[Path, Path, str, str]
) -> None:
    out = tmp_path / "out"
    env = build_env(f"unix://{tmp_path}/no-such.sock")
    result = _build(
        tmp_path, "--version", "1.0", "--key", str(release_key[0]), "--out", str(out), env=env
    )
    assert result.returncode == 2, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and "engine" in last
    assert list(out.iterdir()) == []


def test_a_given_base_rootfs_is_used_and_recorded(
    tmp_path: Path, release_key: tuple[Path, Path, str, str], built_bundle: BuiltBundle
) -> None:
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "appliance-bundle"
    cached = rootfs.cache_folder(cache) / "rootfs.tar"
    assert cached.is_file(), f"the session's build left no base rootfs in {cache}"
    given = tmp_path / "base.tar"
    shutil.copy(cached, given)
    shutil.copy(
        cached.with_name(rootfs.PACKAGES_FILE), tmp_path / f"base.tar.{rootfs.PACKAGES_FILE}"
    )
    with tarfile.open(built_bundle.archive) as bundle:
        member = bundle.extractfile(f"{layout.top_dir(BUNDLE_VERSION)}/{layout.MANIFEST}")
        assert member is not None
        built_origin = json.load(member)["components"]["base_rootfs"]
    out = tmp_path / "out"
    result = _build(
        tmp_path,
        "--version",
        "1.0.1",
        "--key",
        str(release_key[0]),
        "--out",
        str(out),
        "--base-rootfs",
        str(given),
        "--skip-engine-check",
    )
    assert result.returncode == 0, result.stderr[-2000:]
    with tarfile.open(out / layout.archive_name("1.0.1")) as bundle:
        member = bundle.extractfile(f"{layout.top_dir('1.0.1')}/{layout.MANIFEST}")
        assert member is not None
        manifest = json.load(member)
    # Named by content: the same tar gives the same label however it came, so rebuilds match.
    assert manifest["components"]["base_rootfs"] == f"rootfs sha256:{sha256_of(given)}"
    assert built_origin == manifest["components"]["base_rootfs"]
    assert manifest["components"]["debian_packages"] > 10


# --- install.sh: what it refuses before touching anything (the rest runs on a simulated node: tests/e2e)

WRONG_FINGERPRINT = "SHA256:" + "A" * 43  # well formed, no key's


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["--bogus"], 2, "unknown option --bogus"),
        (["--backup"], 2, "--backup needs a folder"),
        (["--signers"], 2, "--signers needs a file"),
        (["--purge"], 2, "--purge goes with --uninstall only"),
        (["--signers", "/nonexistent/allowed_signers"], 2, "no such file"),
        (["--backup", "/nonexistent"], 2, "no such folder"),
        (["--signers", "{bundle}/signer.pub"], 2, "is inside the bundle"),
        (["--trust-fingerprint", WRONG_FINGERPRINT], 3, f"not {WRONG_FINGERPRINT}: not trusted"),
    ],
)
def test_install_sh_refuses_bad_flags_with_one_line(
    unpacked_bundle: Path, args: list[str], code: int, message: str
) -> None:
    argv = [arg.format(bundle=unpacked_bundle) for arg in args]
    result = subprocess.run(
        ["bash", str(unpacked_bundle / layout.INSTALL_SCRIPT), *argv],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == code, result.stderr
    [line] = result.stderr.strip().splitlines()[-1:]
    assert line.startswith("install.sh: error: ") and message in line, line


def test_install_sh_help_names_every_action(unpacked_bundle: Path) -> None:
    result = subprocess.run(
        ["bash", str(unpacked_bundle / layout.INSTALL_SCRIPT), "--help"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0
    for flag in (
        "--upgrade",
        "--rollback",
        "--uninstall",
        "--backup",
        "--restore",
        "--signers",
        "--trust-fingerprint",
        "--check",
    ):
        assert flag in result.stdout


# --- install.sh on small signed trees: broken bundles and flags, refused in one line ----------------
# A tree with just the files install.sh reads before its playbook, signed by the test's release key:
# fast enough to try many kinds of damage; nothing here gets as far as building a venv.

TREE_VERSION = "1.0.0"
# Both targets: the machine running the tests (Debian 12, Python 3.11) is one of them.
TREE_TARGETS = [
    {"name": t.name, "os_version_id": t.os_version_id, "python": t.python}
    for t in layout.NODE_TARGETS
]
TREE_FILES = {
    layout.MANIFEST: json.dumps({"version": TREE_VERSION, "targets": TREE_TARGETS}).encode(),
    f"{layout.WHEELS_DIR}/{layout.WHEELS_LOCK}": b"",
    f"{layout.ANSIBLE_DIR}/ansible.cfg": b"[defaults]\n",
    f"{layout.ANSIBLE_DIR}/install.yml": b"- hosts: all\n  tasks: []\n",
}


def signed_tree(
    folder: Path,
    key: Path,
    *,
    replace: dict[str, bytes] | None = None,
    leave_out: str | None = None,
) -> Path:
    """appliance-1.0.0/ with install.sh, signer.pub and TREE_FILES (changed by `replace`, less
    `leave_out`), signed by `key`."""
    root = folder / layout.top_dir(TREE_VERSION)
    public = key.with_name(f"{key.name}.pub").read_bytes()
    files = {**TREE_FILES, layout.SIGNER_KEY: public, **(replace or {})}
    files.pop(leave_out or "", None)
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    shutil.copy(REPO / layout.INSTALL_SCRIPT, root / layout.INSTALL_SCRIPT)
    # As `sudo tar -xf` leaves it whatever the umask: install.sh refuses group-writable files.
    for path in [root, *root.rglob("*")]:
        path.chmod(0o755 if path.is_dir() or path.name == layout.INSTALL_SCRIPT else 0o644)
    sums = checksums.write_checksums(root)
    (root / layout.CHECKSUMS).write_bytes(sums)
    (root / layout.CHECKSUMS_SIG).write_bytes(sign.sign_checksums(sums, key))
    return root


def run_install_sh(
    tree: Path, tmp_path: Path, *args: str | Path, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """install.sh as root, with its node folders under tmp_path (never /opt or /etc)."""
    if os.geteuid() != 0:
        pytest.skip("install.sh runs as root only")
    if shutil.which("ssh-keygen") is None:
        pytest.skip("needs OpenSSH's ssh-keygen (.ci/run installs openssh-client)")
    env = {
        **os.environ,
        "APPLIANCE_ROOT": str(tmp_path / "opt"),
        "APPLIANCE_CONFIG_DIR": str(tmp_path / "etc"),
    }
    return subprocess.run(
        ["bash", str(tree / layout.INSTALL_SCRIPT), *map(str, args)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
        env=env,
        cwd=cwd,
    )


def assert_one_error_line(result: subprocess.CompletedProcess[str], code: int, *words: str) -> None:
    assert result.returncode == code, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    errors = [line for line in result.stderr.splitlines() if "error" in line.lower()]
    assert len(errors) == 1, result.stderr
    assert errors[0] == result.stderr.strip().splitlines()[-1]
    assert errors[0].startswith("install.sh: error: "), errors[0]
    for word in words:
        assert word in errors[0], errors[0]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--signers", "{folder}"], "is a folder, not a file"),
        (["--pack-signers", "{folder}"], "is a folder, not a file"),
        (["--restore", "{folder}"], "is a folder, not a file"),
        (["--backup", "{file}"], "is a file, not a folder"),
        (["--signers", ""], "--signers needs a file"),
        (["--backup", ""], "--backup needs a folder"),
        (["--trust-fingerprint", "SHA256:short"], "is not a key fingerprint"),
        (["--trust-fingerprint", "ab:cd:ef"], "is not a key fingerprint"),
        (["-e", "appliance_port"], "not KEY=VALUE, JSON or @FILE"),
        (["-e", "@{folder}/absent.yml"], "no such file"),
        (["--rollback", "--uninstall"], "choose one action"),
        (["--backup", "{folder}", "--restore", "{file}"], "choose one action"),
    ],
)
def test_install_sh_refuses_bad_flag_values_in_one_line(
    tmp_path: Path, release_key: tuple[Path, Path, str, str], args: list[str], message: str
) -> None:
    tree = signed_tree(tmp_path / "stick", release_key[0])
    (tmp_path / "a-folder").mkdir()
    (tmp_path / "a-file").write_text("")
    argv = [a.format(folder=tmp_path / "a-folder", file=tmp_path / "a-file") for a in args]
    assert_one_error_line(run_install_sh(tree, tmp_path, *argv), 2, message)


def test_an_extra_vars_file_is_resolved_before_install_sh_enters_the_bundle(
    tmp_path: Path, release_key: tuple[Path, Path, str, str]
) -> None:
    """-e @vars.yml names the operator's file from where they stand, not from the bundle."""
    tree = signed_tree(tmp_path / "stick", release_key[0])
    (tmp_path / "vars.yml").write_text("appliance_port: 8081\n")
    result = run_install_sh(
        tree, tmp_path, "-e", "@vars.yml", "--trust-fingerprint", WRONG_FINGERPRINT, cwd=tmp_path
    )
    # Past the flags (the file was found), refused later for the fingerprint, as it should be.
    assert_one_error_line(result, 3, "not trusted")


@pytest.mark.parametrize(
    "missing",
    [
        f"{layout.WHEELS_DIR}/{layout.WHEELS_LOCK}",
        f"{layout.ANSIBLE_DIR}/ansible.cfg",
        f"{layout.ANSIBLE_DIR}/install.yml",
    ],
)
def test_install_sh_refuses_a_signed_bundle_without_a_file_it_needs(
    tmp_path: Path, release_key: tuple[Path, Path, str, str], missing: str
) -> None:
    """Signed without the file (so no checksum can miss it): refused before anything is built."""
    tree = signed_tree(tmp_path / "stick", release_key[0], leave_out=missing)
    result = run_install_sh(tree, tmp_path, "--signers", release_key[1])
    assert_one_error_line(result, 3, f"{missing} is missing: not a whole bundle")
    assert not (tmp_path / "opt").exists()


def test_install_sh_refuses_a_bundle_with_a_listed_file_removed(
    tmp_path: Path, release_key: tuple[Path, Path, str, str]
) -> None:
    tree = signed_tree(tmp_path / "stick", release_key[0])
    (tree / layout.ANSIBLE_DIR / "ansible.cfg").unlink()
    result = run_install_sh(tree, tmp_path, "--signers", release_key[1])
    assert_one_error_line(result, 3, "ansible/ansible.cfg is missing")


def test_install_sh_refuses_installed_trust_that_is_a_folder(
    tmp_path: Path, release_key: tuple[Path, Path, str, str]
) -> None:
    tree = signed_tree(tmp_path / "stick", release_key[0])
    (tmp_path / "etc" / "bundle_signers").mkdir(parents=True)
    result = run_install_sh(tree, tmp_path)
    assert_one_error_line(result, 2, "bundle_signers is not a readable file", "--signers FILE")


@pytest.mark.parametrize(
    ("manifest", "message"),
    [
        (b"{", "manifest.json is not readable JSON"),
        (b"\xff\xfe not text", "manifest.json is not readable JSON"),
        (b"[" * 100_000 + b"]" * 100_000, "manifest.json is not readable JSON"),
        (b"[]", "manifest.json has no version string"),
        (b"{}", "manifest.json has no version string"),
        (b'{"version": 1}', "manifest.json has no version string"),
        (
            json.dumps({"version": "../x", "targets": TREE_TARGETS}).encode(),
            "version '../x' is not a version",
        ),
        (b'{"version": "9.9.9", "version": "1.0.0"}', "duplicate key 'version'"),
        (b'{"version": "1.0.0"}', "manifest.json lists no node targets"),
        (b'{"version": "1.0.0", "targets": {}}', "manifest.json lists no node targets"),
        (
            b'{"version": "1.0.0", "targets": [1]}',
            "a target without name, os_version_id and python",
        ),
        (
            b'{"version": "1.0.0", "targets": [{"name": "x; rm -rf /", "os_version_id": "12", "python": "3.11"}]}',
            "a target without name, os_version_id and python",
        ),
    ],
)
def test_install_sh_reads_a_bad_signed_manifest_in_one_line(
    tmp_path: Path, release_key: tuple[Path, Path, str, str], manifest: bytes, message: str
) -> None:
    """Signed, so it passes every checksum: the manifest's reader itself must say no in one line."""
    tree = signed_tree(tmp_path / "stick", release_key[0], replace={layout.MANIFEST: manifest})
    result = run_install_sh(tree, tmp_path, "--signers", release_key[1])
    assert_one_error_line(result, 3, message)
    assert not (tmp_path / "opt").exists()


def _node() -> tuple[str, str]:
    """(VERSION_ID, python3's major.minor) of the machine the tests run on, as install.sh sees them."""
    release = ""
    for line in Path("/etc/os-release").read_text().splitlines():
        if line.startswith("VERSION_ID="):
            release = line.split("=", 1)[1].strip('"')
    python = subprocess.run(
        ["python3", "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    return release, python


def _tree_for(folder: Path, key: Path, targets: list[dict[str, str]]) -> Path:
    manifest = json.dumps({"version": TREE_VERSION, "targets": targets}).encode()
    return signed_tree(folder, key, replace={layout.MANIFEST: manifest})


def test_install_sh_refuses_a_python_no_target_has_and_names_the_supported_releases(
    tmp_path: Path, release_key: tuple[Path, Path, str, str]
) -> None:
    release, python = _node()
    other = "3.99"
    targets = [{"name": "debian12", "os_version_id": release, "python": other},
               {"name": "debian13", "os_version_id": "13", "python": "3.98"}]  # fmt: skip
    tree = _tree_for(tmp_path / "stick", release_key[0], targets)
    result = run_install_sh(tree, tmp_path, "--signers", release_key[1])
    assert_one_error_line(
        result,
        2,
        f"python3 here is Python {python}; this bundle supports",
        f"Debian 12 (Python {other}) and Debian 13 (Python 3.98)",
    )
    assert not (tmp_path / "opt").exists() and not (tmp_path / "etc").exists()


def test_install_sh_refuses_a_release_no_target_has(
    tmp_path: Path, release_key: tuple[Path, Path, str, str]
) -> None:
    _, python = _node()
    targets = [{"name": "debian99", "os_version_id": "99", "python": python}]
    tree = _tree_for(tmp_path / "stick", release_key[0], targets)
    result = run_install_sh(tree, tmp_path, "--signers", release_key[1])
    assert_one_error_line(
        result, 2, "this node is ", f"this bundle supports Debian 99 (Python {python})"
    )


def test_install_sh_refuses_a_bundle_without_its_bootstrap_wheels(
    tmp_path: Path, release_key: tuple[Path, Path, str, str]
) -> None:
    """Past the node checks on this machine (a target), then refused: no pip wheel to set up Ansible."""
    tree = signed_tree(tmp_path / "stick", release_key[0])
    result = run_install_sh(tree, tmp_path, "--signers", release_key[1])
    assert_one_error_line(
        result, 3, "wheels/ has no pip wheel or bootstrap.lock: not a whole bundle"
    )
    assert "(target debian12)" in result.stderr


def test_install_sh_refuses_check_mode_before_anything_is_installed(
    tmp_path: Path, release_key: tuple[Path, Path, str, str]
) -> None:
    tree = signed_tree(tmp_path / "stick", release_key[0])
    result = run_install_sh(tree, tmp_path, "--signers", release_key[1], "--check")
    assert_one_error_line(result, 2, "--check compares with what is installed, and nothing is")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--engine", "lxc"], "--engine lxc: choose podman or docker"),
        (["--engine", ""], "--engine needs podman or docker"),
        (["--change-engine"], "--change-engine needs --engine"),
        (["--uninstall", "--engine", "docker"], "--engine goes with an install or upgrade only"),
    ],
)
def test_install_sh_refuses_bad_engine_flags(
    tmp_path: Path, release_key: tuple[Path, Path, str, str], args: list[str], message: str
) -> None:
    tree = signed_tree(tmp_path / "stick", release_key[0])
    assert_one_error_line(run_install_sh(tree, tmp_path, *args), 2, message)
