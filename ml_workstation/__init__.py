"""Tools for the ML workstation: demo data, conforming tables, signed result packs, export.

Pipelines call `write_pack` (see docs/ml-workstation.md); people run `mlws`.
"""

from ml_workstation.api import write_pack
from ml_workstation.conform import Conversion, Problem, TablesDoNotConform
from ml_workstation.pack_builder import BuiltPack

__all__ = ["BuiltPack", "Conversion", "Problem", "TablesDoNotConform", "write_pack"]
