"""Strict JSON for signed manifests: the signed bytes must have exactly one reading.

Python's json module keeps the last of two equal keys in an object; other parsers keep the first
or refuse. A signed `{"dataset_id": "../../etc", "dataset_id": "ok"}` would then say one thing to
the node and another to an admin's `jq`, so a repeated key, at any depth, is refused. So are
NaN and Infinity, which Python accepts but JSON does not have.
"""

from __future__ import annotations

import json
from typing import Any, NoReturn

# Long enough to recognise a key in a message, short enough to keep the message one line.
_KEY_SHOWN_CHARS = 64


class StrictJSONError(ValueError):
    """The bytes are not UTF-8 JSON with one value per key."""


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """Build one JSON object, refusing a key that appears twice in it."""
    obj: dict[str, Any] = {}
    for key, value in pairs:
        if key in obj:
            shown = key if len(key) <= _KEY_SHOWN_CHARS else f"{key[:_KEY_SHOWN_CHARS]}..."
            msg = f"key {shown!r} appears twice in one object"
            raise StrictJSONError(msg)
        obj[key] = value
    return obj


def _no_constant(name: str) -> NoReturn:
    msg = f"{name} is not a JSON number"
    raise StrictJSONError(msg)


def parse_strict_json(data: bytes) -> Any:
    """Parse UTF-8 JSON that repeats no key in any object; StrictJSONError says what is wrong."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        msg = f"not valid UTF-8 JSON ({exc})"
        raise StrictJSONError(msg) from exc
    try:
        return json.loads(text, object_pairs_hook=_unique_keys, parse_constant=_no_constant)
    except StrictJSONError:
        raise
    except RecursionError as exc:
        msg = "not valid UTF-8 JSON (nested too deeply)"
        raise StrictJSONError(msg) from exc
    except ValueError as exc:
        # JSONDecodeError, and the int() limit on a number of thousands of digits.
        msg = f"not valid UTF-8 JSON ({exc})"
        raise StrictJSONError(msg) from exc
