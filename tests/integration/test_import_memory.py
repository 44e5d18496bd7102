"""An import that does not fit in its memory budget says so in one line and exits 4, at any stage.

DuckDB raises its OutOfMemoryException wherever the budget runs out: loading a table, checking
keys, or building the answers. Each is a fault of the node (exit 4, recorded as a fault, nothing
refused or published), never a traceback. The limits below are too small for the small demo pack
at different stages; which stage each one reaches depends on DuckDB, so the test only asks that
both the table loads and the answer build are among them.
"""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import Signer, run

# From "fails loading the first table" to "fails building the answers" for the 30 x 40 demo.
LIMITS = ("2MB", "4MB", "8MB", "10MB", "11MB", "12MB")
ANSWERS_STARTED = "answers: "


def test_running_out_of_memory_at_any_stage_is_one_line_and_exit_4(
    tmp_path: Path, good_pack: Path, signer: Signer
) -> None:
    stages = []
    for limit in LIMITS:
        data = tmp_path / limit
        done = run(
            "appliance",
            "import",
            good_pack,
            "--data-dir",
            data,
            "--signers",
            signer.allowed_signers,
            "--import-memory",
            limit,
        )
        if done.returncode == 0:
            continue
        where = f"--import-memory {limit}:\n{done.stderr}"
        assert done.returncode == 4, where
        assert "Traceback" not in done.stderr, where
        errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
        assert len(errors) == 1, where
        assert "Out of Memory" in errors[0] and "raise --import-memory" in errors[0], where
        assert done.stderr.splitlines()[-1] == errors[0], where
        events = [json.loads(e) for e in (data / "history.jsonl").read_text().splitlines()]
        assert [(e["event"], e["reason"]) for e in events] == [("fault", "out-of-memory")], where
        assert list((data / "staging").iterdir()) == [], where
        assert list((data / "rejected").iterdir()) == [], where
        assert not (data / "current").exists(), where
        stages.append(ANSWERS_STARTED in done.stderr)
    assert False in stages, "no limit ran out of memory before the answer build"
    assert True in stages, "no limit ran out of memory in the answer build"
