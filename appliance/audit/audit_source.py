"""The no-ML rule checked on the source tree: shipped imports, declared dependencies, served routes.

`appliance.audit.compliance` checks a running node; this module checks a checkout before anything is built,
so an ML import, an ML distribution in a lock or an inference endpoint is refused in review and CI.
Only the code that ships to the node is scanned: `ml_workstation/` may use ML, tests never ship.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import tomllib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from appliance.audit.compliance import ML_MODULES
from appliance.audit.distribution_names import normalise_name, requirement_name
from appliance.errors import ConfigError

# PyPI names (PEP 503-normalised) of ML frameworks, model runtimes and forecasting libraries.
ML_DISTRIBUTIONS = (
    "catboost",
    "darts",
    "fbprophet",
    "jax",
    "jaxlib",
    "keras",
    "lightgbm",
    "lightning",
    "mlflow",
    "mlflow-skinny",
    "neuralprophet",
    "onnx",
    "onnxruntime",
    "onnxruntime-gpu",
    "pmdarima",
    "prophet",
    "pytorch-lightning",
    "scikit-learn",
    "sklearn",
    "sktime",
    "statsmodels",
    "tensorflow",
    "tensorflow-cpu",
    "tensorflow-gpu",
    "tensorflow-intel",
    "tf-keras",
    "torch",
    "torchaudio",
    "torchvision",
    "transformers",
    "triton",
    "u8darts",
    "xgboost",
)
# CUDA runtime wheels (nvidia-cudnn-cu12, nvidia-cublas-cu12, ...) come only with GPU ML stacks.
ML_DISTRIBUTION_PREFIXES = ("nvidia-",)
# A route segment equal to or starting with one of these serves training or live inference.
ML_ROUTE_WORDS = (
    "predict",
    "train",
    "retrain",
    "inference",
    "infer",
    "features",
    "preprocess",
    "model",
)
# The seeds' live-inference endpoint; only the exact singular: `/forecasts/summary` reads precomputed results.
ML_ROUTE_SEGMENTS = ("forecast",)

# The code the node runs (appliance/, server/), and the builder that makes its image and wheel
# cache (bundle/, build_bundle.py): an ML import in the builder could put ML into the image.
# Relative to the source root; absent entries are skipped.
SHIPPED_CODE = ("appliance", "server", "bundle", "build_bundle.py")
DYNAMIC_IMPORTS = ("import_module", "__import__")
ROUTE_TIMEOUT = 120
# Run in a child Python with the audited tree first on sys.path, so the routes are that tree's own.
_ROUTES_SCRIPT = """\
import json
from appliance.settings import load_server_settings
from server.app import create_app
print(json.dumps(sorted({route.path for route in create_app(load_server_settings({})).routes})))
"""

# import, dependency and route are found in a source tree; a bundle's audit (bundle_audit.py) adds
# the rest: an image over the size limit, an ML distribution or package, a GPU library, an ML wheel.
Kind = Literal["import", "dependency", "route", "size", "distribution", "module", "gpu", "wheel"]


@dataclass(frozen=True)
class Finding:
    """One breach of the no-ML rule: what kind, where (file:line, image:path or route), why, in a line."""

    kind: Kind
    where: str
    detail: str

    def as_json(self) -> dict[str, str]:
        """The finding as a JSON object."""
        return {"kind": self.kind, "where": self.where, "detail": self.detail}


@dataclass(frozen=True)
class SourceAudit:
    """Every finding in a source tree, and how much was checked (files, dependencies, routes)."""

    findings: list[Finding]
    checked: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when nothing breaks the no-ML rule."""
        return not self.findings

    def as_json(self) -> dict[str, Any]:
        """The audit as a JSON object."""
        return {
            "ok": self.ok,
            "checked": dict(self.checked),
            "findings": [finding.as_json() for finding in self.findings],
        }


def is_ml_distribution(name: str) -> bool:
    """True for an ML framework, model runtime or CUDA wheel."""
    normal = normalise_name(name)
    return normal in ML_DISTRIBUTIONS or normal.startswith(ML_DISTRIBUTION_PREFIXES)


def is_ml_route(path: str) -> bool:
    """True when a route path names training, inference, features or a model in any segment."""
    for segment in path.lower().split("/"):
        if not segment or segment.startswith("{"):
            continue
        if segment in ML_ROUTE_SEGMENTS or segment.startswith(ML_ROUTE_WORDS):
            return True
    return False


def shipped_python_files(root: Path) -> list[Path]:
    """Every .py file of the code the node runs and of its builder, in a stable order."""
    files: list[Path] = []
    for name in SHIPPED_CODE:
        entry = root / name
        if entry.is_dir():
            files.extend(sorted(entry.rglob("*.py")))
        elif entry.is_file() and entry.suffix == ".py":
            files.append(entry)
    return files


def _imported_names(tree: ast.AST) -> Iterator[tuple[str, int]]:
    """(module, line) for every absolute import, and every dynamic import of a literal name."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from ((alias.name, node.lineno) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module, node.lineno
        elif isinstance(node, ast.Call) and node.args:
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
            first = node.args[0]
            if (
                name in DYNAMIC_IMPORTS
                and isinstance(first, ast.Constant)
                and isinstance(first.value, str)
            ):
                yield first.value, node.lineno


def audit_imports(root: Path, files: Sequence[Path]) -> list[Finding]:
    """ML libraries imported by shipped code, and files that cannot be parsed (so cannot be checked)."""
    findings: list[Finding] = []
    for path in files:
        where = path.relative_to(root).as_posix()
        try:
            tree = ast.parse(path.read_bytes(), filename=where)
        except (SyntaxError, ValueError) as exc:
            line = getattr(exc, "lineno", None) or 0
            reason = getattr(exc, "msg", str(exc))
            findings.append(
                Finding(
                    "import", f"{where}:{line}", f"cannot parse, so imports unchecked: {reason}"
                )
            )
            continue
        for module, line in _imported_names(tree):
            if module.split(".")[0] in ML_MODULES:
                findings.append(
                    Finding("import", f"{where}:{line}", f"imports ML library {module!r}")
                )
    return findings


def _line_of(text: str, needle: str) -> int:
    """The 1-based line where needle first appears, 0 if nowhere."""
    return next((n for n, line in enumerate(text.splitlines(), 1) if needle in line), 0)


def project_dependencies(pyproject: Path) -> list[tuple[str, int]]:
    """(requirement, line) for `[project] dependencies`; optional extras never reach the node."""
    text = pyproject.read_text(encoding="utf-8")
    try:
        project = tomllib.loads(text).get("project", {})
    except tomllib.TOMLDecodeError as exc:
        msg = f"{pyproject}: not valid TOML: {exc}"
        raise ConfigError(msg) from exc
    requirements = project.get("dependencies", [])
    return [(str(req), _line_of(text, f'"{req}"')) for req in requirements]


def locked_requirements(lock: Path) -> list[tuple[str, int]]:
    """(requirement, line) for each requirement line of a pip/uv lock or requirements file."""
    found: list[tuple[str, int]] = []
    for number, raw in enumerate(lock.read_text(encoding="utf-8").splitlines(), 1):
        line = raw.split(" #", 1)[0].strip().removesuffix("\\").strip()
        if not line or raw[0].isspace() or line.startswith(("#", "-")):
            continue  # hashes and "via" comments are indented; options start with "-"
        found.append((line, number))
    return found


def requirement_files(root: Path) -> list[Path]:
    """The requirements files and locks at the root and in requirements/."""
    found = sorted(root.glob("requirements*.txt"))
    folder = root / "requirements"
    if folder.is_dir():
        found += sorted(
            p for p in folder.iterdir() if p.suffix in {".lock", ".txt"} and p.is_file()
        )
    return found


def audit_dependencies(root: Path) -> tuple[list[Finding], int]:
    """ML distributions declared for the project or pinned in a lock, and how many entries were read."""
    entries: list[tuple[str, str, int]] = []
    pyproject = root / "pyproject.toml"
    if pyproject.is_file():
        entries += [("pyproject.toml", req, n) for req, n in project_dependencies(pyproject)]
    for lock in requirement_files(root):
        where = lock.relative_to(root).as_posix()
        entries += [(where, req, n) for req, n in locked_requirements(lock)]
    findings: list[Finding] = []
    for where, requirement, line in entries:
        name = requirement_name(requirement)
        if name and is_ml_distribution(name):
            findings.append(
                Finding("dependency", f"{where}:{line}", f"ML distribution {requirement!r}")
            )
    return findings, len(entries)


def served_routes(root: Path, *, isolated: bool = False) -> list[str]:
    """Every route path of the tree's server app (schema-hidden routes too), built but not started.

    `isolated`: import only from `root` and the standard library (`python -S`, no site-packages),
    for a tree that carries its own dependencies, such as an image's site-packages.
    """
    extra = [] if isolated else list(filter(None, [os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root), *extra])}
    flags = ["-S"] if isolated else []
    result = subprocess.run(
        [sys.executable, *flags, "-c", _ROUTES_SCRIPT],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=ROUTE_TIMEOUT,
        check=False,
    )
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or ["no output"])[-1]
        msg = f"cannot build the server app of {root} to list its routes: {last}"
        raise ConfigError(msg)
    paths: list[str] = json.loads(result.stdout)
    return paths


def audit_routes(routes: Sequence[str]) -> list[Finding]:
    """Routes that would train, infer, compute features or expose a model."""
    return [
        Finding("route", path, "route names training, inference, features or a model")
        for path in routes
        if is_ml_route(path)
    ]


def audit_source(root: Path, *, routes: Sequence[str] | None = None) -> SourceAudit:
    """Check a source tree against the no-ML rule; routes default to those of its server app.

    Raises ConfigError when root is not a directory or its pyproject.toml is not TOML.
    """
    if not root.is_dir():
        msg = f"{root}: not a directory"
        raise ConfigError(msg)
    files = shipped_python_files(root)
    findings = audit_imports(root, files)
    dependency_findings, dependencies = audit_dependencies(root)
    findings += dependency_findings
    if routes is None:
        try:
            routes = served_routes(root) if (root / "server" / "app.py").is_file() else []
        except (ConfigError, subprocess.TimeoutExpired) as exc:
            routes = []  # an app that cannot be built cannot be checked: that is itself a finding
            findings.append(Finding("route", "server/app.py", str(exc)))
    findings += audit_routes(routes)
    checked = {"files": len(files), "dependencies": dependencies, "routes": len(routes)}
    return SourceAudit(findings, checked)
