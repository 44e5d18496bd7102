"""bundle/rootfs.py's package listing: the relations the SBOM's graph needs, or none known."""

from __future__ import annotations

from pathlib import Path

from bundle.rootfs import DebianPackage, Relations, read_packages

SHA = "ab" * 32


def test_a_listing_of_seven_columns_gives_each_package_its_relations(tmp_path: Path) -> None:
    listing = tmp_path / "packages.tsv"
    listing.write_text(
        f"libc6\t2.36-9\tamd64\t{SHA}\t\tlibgcc-s1\t\n"
        f"mawk\t1.3.4\tamd64\t{SHA}\tlibc6 (>= 2.34)\t\tawk\n"
    )
    assert read_packages(listing) == (
        DebianPackage("libc6", "2.36-9", "amd64", SHA, Relations("", "libgcc-s1", "")),
        DebianPackage("mawk", "1.3.4", "amd64", SHA, Relations("libc6 (>= 2.34)", "", "awk")),
    )
    assert [p.relations for p in read_packages(listing)] == [
        Relations("", "libgcc-s1", ""),
        Relations("libc6 (>= 2.34)", "", "awk"),
    ]


def test_a_listing_of_four_columns_has_no_relations_known(tmp_path: Path) -> None:
    """A --base-rootfs listing from before: its packages' relations are not known, not empty."""
    listing = tmp_path / "packages.tsv"
    listing.write_text(f"libc6\t2.36-9\tamd64\t{SHA}\n")
    [package] = read_packages(listing)
    assert package.relations is None
    assert read_packages(tmp_path / "absent.tsv") == ()
