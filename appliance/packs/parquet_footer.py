"""What a Parquet file's footer says about its columns and rows, read with DuckDB (no pyarrow).

DuckDB reads some distinct Parquet types as one type of its own: a timestamp in milliseconds and
one in microseconds are both TIMESTAMP WITH TIME ZONE, an enum and a string are both VARCHAR. So
each column carries, beside its DuckDB type, the Parquet physical and converted types that tell
them apart. The Arrow schema that pyarrow also stores in the file is not read: it is a hint for
Arrow readers, and neither it nor its `large_string` or `tz=+00:00` changes how DuckDB reads the
data.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from appliance.errors import UnreadableParquet

if TYPE_CHECKING:
    import duckdb


@dataclass(frozen=True)
class FileColumn:
    """One top-level column of a Parquet file."""

    name: str
    duckdb_type: str
    physical_type: str | None  # None for a nested column (a Parquet group)
    converted_type: str | None

    def describe(self) -> str:
        """The type for a message: DuckDB's name for it, then what the Parquet footer says."""
        parquet = " ".join(t for t in (self.physical_type, self.converted_type) if t)
        return f"{self.duckdb_type} (Parquet {parquet})" if parquet else self.duckdb_type


@dataclass(frozen=True)
class ParquetFooter:
    """A Parquet file's top-level columns, in file order, and its number of rows."""

    columns: tuple[FileColumn, ...]
    rows: int


@contextmanager
def footer_reader() -> Iterator[Callable[[Path], ParquetFooter]]:
    """A `read_footer` for many files: one in-memory DuckDB connection, open in the with block."""
    import duckdb

    with duckdb.connect() as con:
        yield partial(_read_footer, con)


def read_footer(path: Path) -> ParquetFooter:
    """Read the footer of the Parquet file at `path`; raise UnreadableParquet if there is none."""
    with footer_reader() as read:
        return read(path)


def _read_footer(con: duckdb.DuckDBPyConnection, path: Path) -> ParquetFooter:
    """Read the footer of the Parquet file at `path` through `con`."""
    import duckdb

    try:
        types = con.execute("DESCRIBE SELECT * FROM read_parquet(?)", [str(path)]).fetchall()
        elements = con.execute(
            "SELECT name, type, converted_type, num_children FROM parquet_schema(?)", [str(path)]
        ).fetchall()
        (rows,) = con.execute(
            "SELECT num_rows FROM parquet_file_metadata(?)", [str(path)]
        ).fetchall()
    except duckdb.Error as exc:
        # DuckDB's message names the whole path and may add the query on more lines.
        first_line = str(exc).splitlines()[0].replace(str(path), path.name)
        raise UnreadableParquet(first_line) from exc
    top_level = _top_level(elements)
    columns = tuple(
        FileColumn(name, duckdb_type, physical, converted)
        for (name, physical, converted), (_, duckdb_type, *_) in zip(top_level, types, strict=True)
    )
    return ParquetFooter(columns, rows[0])


def _top_level(
    elements: list[tuple[str, str | None, str | None, int | None]],
) -> list[tuple[str, str | None, str | None]]:
    """The root's children among the schema elements (depth first, the root first)."""
    top_level = []
    inside = 0  # elements still to come that belong to the last top-level column
    for name, physical, converted, children in elements[1:]:
        if inside:
            inside -= 1
        else:
            top_level.append((name, physical, converted))
        inside += children or 0
    return top_level
