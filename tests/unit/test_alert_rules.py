"""The example alert rules (docs/examples/appliance-alerts.yml): they name only metrics the server
exposes, every such metric is documented, and promtool (Debian's prometheus package) finds the
rules valid and fires each alert when, and only when, it should."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from server.metrics import DEFAULT_HELP
from server.node_metrics import NODE_HELP

REPO = Path(__file__).resolve().parents[2]
RULES = REPO / "docs" / "examples" / "appliance-alerts.yml"
ADMIN_GUIDE = REPO / "docs" / "admin-guide.md"
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool is not installed (Debian's prometheus package provides it)"
)
EXPOSED = set(DEFAULT_HELP) | set(NODE_HELP)
HISTOGRAM_SUFFIX = re.compile(r"_(bucket|sum|count)$")
NODE = {"instance": "node1:8080", "job": "appliance"}
OTHER = {"instance": "node2:8080", "job": "appliance"}


def rules() -> dict[str, dict[str, Any]]:
    """The alerting rules of the file by alert name."""
    document = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    return {rule["alert"]: rule for group in document["groups"] for rule in group["rules"]}


def test_the_rules_name_only_metrics_the_server_exposes() -> None:
    named = {
        HISTOGRAM_SUFFIX.sub("", name)
        for rule in rules().values()
        for name in re.findall(r"\bappliance_[a-z0-9_]+", rule["expr"])
    }
    assert named
    assert named <= EXPOSED, f"not exposed by the server: {sorted(named - EXPOSED)}"


def test_every_metric_to_alert_on_is_in_the_admin_guide() -> None:
    guide = ADMIN_GUIDE.read_text(encoding="utf-8")
    missing = [name for name in sorted(EXPOSED) if f"`{name}" not in guide]
    assert not missing, f"docs/admin-guide.md does not list {missing}"
    assert "examples/appliance-alerts.yml" in guide


@needs_promtool
def test_promtool_finds_the_rules_valid() -> None:
    checked = subprocess.run(
        [str(PROMTOOL), "check", "rules", str(RULES)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(rules())} rules found" in checked.stdout


def series(name: str, labels: dict[str, str], values: str) -> dict[str, str]:
    """One input series of a promtool test, in its expanding notation ('1x5 0x10')."""
    pairs = ",".join(f'{key}="{value}"' for key, value in sorted(labels.items()))
    return {"series": f"{name}{{{pairs}}}", "values": values}


def fired(alert: str, labels: dict[str, str], value: str = "") -> dict[str, Any]:
    """An alert expected to fire with these labels, its annotations rendered as Prometheus does."""
    rule = rules()[alert]

    def render(template: str) -> str:
        text = re.sub(r"\{\{ \$labels\.(\w+) \}\}", lambda m: labels[m[1]], template)
        return re.sub(r"\{\{ \$value \| \w+ \}\}", value, text)

    annotations = {key: render(text) for key, text in rule["annotations"].items()}
    return {"exp_labels": labels | rule["labels"], "exp_annotations": annotations}


def at(eval_time: str, alert: str, *alerts: dict[str, Any]) -> dict[str, Any]:
    """What `alert` should be at `eval_time`: these firing alerts, or none."""
    return {"eval_time": eval_time, "alertname": alert, "exp_alerts": list(alerts)}


IMPORT_LAST = "appliance_import_last_timestamp_seconds"
REQUESTS = "appliance_http_requests_total"
REFUSED = NODE | {"result": "rejected", "reason": "signature"}
FAULT = NODE | {"result": "fault", "reason": "disk-full"}
AUDIT_TRAIL = NODE | {"check": "audit_trail"}

SCENARIOS: list[dict[str, Any]] = [
    {  # the server stops answering at the third minute
        "interval": "1m",
        "input_series": [series("up", NODE, "1 1 1 0x10")],
        "alert_rule_test": [
            at("4m", "ApplianceDown"),
            at("10m", "ApplianceDown", fired("ApplianceDown", NODE)),
        ],
    },
    {  # one worker of the node ready for 5 minutes, then not; its other worker and the other
        # node's stay ready
        "interval": "1m",
        "input_series": [
            series("appliance_worker_ready", NODE | {"worker": "7"}, "1x15"),
            series("appliance_worker_ready", NODE | {"worker": "8"}, "1x5 0x10"),
            series("appliance_worker_ready", OTHER | {"worker": "7"}, "1x15"),
        ],
        "alert_rule_test": [
            at("8m", "ApplianceNotReady"),
            at("12m", "ApplianceNotReady", fired("ApplianceNotReady", NODE)),
        ],
    },
    {  # data generated at time 0 on one node; the other's keeps up with the clock
        "interval": "2m",  # within the 5 minutes a sample counts for, so `for` holds
        "input_series": [
            series("appliance_data_generated_timestamp_seconds", NODE, "0x6000"),
            series("appliance_data_generated_timestamp_seconds", OTHER, "500000+120x6000"),
        ],
        "alert_rule_test": [
            at("6d", "ApplianceDataStale"),
            at("8d", "ApplianceDataStale", fired("ApplianceDataStale", NODE, "8d 0h 0m 0s")),
        ],
    },
    {  # a refusal and a fault at 10 minutes; an import that succeeded at 5 minutes
        "interval": "1m",
        "input_series": [
            series(IMPORT_LAST, REFUSED, "_x10 600x100"),
            series(IMPORT_LAST, FAULT, "_x10 600x100"),
            series(IMPORT_LAST, NODE | {"result": "imported", "reason": "none"}, "_x5 300x100"),
        ],
        "alert_rule_test": [
            at("8m", "ApplianceImportRefused"),
            at("20m", "ApplianceImportRefused", fired("ApplianceImportRefused", REFUSED)),
            at("80m", "ApplianceImportRefused"),
            at("8m", "ApplianceImportFault"),
            at("20m", "ApplianceImportFault", fired("ApplianceImportFault", FAULT)),
            at("80m", "ApplianceImportFault"),
        ],
    },
    {  # the counts file is damaged from the sixth minute on
        "interval": "1m",
        "input_series": [series("appliance_import_counts_readable", NODE, "1x5 0x30")],
        "alert_rule_test": [
            at("15m", "ApplianceImportCountsUnreadable"),
            at(
                "25m",
                "ApplianceImportCountsUnreadable",
                fired("ApplianceImportCountsUnreadable", NODE),
            ),
        ],
    },
    {  # the audit trail is damaged at the second minute; the current version stays intact
        "interval": "1m",
        "input_series": [
            series("appliance_store_integrity_ok", AUDIT_TRAIL, "1 1 0x20"),
            series("appliance_store_integrity_ok", NODE | {"check": "current_version"}, "1x22"),
        ],
        "alert_rule_test": [
            at("5m", "ApplianceStoreDamaged"),
            at("10m", "ApplianceStoreDamaged", fired("ApplianceStoreDamaged", AUDIT_TRAIL)),
        ],
    },
    {  # one node answers 10 errors to 100 answers a minute, the other 1 to 1000
        "interval": "1m",
        "input_series": [
            series(REQUESTS, NODE | {"status": "200", "route": "/api/v1/items"}, "0+100x30"),
            series(REQUESTS, NODE | {"status": "503", "route": "/api/v1/items"}, "0+10x30"),
            series(REQUESTS, OTHER | {"status": "200", "route": "/api/v1/items"}, "0+1000x30"),
            series(REQUESTS, OTHER | {"status": "500", "route": "/api/v1/items"}, "0+1x30"),
        ],
        "alert_rule_test": [
            at("5m", "ApplianceHigh5xxRate"),
            at("20m", "ApplianceHigh5xxRate", fired("ApplianceHigh5xxRate", NODE, "9.091%")),
        ],
    },
]


@needs_promtool
def test_each_alert_fires_when_and_only_when_it_should(tmp_path: Path) -> None:
    tested = {check["alertname"] for scenario in SCENARIOS for check in scenario["alert_rule_test"]}
    assert tested == set(rules()), "every alert of the file has a scenario"
    # JSON is YAML: promtool reads the scenarios as written here.
    document = {"rule_files": [str(RULES)], "evaluation_interval": "1m", "tests": SCENARIOS}
    test_file = tmp_path / "appliance-alerts.test.yml"
    test_file.write_text(json.dumps(document, indent=1), encoding="utf-8")
    tested_run = subprocess.run(
        [str(PROMTOOL), "test", "rules", str(test_file)],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert tested_run.returncode == 0, tested_run.stdout + tested_run.stderr
