"""docs/ml-workstation.md's Python example, extracted and run as a Prophet user would paste it
(without Prophet: its stand-in runs), and the pack it writes imported by the node's importer."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from tests.conftest import run, versions_json

REPO = Path(__file__).resolve().parents[2]
GUIDE = REPO / "docs" / "ml-workstation.md"
MARKER = "<!-- example: write_pack -->"


def example_code() -> str:
    """The Python block right after the example's marker."""
    after = GUIDE.read_text(encoding="utf-8").split(MARKER, 1)[1]
    match = re.match(r"\s*```python\n(.*?)\n```\n", after, re.DOTALL)
    assert match, "no ```python block after the marker"
    return match.group(1)


def printed_lines() -> list[str]:
    """The lines the guide says the example prints (the block after 'What it prints')."""
    after = GUIDE.read_text(encoding="utf-8").split("What it prints, in part:", 1)[1]
    match = re.match(r"\s*```\n(.*?)\n```\n", after, re.DOTALL)
    assert match
    return match.group(1).splitlines()


def test_the_guide_example_writes_a_pack_the_node_imports(tmp_path: Path) -> None:
    code = example_code()
    assert "from prophet import Prophet" in code
    work = tmp_path / "pipeline"
    work.mkdir()
    keygen = run(
        "mlws", "keygen", "--out", work / "signing-key", "--principal", "ml@ws", check=True
    )
    (tmp_path / "allowed_signers").write_text(keygen.stdout)
    (work / "forecast_pipeline.py").write_text(code, encoding="utf-8")
    done = subprocess.run(
        [sys.executable, "forecast_pipeline.py"],
        cwd=work,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    output = done.stdout.splitlines()
    for line in printed_lines():
        if line.startswith("wrote"):
            assert any(o.startswith("wrote forecasts.pack (pack_id ") for o in output), output
        else:
            assert line in output, output
    pack = work / "forecasts.pack"
    data = tmp_path / "data"
    imported = run(
        "appliance", "import", pack, "--data-dir", data, "--signers", tmp_path / "allowed_signers"
    )
    assert imported.returncode == 0, imported.stderr
    (version,) = json.loads(versions_json(data))["versions"]
    assert (version["source"], version["model_version"]) == ("prophet", "prophet-1.1")
