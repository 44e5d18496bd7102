"""The simulated node kinds (tests/e2e/simnode.py): which the tests run, and what each image is."""

from __future__ import annotations

import pytest

from appliance.bundles.bundle_layout import ENGINE_PACKAGES, NODE_TARGETS
from tests.e2e.simnode import (
    DEFAULT_KINDS,
    KINDS_VARIABLE,
    NODE_KINDS,
    SIMULATION_CONFIG,
    Node,
    kinds_from_env,
)


def test_without_the_variable_the_tests_run_the_default_kinds(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(KINDS_VARIABLE, raising=False)
    assert [kind.name for kind in kinds_from_env()] == list(DEFAULT_KINDS)
    monkeypatch.setenv(KINDS_VARIABLE, " , ")
    assert [kind.name for kind in kinds_from_env()] == list(DEFAULT_KINDS)


def test_the_variable_names_the_kinds_in_order_once_each(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KINDS_VARIABLE, "debian13-docker, debian12,debian13-docker")
    assert [kind.name for kind in kinds_from_env()] == ["debian13-docker", "debian12"]


def test_an_unknown_kind_is_refused_with_the_known_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KINDS_VARIABLE, "debian12,ubuntu24")
    with pytest.raises(ValueError, match=r"ubuntu24 \(known: debian12, debian13, ") as raised:
        kinds_from_env()
    assert all(name in str(raised.value) for name in NODE_KINDS)


def test_every_kind_is_a_bundle_target_with_an_engine_the_bundle_knows() -> None:
    targets = {target.name for target in NODE_TARGETS}
    for kind in NODE_KINDS.values():
        assert kind.target in targets
        assert kind.engine in ENGINE_PACKAGES
        assert kind.engine in SIMULATION_CONFIG
        assert kind.preinstalled == (kind.variant == "minbase")
        assert kind.sources[-1].startswith("deb http://deb.debian.org/debian-security ")


def test_kinds_that_differ_only_in_engine_share_their_image() -> None:
    assert NODE_KINDS["debian13-docker"].image == NODE_KINDS["debian13-standard"].image
    images = {NODE_KINDS[name].image for name in ("debian12", "debian13", "debian12-standard")}
    assert len(images) == 3
    assert NODE_KINDS["debian13-standard"].image not in images


def test_a_node_defaults_to_the_original_kind_and_names_its_engine() -> None:
    assert Node("n").kind is NODE_KINDS["debian12"]
    assert Node("n", NODE_KINDS["debian13-docker"]).engine == "docker"


def test_all_names_every_kind(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KINDS_VARIABLE, "all")
    assert [kind.name for kind in kinds_from_env()] == list(NODE_KINDS)
