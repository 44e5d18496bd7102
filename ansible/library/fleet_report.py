#!/usr/bin/python3
"""Ansible module: the fleet's status as one table, and the nodes that differ from the majority.

Runs on the controller (ansible/fleet-status.yml delegates it there, once), on what each node
said of itself: `nodes` maps each inventory name to {software, engine, data, health, error}. For
each node it gives its software version, its data version (`version`, `dataset_id`,
`model_version`, `generated_at`), its health, its last import, and `differs`: the fields in
which it is not like most of the fleet (software version, the data it serves, health). A node
that could not be asked (unreachable, not installed) differs in everything it could not say.
With `dest`, the whole report is also written there as JSON (for scripts: `fleet.sh status
--json` prints it).

Standard library only, like every module of this playbook.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

from ansible.module_utils.basic import AnsibleModule

FORMAT = "appliance-fleet-status/1"
COMPARED = ("software", "data", "health")
COLUMNS = ("NODE", "SOFTWARE", "DATA", "DATASET", "MODEL", "GENERATED AT", "HEALTH", "LAST IMPORT")


def data_key(data: dict[str, Any] | None) -> str:
    """What makes two nodes serve the same data: the dataset, the model and when it was made
    (not the version id, which counts imports and may differ for the same data)."""
    if not data:
        return "none"
    return "/".join(str(data.get(k, "")) for k in ("dataset_id", "model_version", "generated_at"))


def node_row(name: str, said: dict[str, Any]) -> dict[str, Any]:
    data = said.get("data") or None
    return {
        "node": name,
        "software": said.get("software") or "",
        "engine": said.get("engine") or "",
        "data": data,
        "health": said.get("health") or "unknown",
        "last_import": said.get("last_import") or "",
        "error": said.get("error") or "",
    }


def majority(values: list[str]) -> str | None:
    """The value most nodes have, if more nodes have it than any other (else none: a tie)."""
    counts = Counter(values).most_common()
    if not counts or (len(counts) > 1 and counts[0][1] == counts[1][1]):
        return None
    return counts[0][0]


def report(nodes: dict[str, dict[str, Any]]) -> dict[str, Any]:
    rows = [node_row(name, said) for name, said in sorted(nodes.items())]
    keyed = {
        "software": [r["software"] for r in rows],
        "data": [data_key(r["data"]) for r in rows],
        "health": [r["health"] for r in rows],
    }
    most = {field: majority(values) for field, values in keyed.items()}
    for index, row in enumerate(rows):
        row["differs"] = [
            field for field in COMPARED if most[field] is None or keyed[field][index] != most[field]
        ]
    return {
        "format": FORMAT,
        "nodes": rows,
        "majority": most,
        "differing": [r["node"] for r in rows if r["differs"]],
    }


def table(result: dict[str, Any]) -> list[str]:
    """The report as aligned text lines; a node that differs is marked with `!` and why."""
    lines = [list(COLUMNS)]
    for row in result["nodes"]:
        data = row["data"] or {}
        lines.append([
            ("! " if row["differs"] else "  ") + row["node"],
            row["software"] or "-",
            data.get("version", "-"),
            data.get("dataset_id", "-"),
            data.get("model_version", "-"),
            data.get("generated_at", "-"),
            row["health"],
            row["last_import"] or "-",
        ])  # fmt: skip
    lines[0][0] = "  " + lines[0][0]
    widths = [max(len(line[i]) for line in lines) for i in range(len(COLUMNS))]
    text = [
        "  ".join(cell.ljust(widths[i]) for i, cell in enumerate(line)).rstrip() for line in lines
    ]
    differing = [r for r in result["nodes"] if r["differs"]]
    if differing:
        text.append("")
        for row in differing:
            why = f": {row['error']}" if row["error"] else ""
            text.append(
                f"! {row['node']} differs from most nodes in {', '.join(row['differs'])}{why}"
            )
    else:
        text.append("")
        text.append(f"all {len(result['nodes'])} node(s) alike")
    return text


def write_json(dest: str, result: dict[str, Any]) -> None:
    """Write the report by rename, so a script never reads half of it."""
    folder = Path(dest).absolute().parent
    fd, partial = tempfile.mkstemp(prefix=".fleet-status.", dir=folder)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(result, handle, indent=2, sort_keys=True)
            handle.write("\n")
        os.replace(partial, dest)
    except BaseException:
        Path(partial).unlink(missing_ok=True)
        raise


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "nodes": {"type": "dict", "required": True},
            "dest": {"type": "str", "default": ""},
        },
        supports_check_mode=True,
    )
    result = report(module.params["nodes"])
    if module.params["dest"]:
        try:
            write_json(module.params["dest"], result)
        except OSError as exc:
            module.fail_json(msg=f"cannot write {module.params['dest']}: {exc.strerror or exc}")
    module.exit_json(changed=False, table=table(result), **result)


if __name__ == "__main__":
    main()
