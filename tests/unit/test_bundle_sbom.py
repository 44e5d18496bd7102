"""bundle/sbom.py on wheels made here: CycloneDX 1.6 that the official schema accepts, licences
where the specification wants them, a dependency graph that follows Requires-Dist, markers and
extras, one bom-ref per wheel file, and the same bytes every time."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest
from cyclonedx.model import HashAlgorithm, HashType
from cyclonedx.model.component import Component, ComponentType

from appliance.errors import ConfigError
from bundle import sbom
from bundle.rootfs import BaseRootfs, DebianPackage, Relations
from tests.sbom_schema import graph_errors, schema_errors

REPO = Path(__file__).resolve().parents[2]
SDE = 1763769600
PURE = "py3-none-any"


def make_wheel(folder: Path, name: str, version: str, *headers: str, tags: str = PURE) -> Path:
    """A wheel holding only its METADATA, with `headers` ("Field: value") after Name and Version."""
    path = folder / f"{name.replace('-', '_')}-{version}-{tags}.whl"
    metadata = "\n".join(
        ["Metadata-Version: 2.4", f"Name: {name}", f"Version: {version}", *headers]
    )
    with zipfile.ZipFile(path, "w") as zf:
        # A fixed time: the same arguments give the same file, and so the same SHA-256.
        member = zipfile.ZipInfo(f"{name.replace('-', '_')}-{version}.dist-info/METADATA")
        zf.writestr(member, metadata + "\n\n")
    return path


def by_name(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Components by their wheel's file name (or package name when the purl has none)."""
    found = {}
    for component in doc["components"]:
        key = (
            component["purl"].split("file_name=")[-1]
            if "file_name=" in component["purl"]
            else component["name"]
        )
        found[key] = component
    return found


def graph(doc: dict[str, Any]) -> dict[str, set[str]]:
    """bom-ref -> the bom-refs it depends on."""
    return {d["ref"]: set(d.get("dependsOn", [])) for d in doc["dependencies"]}


@pytest.fixture
def licensed(tmp_path: Path) -> dict[str, dict[str, Any]]:
    """A wheel cache whose wheels declare licences each way a METADATA can."""
    wheels = [
        make_wheel(tmp_path, "expr", "1.0", "License-Expression: Apache-2.0 OR MIT"),
        make_wheel(tmp_path, "plainid", "1.0", "License-Expression: MIT"),
        make_wheel(tmp_path, "oldfield", "1.0", "License: BSD-3-Clause"),
        make_wheel(tmp_path, "oldexpr", "1.0", "License: MIT AND (Apache-2.0 OR BSD-2-Clause)"),
        make_wheel(tmp_path, "words", "1.0", "License: The MIT License, see LICENSE\n  more text"),
        make_wheel(
            tmp_path, "classified", "1.0", "Classifier: License :: OSI Approved :: MIT License"
        ),
        make_wheel(tmp_path, "nolicence", "1.0"),
    ]
    return by_name(sbom.wheels_sbom(wheels, ["3.11"], "1.0.0", SDE))


def test_an_spdx_expression_goes_in_expression(licensed: dict[str, dict[str, Any]]) -> None:
    assert licensed[f"expr-1.0-{PURE}.whl"]["licenses"] == [
        {"expression": "Apache-2.0 OR MIT", "acknowledgement": "declared"}
    ]
    assert licensed[f"oldexpr-1.0-{PURE}.whl"]["licenses"] == [
        {"expression": "MIT AND (Apache-2.0 OR BSD-2-Clause)", "acknowledgement": "declared"}
    ]


def test_a_plain_spdx_id_goes_in_license_id(licensed: dict[str, dict[str, Any]]) -> None:
    assert licensed[f"plainid-1.0-{PURE}.whl"]["licenses"] == [
        {"license": {"id": "MIT", "acknowledgement": "declared"}}
    ]
    assert licensed[f"oldfield-1.0-{PURE}.whl"]["licenses"] == [
        {"license": {"id": "BSD-3-Clause", "acknowledgement": "declared"}}
    ]


def test_words_that_are_no_spdx_go_in_license_name(licensed: dict[str, dict[str, Any]]) -> None:
    assert licensed[f"words-1.0-{PURE}.whl"]["licenses"] == [
        {"license": {"name": "The MIT License, see LICENSE", "acknowledgement": "declared"}}
    ]
    assert licensed[f"classified-1.0-{PURE}.whl"]["licenses"] == [
        {"license": {"name": "MIT License", "acknowledgement": "declared"}}
    ]
    assert "licenses" not in licensed[f"nolicence-1.0-{PURE}.whl"]


def test_the_documents_pass_the_official_schema(tmp_path: Path) -> None:
    wheels = [make_wheel(tmp_path, "a", "1.0", "License-Expression: MIT OR Apache-2.0")]
    packages = (DebianPackage("libc6", "2.36-9+deb12u13", "amd64", "ab" * 32),)
    image = sbom.image_sbom(
        "localhost/x", "1.0.0", "sha256:" + "cd" * 32, rootfs(tmp_path, packages), wheels, SDE
    )
    for doc in (sbom.wheels_sbom(wheels, ["3.11"], "1.0.0", SDE), image):
        assert doc["specVersion"] == "1.6" and doc["bomFormat"] == "CycloneDX"
        assert schema_errors(doc) == []


def test_the_schema_check_of_the_tests_can_fail(tmp_path: Path) -> None:
    doc = sbom.wheels_sbom([make_wheel(tmp_path, "a", "1.0")], ["3.11"], "1.0.0", SDE)
    doc["components"][0]["hashes"][0]["alg"] = "SHA-257"
    doc["components"][0]["licenses"] = [{"license": {"id": "MIT"}}, {"expression": "MIT"}]
    assert len(schema_errors(doc)) == 2


def test_a_document_the_schema_refuses_is_never_returned() -> None:
    subject = Component(type=ComponentType.APPLICATION, name="cache", bom_ref="s")
    broken = Component(
        type=ComponentType.LIBRARY,
        name="x",
        bom_ref="x",
        hashes=[HashType(alg=HashAlgorithm.SHA_256, content="not hex")],
    )
    with pytest.raises(ConfigError, match=r"fails the CycloneDX 1.6 schema at \$\.components") as e:
        sbom.document(subject, [broken], {}, SDE)
    assert "\n" not in str(e.value)


def test_two_wheels_of_one_release_have_two_bom_refs_and_purls(tmp_path: Path) -> None:
    """cffi for 3.11 and for 3.13: two files, two components, told apart by the purl's file_name."""
    one = make_wheel(tmp_path, "cffi", "2.1.1", tags="cp311-cp311-manylinux_2_17_x86_64")
    two = make_wheel(tmp_path, "cffi", "2.1.1", tags="cp313-cp313-manylinux_2_17_x86_64")
    doc = sbom.wheels_sbom([one, two], ["3.11", "3.13"], "1.0.0", SDE)
    refs = sorted(c["bom-ref"] for c in doc["components"])
    assert refs == [
        f"pkg:pypi/cffi@2.1.1?file_name={one.name}",
        f"pkg:pypi/cffi@2.1.1?file_name={two.name}",
    ]
    assert [c["purl"] for c in sorted(doc["components"], key=lambda c: c["bom-ref"])] == refs


def test_a_wheel_requires_what_its_requires_dist_names_on_its_python(tmp_path: Path) -> None:
    top = make_wheel(
        tmp_path,
        "top",
        "1.0",
        "Requires-Dist: lib311; python_version < '3.12'",
        "Requires-Dist: native",
        "Requires-Dist: Some_Lib[fast]>=1",
        "Requires-Dist: notthere",
        "Requires-Dist: windowsonly; sys_platform == 'win32'",
    )
    wheels = [
        top,
        make_wheel(tmp_path, "lib311", "1.0"),
        make_wheel(tmp_path, "native", "1.0", tags="cp311-cp311-manylinux_2_17_x86_64"),
        make_wheel(tmp_path, "native", "1.0", tags="cp312-abi3-manylinux_2_17_x86_64"),
        make_wheel(
            tmp_path,
            "some-lib",
            "1.0",
            "Requires-Dist: speedup; extra == 'fast'",
            "Requires-Dist: docs; extra == 'docs'",
        ),
        make_wheel(tmp_path, "speedup", "1.0"),
        make_wheel(tmp_path, "docs", "1.0"),
        make_wheel(tmp_path, "windowsonly", "1.0"),
    ]
    doc = sbom.wheels_sbom(wheels, ["3.11", "3.13"], "1.0.0", SDE)
    ref = {name: c["bom-ref"] for name, c in by_name(doc).items()}
    edges = graph(doc)
    assert edges[ref[top.name]] == {
        ref[f"lib311-1.0-{PURE}.whl"],
        ref["native-1.0-cp311-cp311-manylinux_2_17_x86_64.whl"],
        ref["native-1.0-cp312-abi3-manylinux_2_17_x86_64.whl"],  # the abi3 wheel, for 3.13
        ref[f"some_lib-1.0-{PURE}.whl"],
    }
    assert edges[ref[f"some_lib-1.0-{PURE}.whl"]] == {ref[f"speedup-1.0-{PURE}.whl"]}
    # The subject depends on what nothing in the cache needs: the roots.
    assert edges["appliance-wheels@1.0.0"] == {
        ref[top.name],
        ref[f"docs-1.0-{PURE}.whl"],
        ref[f"windowsonly-1.0-{PURE}.whl"],
    }
    assert set(edges) == {*ref.values(), "appliance-wheels@1.0.0"}


def test_the_image_graph_has_its_python_s_and_its_debian_edges(tmp_path: Path) -> None:
    top = make_wheel(tmp_path, "top", "1.0", "Requires-Dist: lib311; python_version < '3.12'")
    lib = make_wheel(tmp_path, "lib311", "1.0")
    packages = (
        DebianPackage("libc6", "2.36-9+deb12u13", "amd64", "ab" * 32, Relations("", "libgcc-s1")),
        DebianPackage("libgcc-s1", "12.2.0-14", "amd64", "cd" * 32, Relations("", "gcc-12-base")),
        DebianPackage("gcc-12-base", "12.2.0-14", "amd64", "ef" * 32, Relations()),
        DebianPackage("given", "1", "amd64", "01" * 32),  # a listing without relations
    )
    doc = sbom.image_sbom(
        "localhost/x", "1.0.0", "sha256:" + "ef" * 32, rootfs(tmp_path, packages), [top, lib], SDE
    )
    edges = graph(doc)
    ref = {name: c["bom-ref"] for name, c in by_name(doc).items()}
    assert edges[ref[top.name]] == {ref[lib.name]}
    assert edges[ref["libc6"]] == {ref["libgcc-s1"]}
    assert edges[ref["libgcc-s1"]] == {ref["gcc-12-base"]}
    assert edges[ref["gcc-12-base"]] == set()  # known to need nothing: an empty entry
    assert ref["given"] not in edges  # not known: no entry at all
    assert edges["localhost/x@1.0.0"] == {ref[top.name], ref["libc6"], ref["given"]}
    subject = doc["metadata"]["component"]
    assert {"name": "appliance:base-rootfs", "value": "sha256:" + "12" * 32} in subject[
        "properties"
    ]


def test_debian_relations_resolve_alternatives_virtual_packages_and_qualifiers() -> None:
    packages = [
        DebianPackage("app", "1", "amd64", "00" * 32, Relations(
            "libc6 (>= 2.34)", "missing | libfoo2 [amd64], awk, python3:any (>= 3.11), app"
        )),
        DebianPackage("libc6", "1", "amd64", "00" * 32, Relations()),
        DebianPackage("libfoo2", "1", "amd64", "00" * 32, Relations()),
        DebianPackage("mawk", "1", "amd64", "00" * 32, Relations(provides="awk")),
        DebianPackage("python3", "1", "amd64", "00" * 32, Relations(provides="python3-any (= 1)")),
        DebianPackage("unlisted", "1", "amd64", "00" * 32),
    ]  # fmt: skip
    edges = sbom.debian_dependencies(packages)
    assert edges["app"] == {"libc6", "libfoo2", "mawk", "python3"}
    assert "unlisted" not in edges
    assert edges["mawk"] == set()


def test_debian_purls_are_encoded_by_the_purl_rules(tmp_path: Path) -> None:
    packages = (DebianPackage("libstdc++6", "12.2.0-14+deb12u1", "amd64", "ab" * 32),)
    doc = sbom.image_sbom(
        "localhost/x", "1", "sha256:" + "ef" * 32, rootfs(tmp_path, packages), [], SDE
    )
    [component] = doc["components"]
    assert component["purl"] == (
        "pkg:deb/debian/libstdc%2B%2B6@12.2.0-14%2Bdeb12u1?arch=amd64&distro=debian-12"
    )


def rootfs(folder: Path, packages: tuple[DebianPackage, ...]) -> BaseRootfs:
    return BaseRootfs(folder / "rootfs.tar", packages, "sha256:" + "12" * 32)


WRITE_ONE = """
import sys
from pathlib import Path
from bundle import sbom
wheels = sorted(Path(sys.argv[1]).glob("*.whl"))
sbom.write(Path(sys.argv[2]), sbom.wheels_sbom(wheels, ["3.11", "3.13"], "1.0.0", 1763769600))
"""


def test_the_same_wheels_give_the_same_bytes_whatever_the_hash_seed(tmp_path: Path) -> None:
    """Set and dict orders change with PYTHONHASHSEED between processes; the SBOM must not."""
    folder = tmp_path / "wheels"
    folder.mkdir()
    for name in ("zeta", "alpha", "mid", "beta"):
        make_wheel(folder, name, "1.0", "Requires-Dist: alpha", "Requires-Dist: beta")
    outputs = []
    for seed in ("1", "2"):
        out = tmp_path / f"sbom-{seed}.json"
        subprocess.run(
            [sys.executable, "-c", WRITE_ONE, str(folder), str(out)],
            check=True,
            cwd=REPO,
            env={**os.environ, "PYTHONHASHSEED": seed},
        )
        outputs.append(out.read_bytes())
    assert outputs[0] == outputs[1]
    doc = json.loads(outputs[0])
    assert doc["serialNumber"].startswith("urn:uuid:")
    assert doc["metadata"]["timestamp"] == "2025-11-22T00:00:00+00:00"


def test_a_different_content_gives_a_different_serial_number(tmp_path: Path) -> None:
    one = sbom.wheels_sbom([make_wheel(tmp_path, "a", "1.0")], ["3.11"], "1.0.0", SDE)
    two = sbom.wheels_sbom([make_wheel(tmp_path, "a", "1.0")], ["3.11"], "1.0.1", SDE)
    assert one["serialNumber"] != two["serialNumber"]
    assert one == sbom.wheels_sbom([make_wheel(tmp_path, "a", "1.0")], ["3.11"], "1.0.0", SDE)


def test_a_wheel_with_a_broken_requirement_is_a_one_line_error(tmp_path: Path) -> None:
    bad = make_wheel(tmp_path, "bad", "1.0", "Requires-Dist: ???")
    with pytest.raises(
        ConfigError, match=r"^sbom: bad-1.0-py3-none-any.whl has a Requires-Dist"
    ) as e:
        sbom.wheels_sbom([bad], ["3.11"], "1.0.0", SDE)
    assert "\n" not in str(e.value)


def test_a_loop_that_nothing_else_reaches_hangs_off_the_subject(tmp_path: Path) -> None:
    """libc6 and libgcc-s1 need each other: were nothing else to need them, neither would be a
    root, and the graph would lose them."""
    packages = (
        DebianPackage("libc6", "2.36-9", "amd64", "ab" * 32, Relations("", "libgcc-s1")),
        DebianPackage("libgcc-s1", "12.2.0-14", "amd64", "cd" * 32, Relations("", "libc6")),
    )
    doc = sbom.image_sbom(
        "localhost/x", "1.0.0", "sha256:" + "ef" * 32, rootfs(tmp_path, packages), [], SDE
    )
    ref = {c["name"]: c["bom-ref"] for c in doc["components"]}
    assert graph(doc)["localhost/x@1.0.0"] == {ref["libc6"]}
    assert graph_errors(doc) == []
