"""CycloneDX's official JSON schema, checked with plain jsonschema (as docs/auditor-guide.md
shows an auditor), not with the writer's own validator: the schema files are those that
cyclonedx-python-lib ships (bom-1.6 and the SPDX licence-id and JSF schemas it refers to)."""

from __future__ import annotations

import json
from functools import cache
from importlib.resources import files
from typing import Any

from jsonschema import Draft7Validator, FormatChecker
from referencing import Registry, Resource

SCHEMAS = files("cyclonedx.schema") / "_res"
BOM_SCHEMA = "bom-1.6.SNAPSHOT.schema.json"
# What bom-1.6 refers to, relative to its $id http://cyclonedx.org/schema/bom-1.6.schema.json.
REFERRED = ("spdx.SNAPSHOT.schema.json", "jsf-0.82.SNAPSHOT.schema.json")
BASE_URI = "http://cyclonedx.org/schema/"


@cache
def validator() -> Draft7Validator:
    """A draft-7 validator for CycloneDX 1.6 JSON, formats (date-time, iri-reference...) checked."""
    registry: Registry[Any] = Registry()
    for name in REFERRED:
        resource = Resource.from_contents(json.loads((SCHEMAS / name).read_text()))
        registry = registry.with_resource(f"{BASE_URI}{name}", resource)
    schema = json.loads((SCHEMAS / BOM_SCHEMA).read_text())
    return Draft7Validator(schema, registry=registry, format_checker=FormatChecker())


def schema_errors(doc: Any) -> list[str]:
    """Where and why `doc` fails the official schema; empty when it passes."""
    return [f"{e.json_path}: {e.message}" for e in validator().iter_errors(doc)]


def graph_errors(doc: dict[str, Any]) -> list[str]:
    """What the schema cannot say: a bom-ref used twice, a dependency naming no component, a
    component the document's subject does not reach through the graph."""
    subject = doc["metadata"]["component"]["bom-ref"]
    refs = [c["bom-ref"] for c in doc.get("components", [])]
    errors = [f"bom-ref {r} appears twice" for r in sorted(set(refs)) if refs.count(r) > 1]
    known = {subject, *refs}
    edges = {d["ref"]: d.get("dependsOn", []) for d in doc.get("dependencies", [])}
    for ref, targets in edges.items():
        errors += [f"dependency {r} is no component" for r in [ref, *targets] if r not in known]
    reached, todo = set(), [subject]
    while todo:
        ref = todo.pop()
        if ref not in reached:
            reached.add(ref)
            todo.extend(edges.get(ref, []))
    errors += [f"{r} is not reached from {subject}" for r in refs if r not in reached]
    return errors
