"""bundle/image.py's labels: the OCI keys by the annotation spec (no base.name, as the image has no
base image), the base rootfs's digest under the project's prefix, and pyproject.toml's
[tool.appliance.image-labels] read strictly."""

from __future__ import annotations

from pathlib import Path

import pytest

from appliance.errors import ConfigError
from appliance.trust.sshsig import generate_key
from bundle import image, layout
from bundle.build import BuildOptions, preflight
from bundle.rootfs import BaseRootfs

REPO = Path(__file__).resolve().parents[2]
CREATED = "2025-11-22T00:00:00Z"
DIGEST = "sha256:" + "ab" * 32
# The keys the OCI image spec defines (image-spec annotations.md, "Pre-Defined Annotation Keys").
OCI_KEYS = {
    f"org.opencontainers.image.{key}"
    for key in (
        "created", "authors", "url", "documentation", "source", "version", "revision",
        "vendor", "licenses", "ref.name", "title", "description", "base.digest", "base.name",
    )
}  # fmt: skip
FULL = {
    "vendor": "Example Vendor",
    "url": "https://appliance.example/",
    "source": "https://git.example/appliance.git",
    "documentation": "https://appliance.example/docs/",
}


def sources(labels: dict[str, str]) -> image.ImageSources:
    rootfs = BaseRootfs(Path("rootfs.tar"), (), DIGEST)
    return image.ImageSources(
        rootfs, (), Path("appliance.whl"), "1.2.0", "abc123", 1763769600, "Apache-2.0", labels
    )


def pyproject(folder: Path, table: str) -> Path:
    (folder / "pyproject.toml").write_text(f"[project]\nname = 'x'\n\n{table}\n")
    return folder


def test_every_label_is_an_oci_key_or_under_the_project_prefix() -> None:
    labels = image.image_labels(sources(FULL), CREATED)
    ours = {k for k in labels if k.startswith(layout.IMAGE_LABEL_PREFIX)}
    assert set(labels) - ours <= OCI_KEYS
    assert ours == {image.BASE_ROOTFS_LABEL}


def test_there_is_no_base_name_and_the_rootfs_digest_has_its_own_label() -> None:
    labels = image.image_labels(sources({}), CREATED)
    assert "org.opencontainers.image.base.name" not in labels
    assert "org.opencontainers.image.base.digest" not in labels
    assert labels["localhost.appliance.base.rootfs.digest"] == DIGEST
    assert not [v for v in labels.values() if "rootfs" in v]


def test_the_project_labels_are_set_as_given() -> None:
    labels = image.image_labels(sources(FULL), CREATED)
    for key, value in FULL.items():
        assert labels[f"org.opencontainers.image.{key}"] == value
    assert labels["org.opencontainers.image.version"] == "1.2.0"
    assert labels["org.opencontainers.image.revision"] == "abc123"
    assert labels["org.opencontainers.image.created"] == CREATED
    assert labels["org.opencontainers.image.licenses"] == "Apache-2.0"


def test_an_unset_project_label_is_left_out() -> None:
    labels = image.image_labels(sources({"vendor": "Example Vendor"}), CREATED)
    assert labels["org.opencontainers.image.vendor"] == "Example Vendor"
    for key in ("url", "source", "documentation"):
        assert f"org.opencontainers.image.{key}" not in labels


def test_the_labels_are_read_from_pyproject(tmp_path: Path) -> None:
    table = "[tool.appliance.image-labels]\n" + "".join(f'{k} = "{v}"\n' for k, v in FULL.items())
    assert image.project_labels(pyproject(tmp_path, table)) == FULL
    empty = '[tool.appliance.image-labels]\nvendor = ""\nurl = "https://a.example/"\n'
    assert image.project_labels(pyproject(tmp_path, empty)) == {"url": "https://a.example/"}
    assert image.project_labels(pyproject(tmp_path, "")) == {}


def test_the_repository_s_own_labels_read() -> None:
    assert set(image.project_labels(REPO)) <= set(image.PROJECT_LABELS)


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ('vendor = "x"\nhomepage = "https://a.example/"', "unknown key 'homepage' (known: vendor, url, source, documentation)"),
        ('source = "git.example/appliance"', "source 'git.example/appliance' is not an absolute http(s) URL"),
        ('documentation = "file:///usr/share/doc"', "is not an absolute http(s) URL"),
        ('vendor = "two\\nlines"', "vendor must be one line of text"),
        ("vendor = 3", "vendor must be one line of text"),
    ],
)  # fmt: skip
def test_a_bad_label_table_is_a_one_line_error(tmp_path: Path, table: str, message: str) -> None:
    folder = pyproject(tmp_path, f"[tool.appliance.image-labels]\n{table}")
    with pytest.raises(ConfigError, match="image-labels") as caught:
        image.project_labels(folder)
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_a_label_table_that_is_no_table_is_refused(tmp_path: Path) -> None:
    folder = pyproject(tmp_path, '[tool.appliance]\nimage-labels = "vendor"')
    with pytest.raises(ConfigError, match=r"\[tool.appliance.image-labels\] must be a table"):
        image.project_labels(folder)


def test_the_build_refuses_a_bad_label_table_at_preflight(tmp_path: Path) -> None:
    """Before any step runs: a build never fails on its labels minutes in."""
    root = pyproject(tmp_path, '[tool.appliance.image-labels]\nurl = "ftp://a.example/"')
    (root / "requirements").mkdir()
    (root / "requirements" / "node.lock").write_text("")
    generate_key(tmp_path / "key", "test@appliance.test")
    options = BuildOptions(
        "1.0.0", tmp_path / "key", tmp_path / "out", root, tmp_path / "cache", 1763769600, "r"
    )
    with pytest.raises(ConfigError, match=r"url 'ftp://a\.example/' is not an absolute http"):
        preflight(options, lambda _line: None)
    assert not (tmp_path / "out").exists()


def test_a_source_root_without_pyproject_is_a_one_line_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^cannot read .*pyproject\.toml") as caught:
        image.project_labels(tmp_path)
    assert "\n" not in str(caught.value)
