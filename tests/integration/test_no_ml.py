"""The no-ML rule on the real server (issue 3, item 7).

After every route of the OpenAPI document has been called, no ML library may be importable from
the server's Python or loaded in any worker, and /health/ready must say so. The server's own
report is checked against what we see from outside: find_spec in the server's interpreter, and
the native libraries each server process has mapped (/proc/<pid>/maps).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import httpx

from appliance.audit.compliance import ML_MODULES
from tests.conftest import BIN, Signer, run
from tests.integration.live_server import LiveServer, live_server, wait_until_served

OLD, NEW = "v0001", "v0002"
# Not import names, but folders and file names that ML wheels put their native libraries in.
ML_LIBRARY_FOLDERS = ("scikit_learn.libs", "torch.libs", "xgboost.libs", "lightgbm.libs")
ML_LIBRARY_PREFIXES = tuple(f"lib{name}" for name in ML_MODULES) + tuple(
    f"lib_{name}" for name in ML_MODULES
)
FIND_SPECS = "import importlib.util, json, sys; print(json.dumps([n for n in sys.argv[1:] if importlib.util.find_spec(n) is not None]))"


def store_with(data_dir: Path, signer: Signer, *packs: Path) -> Path:
    """A data store with `packs` imported by the CLI."""
    for pack in packs:
        run("appliance", "import", "--data-dir", data_dir, "--signers", signer.allowed_signers,
            pack, check=True)  # fmt: skip
    return data_dir


def valid_values(server: LiveServer) -> dict[str, str | None]:
    """A valid value for every parameter name the API uses, taken from the served data.

    None for `against` while the store has no version but the served one (then it is left out).
    """
    served = server.get("/api/v1/data/current").json()["version"]
    kept = [v["version"] for v in server.get("/api/v1/data/versions").json()["versions"]]
    page = server.get("/api/v1/items", params={"limit": 2}).json()
    item = page["items"][0]
    dates = server.get(f"/api/v1/items/{item['item_id']}/timeseries").json()["dates"]
    return {
        "item_id": item["item_id"],
        "q": item["name"][:4],
        "category": item["category"],
        "site": item["site"],
        "sort": "item_id",
        "cursor": page["next"],  # made for sort=item_id
        "limit": "2",
        "from": dates[1],
        "to": dates[-2],
        "against": next((vid for vid in kept if vid != served), None),
        "status": "all",
        "file_name": "fact_forecast.csv",  # an export, which takes every filter
        "item": item["item_id"],
        "version": kept[0],
        "offset": "0",
    }


def call_every_get(server: LiveServer, schema: dict[str, Any]) -> dict[str, int]:
    """Each GET operation of the document with every parameter set: its status."""
    values = valid_values(server)
    statuses = {}
    for template, operations in schema["paths"].items():
        if "get" not in operations:
            continue
        names = [parameter["name"] for parameter in operations["get"].get("parameters", [])]
        unknown = set(names) - set(values)
        assert not unknown, f"GET {template}: give this test a valid value for {unknown}"
        path = template.format(**values)
        query = {
            name: values[name]
            for name in names
            if f"{{{name}}}" not in template and values[name] is not None
        }
        statuses[f"GET {template}"] = server.get(path, params=query).status_code
    return statuses


def call_every_post(
    server: LiveServer, schema: dict[str, Any], newer_pack: Path
) -> dict[str, list[int]]:
    """Each admin POST, harmlessly: refresh; upload a new pack; roll back to current, then back."""
    calls: dict[str, list[dict[str, Any]]] = {
        "/api/v1/data/refresh": [{}],
        "/api/v1/data/packs": [{"content": newer_pack.read_bytes()}],
        "/api/v1/data/rollback": [{"json": {"version": NEW}}, {"json": {"version": OLD}}],
    }
    posts = {template for template, operations in schema["paths"].items() if "post" in operations}
    assert posts == set(calls), f"give this test a harmless call of {posts ^ set(calls)}"
    return {
        f"POST {template}": [
            server.post(template, headers=server.admin(), **kwargs).status_code
            for kwargs in requests
        ]
        for template, requests in calls.items()
    }


def readiness_of_every_worker(server: LiveServer) -> dict[int, httpx.Response]:
    """/health/ready of each worker, asked on fresh connections until every worker answered."""
    answers: dict[int, httpx.Response] = {}
    for _ in range(200):
        answer = server.get("/health/ready")
        answers.setdefault(answer.json()["worker"], answer)
        if len(answers) == server.workers:
            break
    assert len(answers) == server.workers, f"reached workers {sorted(answers)} only"
    return answers


def server_interpreter() -> str:
    """The Python that runs `appliance serve`: the one named by the script's #! line."""
    first = (BIN / "appliance").read_text().splitlines()[0]
    assert first.startswith("#!"), first
    return first.removeprefix("#!").strip()


def mapped_files(pid: int) -> set[str]:
    """Every file mapped into process `pid`."""
    lines = Path(f"/proc/{pid}/maps").read_text().splitlines()
    return {fields[5] for line in lines if len(fields := line.split(maxsplit=5)) == 6}


def is_ml_library(path: str) -> bool:
    """Whether a mapped file belongs to an ML package or to the native libraries it ships.

    Native code shows up in /proc/<pid>/maps once its module is imported; pure-Python ML packages
    do not, but they cannot be loaded at all when find_spec finds none of them.
    """
    return any(
        part in ML_MODULES or part in ML_LIBRARY_FOLDERS or part.startswith(ML_LIBRARY_PREFIXES)
        for part in Path(path.lower()).parts
    )


def test_the_mapping_check_recognises_ml_libraries() -> None:
    site = "/srv/venv/lib/python3.11/site-packages"
    assert is_ml_library(f"{site}/sklearn/utils/_openmp_helpers.cpython-311-x86_64-linux-gnu.so")
    assert is_ml_library(f"{site}/scikit_learn.libs/libgomp-a34b3233.so.1.0.0")
    assert is_ml_library(f"{site}/torch/lib/libtorch_cpu.so")
    assert is_ml_library(f"{site}/lightgbm/lib/lib_lightgbm.so")
    assert not is_ml_library(f"{site}/duckdb/duckdb.cpython-311-x86_64-linux-gnu.so")
    assert not is_ml_library(f"{site}/pyarrow/libarrow.so.1900")


def test_no_ml_library_is_importable_or_loaded_after_every_route_was_called(
    tmp_path: Path, signer: Signer, good_pack: Path, newer_pack: Path
) -> None:
    data_dir = store_with(tmp_path / "data", signer, good_pack)
    with live_server(data_dir, signer.allowed_signers, workers=2) as server:
        schema = server.get("/schema/openapi.json").json()
        methods = {method for operations in schema["paths"].values() for method in operations}
        assert methods == {"get", "post"}, f"give this test a call of every {methods} operation"
        gets = call_every_get(server, schema)
        assert gets and set(gets.values()) == {200}, gets
        posts = call_every_post(server, schema, newer_pack)
        assert posts == {
            "POST /api/v1/data/refresh": [200],
            "POST /api/v1/data/packs": [201],  # a whole import ran inside a worker
            "POST /api/v1/data/rollback": [409, 200],  # NEW is current already; back to OLD
        }
        wait_until_served(server, OLD)  # else a worker still serving NEW is asked against=NEW
        gets_again = call_every_get(server, schema)
        assert set(gets_again.values()) == {200}, gets_again

        readiness = readiness_of_every_worker(server)
        for pid, answer in readiness.items():
            health = answer.json()
            assert answer.status_code == 200, (pid, health)
            assert health["ml_importable"] == [], (pid, health)
            assert health["ml_loaded"] == [], (pid, health)
            no_ml = next(check for check in health["checks"] if check["name"] == "no_ml")
            assert no_ml["ok"], (pid, no_ml)

        # From outside, without trusting the server's report.
        done = subprocess.run(
            [server_interpreter(), "-c", FIND_SPECS, *ML_MODULES],
            capture_output=True,
            text=True,
            check=True,
        )
        assert json.loads(done.stdout) == []
        for pid in readiness:
            # The check reads the right processes: the workers' own native code is mapped.
            assert any("duckdb" in path for path in mapped_files(pid)), f"{pid} maps no duckdb"
        for pid in [server.process.pid, *readiness]:
            assert {path for path in mapped_files(pid) if is_ml_library(path)} == set(), pid


def test_readiness_fails_when_an_ml_library_is_importable(
    tmp_path: Path, signer: Signer, good_pack: Path
) -> None:
    fake = tmp_path / "site"
    (fake / "sklearn").mkdir(parents=True)
    (fake / "sklearn" / "__init__.py").write_text("")
    data_dir = store_with(tmp_path / "data", signer, good_pack)
    with live_server(
        data_dir, signer.allowed_signers, workers=2, env={"PYTHONPATH": str(fake)}
    ) as server:
        for pid, answer in readiness_of_every_worker(server).items():
            health = answer.json()
            assert answer.status_code == 503, (pid, health)
            assert health["ml_importable"] == ["sklearn"], (pid, health)
            assert health["ml_loaded"] == [], (pid, health)
            checks = {check["name"]: check for check in health["checks"]}
            assert not checks["no_ml"]["ok"]
            assert "sklearn" in checks["no_ml"]["detail"]
            assert checks["data_version"]["ok"], "only the ML check fails"
