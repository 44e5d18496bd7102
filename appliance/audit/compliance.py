"""The no-ML rule of the node: no ML library may be importable or imported where the server runs."""

from __future__ import annotations

import importlib.util
import sys
from dataclasses import dataclass

# Import names of ML frameworks, model runtimes and feature pipelines (the seeds' list and kin).
ML_MODULES = (
    "torch",
    "tensorflow",
    "keras",
    "sklearn",
    "xgboost",
    "lightgbm",
    "catboost",
    "prophet",
    "pmdarima",
    "statsmodels",
    "mlflow",
    "jax",
    "onnxruntime",
    "transformers",
    "sktime",
    "darts",
)


@dataclass(frozen=True)
class ComplianceReport:
    """What the no-ML check found in this process and its environment."""

    importable: tuple[str, ...]
    loaded: tuple[str, ...]

    @property
    def ok(self) -> bool:
        """True when no ML library can be imported and none is loaded."""
        return not self.importable and not self.loaded


def importable_ml_modules() -> tuple[str, ...]:
    """ML libraries this Python could import (found on sys.path, without importing them)."""
    return tuple(name for name in ML_MODULES if importlib.util.find_spec(name) is not None)


def loaded_ml_modules() -> tuple[str, ...]:
    """ML libraries already imported into this process."""
    return tuple(name for name in ML_MODULES if name in sys.modules)


def check_compliance() -> ComplianceReport:
    """Both checks, now."""
    return ComplianceReport(importable_ml_modules(), loaded_ml_modules())
