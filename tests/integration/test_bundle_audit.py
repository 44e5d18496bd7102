"""The bundle audit (appliance/audit/bundle_audit.py, `appliance audit BUNDLE`) on small synthetic bundles.

Each bundle holds a real docker-archive image written by bundle/oci.py: a base, a deps and an app
layer, the app layer carrying a tiny stand-in server app (its `create_app` lists fixed routes, so
route checking runs for real without Litestar). A clean bundle passes; each bad one, named for
what is wrong with it, fails with exit 1 and the finding that says so; broken or hostile input
fails with one `error:` line. Last, the bundle build_bundle.py makes (the session's
`built_bundle`) passes.
"""

from __future__ import annotations

import gzip
import io
import json
import random
import subprocess
import tarfile
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from appliance.audit.bundle_audit import BundleAudit, audit_bundle
from appliance.errors import BundleRejected
from bundle import layout, oci
from bundle.archive import write_archive
from bundle.checksums import write_checksums
from tests.conftest import run
from tests.integration.conftest import BuiltBundle
from tests.integration.test_cli import one_error_line

VERSION = "1.4.0"
EPOCH = 1_780_000_000
SITE = layout.IMAGE_SITE_PACKAGES
IMAGE = layout.SERVER_IMAGE_FILE
TAG = f"{layout.SERVER_IMAGE_NAME}:{VERSION}"
PROJECT_WHEEL = f"appliance-{VERSION}-py3-none-any.whl"
CLEAN_ROUTES = ["/api/v1/forecasts/summary", "/api/v1/items", "/health"]
LOCK = """\
appliance==1.4.0 \\
    --hash=sha256:0000000000000000000000000000000000000000000000000000000000000000
litestar==2.25.0 \\
    --hash=sha256:1111111111111111111111111111111111111111111111111111111111111111
"""
BIG_FILE_BYTES = 300_000


def metadata(name: str, version: str) -> bytes:
    return f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n\nA description.\n".encode()


def server_app(routes: list[str]) -> bytes:
    """A stand-in server/app.py: create_app returns an object whose routes have these paths."""
    return (
        "from types import SimpleNamespace\n\n"
        f"ROUTES = {routes!r}\n\n\n"
        "def create_app(settings):\n"
        "    return SimpleNamespace(routes=[SimpleNamespace(path=p) for p in ROUTES])\n"
    ).encode()


def clean_layers(routes: list[str] = CLEAN_ROUTES) -> list[list[oci.Entry]]:
    """base, deps and app layers of an image that keeps every rule."""
    base = [
        oci.file("etc/passwd", b"root:x:0:0:root:/root:/usr/sbin/nologin\n"),
        oci.file("usr/bin/python3.11", random.Random(1).randbytes(BIG_FILE_BYTES), 0o755),
        oci.file("usr/lib/x86_64-linux-gnu/libc.so.6", random.Random(2).randbytes(50_000)),
        oci.directory("tmp", 0o1777),
    ]
    deps = [
        oci.file(f"{SITE}/litestar/__init__.py", b"__version__ = '2.25.0'\n"),
        oci.file(f"{SITE}/litestar-2.25.0.dist-info/METADATA", metadata("litestar", "2.25.0")),
        oci.file(f"{SITE}/litestar-2.25.0.dist-info/RECORD", b""),
        oci.file(f"{SITE}/PyYAML-6.0.3.dist-info/METADATA", metadata("PyYAML", "6.0.3")),
    ]
    app = [
        oci.file(f"{SITE}/appliance/__init__.py", b'__version__ = "1.4.0"\n'),
        oci.file(
            f"{SITE}/appliance/settings.py", b"def load_server_settings(env):\n    return env\n"
        ),
        oci.file(f"{SITE}/appliance/cli.py", b"import json  # not torch\nLIBRARY = 'torch'\n"),
        oci.file(f"{SITE}/appliance-1.4.0.dist-info/METADATA", metadata("appliance", "1.4.0")),
        oci.file(f"{SITE}/server/__init__.py", b""),
        oci.file(f"{SITE}/server/app.py", server_app(routes)),
    ]
    return [base, deps, app]


def write_image(out: Path, layers: list[list[oci.Entry]], scratch: Path) -> oci.ImageArchive:
    """A docker-archive of `layers`; the layer tars are written to `scratch`, outside the bundle."""
    scratch.mkdir(parents=True, exist_ok=True)
    written = [
        oci.write_layer(entries, scratch / f"layer{index}.tar", EPOCH)
        for index, entries in enumerate(layers)
    ]
    out.parent.mkdir(parents=True, exist_ok=True)
    config = {"architecture": "amd64", "os": "linux", "config": {}}
    return oci.write_image_archive(out, written, config, TAG, EPOCH)


def write_wheel(out: Path, files: dict[str, bytes]) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(out, "w") as wheel:
        for name, data in files.items():
            wheel.writestr(name, data)


def make_tree(
    parent: Path,
    layers: list[list[oci.Entry]] | None = None,
    wheels: dict[str, dict[str, bytes]] | None = None,
    lock: str = LOCK,
) -> Path:
    """A bundle folder: the image, a wheel cache with the project wheel and a lock, a manifest."""
    root = parent / layout.top_dir(VERSION)
    image = write_image(root / IMAGE, layers or clean_layers(), parent / "scratch")
    cache = {
        PROJECT_WHEEL: {
            "appliance/__init__.py": b"",
            "appliance/cli.py": b"import json\n",
            f"appliance-{VERSION}.dist-info/METADATA": metadata("appliance", VERSION),
        },
        "litestar-2.25.0-py3-none-any.whl": {"litestar/__init__.py": b""},
    } | (wheels or {})
    for name, files in cache.items():
        write_wheel(root / layout.WHEELS_DIR / name, files)
    (root / layout.WHEELS_DIR / layout.WHEELS_LOCK).write_text(lock)
    manifest = {
        "format": layout.MANIFEST_FORMAT,
        "format_version": layout.MANIFEST_VERSION,
        "version": VERSION,
        "min_upgrade_from": "1.2.0",
        "images": [{"file": IMAGE, "sha256": image.sha256, "size": image.size}],
    }
    (root / layout.MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    (root / layout.CHECKSUMS).write_bytes(write_checksums(root))
    return root


def archive(root: Path) -> Path:
    out = root.parent / layout.archive_name(VERSION)
    write_archive(root, out, EPOCH)
    return out


def with_layer_entries(layer: int, *entries: oci.Entry) -> list[list[oci.Entry]]:
    """The clean layers with `entries` added to layer `layer` (0 base, 1 deps, 2 app)."""
    layers = clean_layers()
    layers[layer] = [*layers[layer], *entries]
    return layers


def audit_json(
    bundle: Path, tmp_path: Path, *args: str
) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    report = tmp_path / "audit.json"
    done = run("appliance", "audit", bundle, "--json", report, *args)
    return done, json.loads(report.read_text()) if report.exists() else {}


def kinds_and_wheres(audit: BundleAudit) -> set[tuple[str, str]]:
    return {(finding.kind, finding.where) for finding in audit.findings}


@pytest.fixture
def clean_bundle(tmp_path: Path) -> Path:
    return archive(make_tree(tmp_path / "build"))


# --- a clean bundle ---------------------------------------------------------------------------


def test_clean_bundle_passes_with_sizes_layers_distributions_and_routes(
    clean_bundle: Path, tmp_path: Path
) -> None:
    done, report = audit_json(clean_bundle, tmp_path)
    assert done.returncode == 0, done.stderr
    assert "findings  none" in done.stdout
    assert report["ok"] is True and report["findings"] == []
    assert report["version"] == VERSION
    assert report["max_image_bytes"] == 600_000_000
    (image,) = report["images"]
    with tarfile.open(clean_bundle) as outer:
        member = outer.getmember(f"{layout.top_dir(VERSION)}/{IMAGE}")
        image_bytes = outer.extractfile(member).read()  # type: ignore[union-attr]
    with tarfile.open(fileobj=io.BytesIO(image_bytes)) as inner:
        layer_tars = [
            inner.extractfile(m).read()  # type: ignore[union-attr]
            for m in inner.getmembers()
            if m.name.endswith("/layer.tar")
        ]
    layer_sizes = [len(data) for data in layer_tars]
    assert image["file"] == IMAGE and image["name"] == TAG
    assert image["file_bytes"] == len(image_bytes)
    assert image["uncompressed_bytes"] == sum(layer_sizes)
    gzipped = [len(gzip.compress(data, compresslevel=6, mtime=0)) for data in layer_tars]
    assert [layer["compressed_bytes"] for layer in image["layers"]] == gzipped
    assert image["compressed_bytes"] == sum(gzipped) < image["uncompressed_bytes"]
    assert [layer["size"] for layer in image["layers"]] == layer_sizes
    assert [layer["files"] for layer in image["layers"]] == [3, 4, 6]
    assert all(layer["diff_id"].startswith("sha256:") for layer in image["layers"])
    largest = image["largest_files"][0]
    assert (largest["path"], largest["size"]) == ("usr/bin/python3.11", BIG_FILE_BYTES)
    assert largest["layer"] == image["layers"][0]["diff_id"]
    assert {(d["name"], d["version"]) for d in image["distributions"]} == {
        ("appliance", "1.4.0"),
        ("litestar", "2.25.0"),
        ("PyYAML", "6.0.3"),
    }
    assert image["routes"] == CLEAN_ROUTES
    assert image["python_files_scanned"] == 5
    assert report["wheels"]["lock_entries"] == 2
    assert report["wheels"]["python_files_scanned"] == 2
    assert f"{layout.WHEELS_DIR}/{PROJECT_WHEEL}" in report["wheels"]["files"]


def test_largest_lists_as_many_files_as_asked(clean_bundle: Path) -> None:
    audit = audit_bundle(clean_bundle, largest=2)
    sizes = [large.size for large in audit.images[0].largest_files]
    assert len(sizes) == 2 and sizes == sorted(sizes, reverse=True)


def test_unpacked_bundle_audits_like_its_archive(clean_bundle: Path, tmp_path: Path) -> None:
    unpacked = tmp_path / "unpacked"
    unpacked.mkdir()
    subprocess.run(["tar", "-xf", clean_bundle, "-C", unpacked], check=True)
    from_archive = audit_bundle(clean_bundle).as_json()
    for path in (unpacked, unpacked / layout.top_dir(VERSION)):
        assert audit_bundle(path).as_json() | {"bundle": ""} == from_archive | {"bundle": ""}


# --- bad bundles: each fails with exit 1 and the finding that names what is wrong --------------

BAD_IMAGES: dict[str, tuple[Callable[[], list[list[oci.Entry]]], str, str]] = {
    "image_with_torch_distribution": (
        lambda: with_layer_entries(
            1, oci.file(f"{SITE}/torch-2.0.0.dist-info/METADATA", metadata("torch", "2.0.0"))
        ),
        "distribution",
        f"{SITE}/torch-2.0.0.dist-info",
    ),
    "image_with_sklearn_package_but_no_metadata": (
        lambda: with_layer_entries(1, oci.file(f"{SITE}/sklearn/__init__.py", b"")),
        "module",
        f"{SITE}/sklearn",
    ),
    "image_with_cuda_runtime_library": (
        lambda: with_layer_entries(
            0, oci.file("usr/lib/x86_64-linux-gnu/libcudart.so.12", b"\x7fELF")
        ),
        "gpu",
        "usr/lib/x86_64-linux-gnu/libcudart.so.12",
    ),
    "image_with_nvidia_wheels_in_site_packages": (
        lambda: with_layer_entries(
            1, oci.file(f"{SITE}/nvidia/cudnn/lib/libcudnn.so.9", b"\x7fELF")
        ),
        "gpu",
        f"{SITE}/nvidia",
    ),
    "image_with_cuda_toolkit": (
        lambda: with_layer_entries(0, oci.file("usr/local/cuda-12.4/version.json", b"{}")),
        "gpu",
        "usr/local/cuda-12.4",
    ),
    "image_with_ml_import_in_shipped_code": (
        lambda: with_layer_entries(
            2, oci.file(f"{SITE}/server/shortcut.py", b"import json\nfrom sklearn import svm\n")
        ),
        "import",
        f"{SITE}/server/shortcut.py:2",
    ),
    "image_with_predict_route": (
        lambda: clean_layers([*CLEAN_ROUTES, "/api/v1/predict"]),
        "route",
        "/api/v1/predict",
    ),
}


@pytest.mark.parametrize("what_is_wrong", sorted(BAD_IMAGES))
def test_bad_image_is_a_finding(what_is_wrong: str, tmp_path: Path) -> None:
    layers, kind, where = BAD_IMAGES[what_is_wrong]
    bundle = archive(make_tree(tmp_path / "build", layers()))
    done, report = audit_json(bundle, tmp_path)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "finding(s) in" in one_error_line(done)
    found = [(f["kind"], f["where"]) for f in report["findings"]]
    assert found == [(kind, f"{IMAGE}:{where}")], report["findings"]
    assert report["ok"] is False
    assert where in done.stdout


def test_image_over_the_size_limit_is_a_finding(clean_bundle: Path, tmp_path: Path) -> None:
    done, report = audit_json(clean_bundle, tmp_path, "--max-image-mb", "0.1")
    assert done.returncode == 1
    (finding,) = report["findings"]
    assert (finding["kind"], finding["where"]) == ("size", IMAGE)
    assert "over the 0.1 MB limit" in finding["detail"]
    assert report["max_image_bytes"] == 100_000
    assert report["images"][0]["uncompressed_bytes"] > 100_000


def test_ml_wheel_and_lock_entry_in_the_wheel_cache_are_findings(tmp_path: Path) -> None:
    wheel = "torch-2.0.0-cp311-cp311-manylinux_2_28_x86_64.whl"
    lock = LOCK + "torch==2.0.0 \\\n    --hash=sha256:" + "2" * 64 + "\n"
    tree = make_tree(tmp_path / "build", wheels={wheel: {"torch/__init__.py": b""}}, lock=lock)
    audit = audit_bundle(archive(tree))
    assert kinds_and_wheres(audit) == {
        ("wheel", f"{layout.WHEELS_DIR}/{wheel}"),
        ("dependency", f"{layout.WHEELS_DIR}/{layout.WHEELS_LOCK}:5"),
    }


def test_ml_import_in_the_project_wheel_is_a_finding(tmp_path: Path) -> None:
    project = {"appliance/__init__.py": b"", "appliance/fit.py": b"import xgboost as xgb\n"}
    tree = make_tree(tmp_path / "build", wheels={PROJECT_WHEEL: project})
    audit = audit_bundle(archive(tree))
    assert kinds_and_wheres(audit) == {
        ("import", f"{layout.WHEELS_DIR}/{PROJECT_WHEEL}/appliance/fit.py:1")
    }


def test_server_app_that_cannot_be_built_is_a_route_finding(tmp_path: Path) -> None:
    layers = with_layer_entries(2)
    layers[2] = [e for e in layers[2] if not e.name.endswith("server/app.py")]
    layers[2].append(oci.file(f"{SITE}/server/app.py", b"import not_in_the_image\n"))
    audit = audit_bundle(archive(make_tree(tmp_path / "build", layers)))
    (finding,) = audit.findings
    assert (finding.kind, finding.where) == ("route", f"{IMAGE}:{SITE}/server/app.py")
    assert "not_in_the_image" in finding.detail
    assert audit.images[0].routes == ()


def test_library_deleted_by_an_upper_layer_is_still_reported(tmp_path: Path) -> None:
    layers = with_layer_entries(1, oci.file(f"{SITE}/torch/__init__.py", b""))
    layers[2].append(oci.file(f"{SITE}/.wh.torch", b""))
    audit = audit_bundle(archive(make_tree(tmp_path / "build", layers)))
    assert kinds_and_wheres(audit) == {("module", f"{IMAGE}:{SITE}/torch")}


# --- broken or hostile input: one error line, non-zero exit ------------------------------------


def write_tar(out: Path, members: list[tuple[str, bytes | None]]) -> Path:
    """A tar of (name, data) members, data None for a folder; names are written as given."""
    with tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            if data is None:
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            else:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return out


@pytest.fixture
def bundle_that_is_not_a_tar(tmp_path: Path) -> Path:
    out = tmp_path / layout.archive_name(VERSION)
    out.write_bytes(random.Random(3).randbytes(4096))
    return out


@pytest.fixture
def truncated_bundle(clean_bundle: Path) -> Path:
    data = clean_bundle.read_bytes()
    clean_bundle.write_bytes(data[: len(data) // 2])
    return clean_bundle


@pytest.fixture
def bundle_with_image_missing_manifest(tmp_path: Path) -> Path:
    root = make_tree(tmp_path / "build")
    write_tar(root / IMAGE, [("abc", None), ("abc/layer.tar", b"\0" * 1024)])
    return archive(root)


@pytest.fixture
def bundle_with_path_traversal(tmp_path: Path) -> Path:
    top = layout.top_dir(VERSION)
    return write_tar(
        tmp_path / layout.archive_name(VERSION),
        [(f"{top}/", None), (f"{top}/../../etc/cron.d/evil", b"* * * * * root sh\n")],
    )


@pytest.fixture
def bundle_with_path_traversal_in_a_layer(tmp_path: Path) -> Path:
    root = make_tree(tmp_path / "build")
    layer = write_tar(tmp_path / "evil-layer.tar", [("../../etc/cron.d/evil", b"* * * * *\n")])
    built = oci.Layer(layer, "e" * 64, layer.stat().st_size, 1)
    oci.write_image_archive(root / IMAGE, [built], {"os": "linux"}, TAG, EPOCH)
    return archive(root)


@pytest.mark.parametrize(
    ("bad_bundle", "message"),
    [
        ("bundle_that_is_not_a_tar", "not an uncompressed tar"),
        ("truncated_bundle", "truncated"),
        ("bundle_with_image_missing_manifest", f"{IMAGE} has no manifest.json"),
        ("bundle_with_path_traversal", "climbs out"),
        ("bundle_with_path_traversal_in_a_layer", "not a safe relative path"),
    ],
)
def test_broken_or_hostile_bundle_is_one_error_line(
    bad_bundle: str, message: str, request: pytest.FixtureRequest
) -> None:
    path: Path = request.getfixturevalue(bad_bundle)
    done = run("appliance", "audit", path)
    assert done.returncode == 3
    assert message in one_error_line(done)
    with pytest.raises(BundleRejected):
        audit_bundle(path)


# --- the command line ------------------------------------------------------------------------


def test_audit_needs_exactly_one_of_bundle_or_source(clean_bundle: Path, tmp_path: Path) -> None:
    cases: list[list[str | Path]] = [
        [],
        [clean_bundle, "--source", tmp_path],
        ["--source", tmp_path, "--max-image-mb", "10"],
    ]
    for argv in cases:
        done = run("appliance", "audit", *argv)
        assert done.returncode == 2, argv
        assert "Usage:" in done.stderr


def test_help_says_signatures_are_not_checked() -> None:
    done = run("appliance", "audit", "--help", check=True)
    assert "does NOT check signatures" in done.stdout
    assert "appliance verify" in done.stdout


# --- the real bundle ---------------------------------------------------------------------------


def check_real_bundle(bundle: Path, work: Path) -> dict[str, Any]:
    """The audit of a bundle built by build_bundle.py: clean, the server image well under limits."""
    done, report = audit_json(bundle, work)
    assert done.returncode == 0, done.stdout + done.stderr
    assert report["ok"] is True and report["findings"] == []
    server = next(image for image in report["images"] if image["file"] == IMAGE)
    assert server["name"].startswith(f"{layout.SERVER_IMAGE_NAME}:")
    assert len(server["layers"]) == 3
    assert 0 < server["compressed_bytes"] < server["uncompressed_bytes"] < 600_000_000
    assert server["uncompressed_bytes"] == sum(layer["size"] for layer in server["layers"])
    names = {d["name"].lower() for d in server["distributions"]}
    assert {"appliance", "litestar", "duckdb", "granian"} <= names
    assert "pyarrow" not in names
    assert "/api/v1/items" in server["routes"] and "/health/ready" in server["routes"]
    assert server["python_files_scanned"] > 0
    assert report["wheels"]["python_files_scanned"] > 0
    return report


@pytest.mark.slow
def test_audit_of_the_built_bundle_is_clean(built_bundle: BuiltBundle, tmp_path: Path) -> None:
    check_real_bundle(built_bundle.archive, tmp_path)
