"""The demo tables rewritten as ML pipelines write them: pandas (pyarrow, fastparquet), polars,
DuckDB, CSV. Test helpers only: pandas and polars are dev dependencies, never the node's."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import duckdb

from appliance.packs.pack_layout import METADATA_COLUMNS

TABLES = ("dim_item", "fact_forecast", "fact_inventory", "fact_metrics")
DATE_COLUMNS = {"fact_forecast": "date", "fact_inventory": "date"}


def as_pandas_writes(demo_tables: Path, name: str) -> Any:
    """Table `name` as a pandas pipeline holds it before writing.

    Timestamps in nanoseconds, dates as timestamps at midnight, int64 integers, the category a
    pandas categorical, rows in another order (so the index is no plain range) and columns in
    another order: every column nullable, as pandas declares them.
    """
    import pandas as pd  # type: ignore[import-untyped]  # no stubs; a dev dependency only
    import pyarrow.parquet as pq

    frame = pq.read_table(demo_tables / f"{name}.parquet").to_pandas()
    frame["generated_at"] = frame["generated_at"].astype("datetime64[ns, UTC]")
    if name in DATE_COLUMNS:
        column = DATE_COLUMNS[name]
        frame[column] = pd.to_datetime(frame[column]).astype("datetime64[ns]")
    for column in frame.columns:
        if str(frame[column].dtype) == "int32":
            frame[column] = frame[column].astype("int64")
    if "category" in frame.columns:
        frame["category"] = frame["category"].astype("category")
    frame = frame.sample(frac=1.0, random_state=3)
    return frame[list(reversed(frame.columns))]


def as_polars_writes(demo_tables: Path, name: str) -> Any:
    """Table `name` as a polars pipeline holds it: Datetime for dates, Int64, Categorical."""
    import polars as pl

    frame = pl.read_parquet(demo_tables / f"{name}.parquet")
    if name in DATE_COLUMNS:
        frame = frame.with_columns(pl.col(DATE_COLUMNS[name]).cast(pl.Datetime("ns")))
    frame = frame.with_columns(pl.col("generated_at").cast(pl.Datetime("ns", "UTC")))
    if name == "dim_item":
        frame = frame.with_columns(
            pl.col("lead_time_days").cast(pl.Int64), pl.col("category").cast(pl.Categorical)
        )
    return frame.sample(fraction=1.0, shuffle=True, seed=5)


def write_pandas(demo_tables: Path, out: Path, engine: str = "pyarrow") -> Path:
    out.mkdir(parents=True, exist_ok=True)
    for name in TABLES:
        as_pandas_writes(demo_tables, name).to_parquet(out / f"{name}.parquet", engine=engine)
    return out


def write_polars(demo_tables: Path, out: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    for name in TABLES:
        as_polars_writes(demo_tables, name).write_parquet(out / f"{name}.parquet")
    return out


def write_csv(demo_tables: Path, out: Path) -> Path:
    """CSV with a header, as pandas' to_csv writes it (ISO dates, +00:00 offsets)."""
    out.mkdir(parents=True, exist_ok=True)
    for name in TABLES:
        as_pandas_writes(demo_tables, name).to_csv(out / f"{name}.csv", index=False)
    return out


def write_duckdb_parquet(demo_tables: Path, out: Path) -> Path:
    """Parquet as a DuckDB user writes it: BIGINT, TIMESTAMP_NS dates, no metadata in one table."""
    out.mkdir(parents=True, exist_ok=True)
    for name in TABLES:
        source = demo_tables / f"{name}.parquet"
        replace = ["CAST(generated_at AS TIMESTAMPTZ_NS) AS generated_at"]
        if name in DATE_COLUMNS:
            replace.append("CAST(date AS TIMESTAMP_NS) AS date")
        if name == "dim_item":
            replace.append("CAST(lead_time_days AS BIGINT) AS lead_time_days")
        select = f"SELECT * REPLACE ({', '.join(replace)}) FROM read_parquet('{source}')"
        if name == "fact_metrics":
            select = (
                f"SELECT * EXCLUDE ({', '.join(METADATA_COLUMNS)}) FROM read_parquet('{source}')"
            )
        duckdb.sql(f"COPY ({select}) TO '{out / source.name}' (FORMAT parquet)")
    return out


def write_duckdb_database(demo_tables: Path, database: Path) -> Path:
    """One DuckDB database file holding the tables by their registry names, plus another table."""
    with duckdb.connect(str(database)) as con:
        for name in TABLES:
            source = demo_tables / f"{name}.parquet"
            con.execute(
                f"CREATE TABLE {name} AS SELECT * REPLACE (CAST(generated_at AS TIMESTAMPTZ_NS) "
                f"AS generated_at) FROM read_parquet('{source}') ORDER BY random()"
            )
        con.execute("CREATE TABLE scratch_features AS SELECT 1 AS x")
    return database


def copy_demo(demo_tables: Path, out: Path) -> Path:
    return Path(shutil.copytree(demo_tables, out))
