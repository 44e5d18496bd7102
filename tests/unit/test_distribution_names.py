"""Distribution names: what a requirement line names, and PEP 503's normal form."""

from __future__ import annotations

import pytest

from appliance.audit.distribution_names import normalise_name, requirement_name


@pytest.mark.parametrize(
    ("requirement", "name"),
    [
        ("duckdb>=1.1", "duckdb"),
        ("  litestar[standard]>=2.12,<3", "litestar"),
        ("scikit_learn.x==1.5 ; python_version >= '3.11'", "scikit_learn.x"),
        ("zope.interface", "zope.interface"),
        ("-e .", None),
        ("", None),
        ("[extra]", None),
    ],
)
def test_requirement_name_is_the_name_a_line_starts_with(
    requirement: str, name: str | None
) -> None:
    assert requirement_name(requirement) == name


def test_normalise_name() -> None:
    assert normalise_name("Scikit__Learn.x") == "scikit-learn-x"
