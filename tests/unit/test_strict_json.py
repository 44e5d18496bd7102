"""Strict JSON for signed manifests: one value per key, standard JSON only, no crash on garbage."""

from __future__ import annotations

import json

import pytest

from appliance.trust.strict_json import StrictJSONError, parse_strict_json


def test_a_document_parses_as_the_json_module_reads_it() -> None:
    text = '{"a": [1, 2.5, {"b": null, "c": true}], "d": "\\u00e9", "e": {}}'
    assert parse_strict_json(text.encode()) == json.loads(text)


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ('{"dataset_id": "../../etc", "dataset_id": "ok"}', "dataset_id"),
        ('{"tables": {"dim_item": {"rows": 0, "rows": 30}}}', "rows"),
        ('{"images": [{"file": "a"}, {"file": "b", "file": "c"}]}', "file"),
        ('[{"x": 1, "x": 1}]', "x"),
    ],
)
def test_a_key_twice_in_one_object_is_refused_at_any_depth(text: str, key: str) -> None:
    with pytest.raises(StrictJSONError, match=f"key '{key}' appears twice in one object"):
        parse_strict_json(text.encode())


def test_the_same_key_in_two_objects_is_fine() -> None:
    assert parse_strict_json(b'[{"x": 1}, {"x": 2}]') == [{"x": 1}, {"x": 2}]


def test_a_long_repeated_key_is_shortened_in_the_message() -> None:
    key = "k" * 10_000
    with pytest.raises(StrictJSONError) as refused:
        parse_strict_json(f'{{"{key}": 1, "{key}": 2}}'.encode())
    assert len(str(refused.value)) < 200


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_non_standard_numbers_are_refused(constant: str) -> None:
    with pytest.raises(StrictJSONError, match=f"{constant} is not a JSON number"):
        parse_strict_json(f'{{"rows": {constant}}}'.encode())


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\xff\xfe{}",
        b"{'a': 1}",
        b"[" * 100_000,
        b"9" * 5_000,
        b'{"a": 1} x',
        b"\xef\xbb\xbf{}",
    ],
    ids=["empty", "not-utf8", "single-quotes", "deep", "huge-number", "trailing", "bom"],
)
def test_garbage_is_one_error_not_a_crash(data: bytes) -> None:
    with pytest.raises(StrictJSONError, match=r"^not valid UTF-8 JSON") as refused:
        parse_strict_json(data)
    assert "\n" not in str(refused.value)
