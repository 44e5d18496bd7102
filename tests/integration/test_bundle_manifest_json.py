"""The bundle's manifest.json is read strictly: a signed manifest has one reading only."""

from __future__ import annotations

from pathlib import Path

import pytest

from appliance.bundles.bundle_verify import verify_bundle
from appliance.errors import BundleRejected
from bundle import layout
from tests.integration.test_bundle_verify import VERSION, make_release_key, make_tree, seal


@pytest.mark.parametrize(
    ("first", "key"),
    [
        ('"version": "9.9.9", ', "version"),
        ('"min_upgrade_from": "0.0.1", ', "min_upgrade_from"),
    ],
)
def test_bundle_manifest_with_a_key_twice_is_refused(tmp_path: Path, first: str, key: str) -> None:
    release = make_release_key(tmp_path / "key", "release@build")
    tree = make_tree(tmp_path / "bundle")
    manifest = tree / layout.MANIFEST
    text = manifest.read_text()
    # Python's json keeps the last value (VERSION, which verifies); jq and others the first.
    manifest.write_text(text.replace(f'"{key}":', f'{first}"{key}":', 1))
    seal(tree, release)
    with pytest.raises(BundleRejected, match=f"key '{key}' appears twice") as refused:
        verify_bundle(tree, release.trusted())
    assert refused.value.reason == "bad-manifest"
    assert VERSION in text
