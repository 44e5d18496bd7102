"""The node's metrics: the revision the image names, and a node fault logged once, not per scrape."""

from __future__ import annotations

from server.node_metrics import UNKNOWN_REVISION, RepeatedWarnings, revision


def test_the_revision_is_the_one_the_image_environment_names() -> None:
    assert revision({"APPLIANCE_REVISION": " 0123abc-dirty\n"}) == "0123abc-dirty"
    assert revision({"APPLIANCE_REVISION": "  "}) == UNKNOWN_REVISION
    assert revision({}) == UNKNOWN_REVISION


def test_a_warning_is_logged_once_until_it_changes_or_clears() -> None:
    warnings = RepeatedWarnings()
    assert warnings.to_log(None) is None
    assert warnings.to_log("counts torn") == "counts torn"
    assert warnings.to_log("counts torn") is None
    assert warnings.to_log("counts foreign") == "counts foreign"
    assert warnings.to_log(None) is None
    assert warnings.to_log("counts foreign") == "counts foreign"  # damaged again after a repair
