"""Exports of the gold tables (issue 17, part 1) from the real server (`appliance serve`, Granian).

The main store holds two versions: v0001, good_pack's tables with hostile values put in
(text with quotes, commas, CRLF and non-ASCII; the doubles hardest to write back exactly), and
v0002, newer_pack, served. Exports are compared with the tables read straight from each
version's database: through Python's csv module cell by cell, through DuckDB's CSV reader and
through its Parquet reader. A second store, big enough that an export takes many chunks, is
used for what happens while one streams: a version switch, a client that goes away, the caps,
a database that fails part-way, and a full disk.
"""

from __future__ import annotations

import csv
import io
import json
import math
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import duckdb
import httpx
import msgspec
import pytest

from appliance.data.run_layout import RunFolders
from appliance.data.store import DataStore
from appliance.data.version_integrity import write_check_stamp
from appliance.packs.schema_registry import load_registry
from ml_workstation.demo import DemoSpec, generate_demo
from server.schemas import DataVersions, ErrorBody
from tests.conftest import Signer, import_into, make_pack, run
from tests.integration.live_server import LiveServer, live_server, wait_until_served
from tests.packs import ForgedPack

OLDER, NEWER = "v0001", "v0002"
DATASET = "demo-telecom-spares"
TABLES = tuple(load_registry().tables)
DATED = ("fact_forecast", "fact_inventory")
EXPORT = "/api/v1/export"
HOSTILE_NAMES = {
    "IT-0000001": 'Cabo "óptico", 12 fibras\r\nlinha 2',
    "IT-0000002": '=HYPERLINK("x")',
    "IT-0000003": " leading space, trailing ",
}
HARD_DOUBLES = {
    "IT-0000001": 5e-324,
    "IT-0000002": 1.7976931348623157e308,
    "IT-0000003": 0.1 + 0.2,
    "IT-0000004": 123456789.12345679,
    "IT-0000005": 1e-7,
    "IT-0000006": 9007199254740993.0,
    "IT-0000007": 0.0,
    "IT-0000008": None,
}
BIG_ITEMS, BIG_DAYS = 2500, 365  # 912,500 forecast rows in 8 row groups: 100 MB of CSV


# --- stores and servers --------------------------------------------------------------------------


def sql_text(text: str) -> str:
    """A DuckDB string literal for test data."""
    return "'" + text.replace("'", "''") + "'"


@pytest.fixture(scope="module")
def hostile_pack(tmp_path_factory: pytest.TempPathFactory, good_pack: Path, signer: Signer) -> Path:
    """good_pack with hostile item names and the hardest doubles as unit costs (re-signed)."""
    folder = tmp_path_factory.mktemp("hostile")
    parts = ForgedPack.read(good_pack)
    parts.manifest["pack_id"] = str(uuid.uuid4())
    names = " ".join(f"WHEN {sql_text(i)} THEN {sql_text(n)}" for i, n in HOSTILE_NAMES.items())
    costs = " ".join(
        f"WHEN {sql_text(i)} THEN {'NULL' if v is None else repr(v)}::DOUBLE"
        for i, v in HARD_DOUBLES.items()
    )
    parts.edit_table(
        "dim_item",
        f"SELECT * REPLACE (CASE item_id {names} ELSE name END AS name, "
        f"CASE item_id {costs} ELSE unit_cost END AS unit_cost) FROM t",
        folder,
    )
    return parts.write(folder / "pack_with_hostile_values.pack", signer.key)


@pytest.fixture(scope="module")
def store(
    tmp_path_factory: pytest.TempPathFactory, hostile_pack: Path, newer_pack: Path, signer: Signer
) -> Path:
    """v0001 (hostile values, kept) and v0002 (newer_pack, served)."""
    data_dir = tmp_path_factory.mktemp("exports") / "data"
    import_into(data_dir, hostile_pack, signer)
    import_into(data_dir, newer_pack, signer)
    return data_dir


@pytest.fixture(scope="module")
def server(store: Path, signer: Signer) -> Iterator[LiveServer]:
    with live_server(store, signer.allowed_signers) as started:
        yield started


@pytest.fixture(scope="module")
def big_pack(tmp_path_factory: pytest.TempPathFactory, signer: Signer) -> Path:
    folder = tmp_path_factory.mktemp("big")
    spec = DemoSpec(
        items=BIG_ITEMS, days=BIG_DAYS, seed=5, generated_at=datetime(2026, 11, 1, tzinfo=UTC)
    )
    generate_demo(folder / "tables", spec)
    return make_pack(folder / "tables", signer, folder / "big.pack")


def big_store(folder: Path, big_pack: Path, newer_pack: Path, signer: Signer) -> Path:
    """big_pack as v0001, served again after newer_pack was imported as v0002."""
    data_dir = folder / "data"
    import_into(data_dir, big_pack, signer)
    import_into(data_dir, newer_pack, signer)
    run("appliance", "rollback", OLDER, "--data-dir", data_dir, check=True)
    return data_dir


# --- helpers -------------------------------------------------------------------------------------


def table_of(
    data_dir: Path, vid: str, table: str, where: str = "", params: Any = None
) -> tuple[list[str], list[str], list[tuple[Any, ...]]]:
    """(columns, types, rows) of a table as the version holds it, in its sort order.

    Timestamps come as microseconds since the epoch (this venv has no pytz for DuckDB's tz-aware
    values), so the test compares instants, not spellings.
    """
    con = duckdb.connect(str(data_dir / "versions" / vid / "data.duckdb"), read_only=True)
    try:
        described = con.execute(f"DESCRIBE {table}").fetchall()
        names = [row[0] for row in described]
        kinds = [str(row[1]) for row in described]
        select = ", ".join(
            f'epoch_us("{n}")' if k.startswith("TIMESTAMP") else f'"{n}"'
            for n, k in zip(names, kinds, strict=True)
        )
        order = ", ".join(f'"{c}"' for c in load_registry().tables[table].sort_key)
        rows = con.execute(
            f"SELECT {select} FROM {table} {where} ORDER BY {order}", params or []
        ).fetchall()
    finally:
        con.close()
    return names, kinds, rows


def error_of(response: httpx.Response, status: int, reason: str) -> str:
    """The one-line message of an error answer with this status and reason."""
    assert response.status_code == status, response.text
    detail = msgspec.json.decode(response.content, type=ErrorBody).error
    assert detail.status == status and detail.reason == reason, detail
    assert detail.message.strip() and "\n" not in detail.message
    assert response.headers["cache-control"] == "no-store"
    return detail.message


def cell_matches(text: str, kind: str, value: Any) -> bool:
    """Whether a CSV field reads back as exactly the stored value."""
    if value is None:
        return text == ""
    if kind == "DOUBLE":
        back = float(text)
        return back == value and math.copysign(1, back) == math.copysign(1, value)
    if kind in ("INTEGER", "BIGINT"):
        return int(text) == value and text == str(value)
    if kind == "DATE":
        return bool(text == value.isoformat())
    if kind.startswith("TIMESTAMP"):
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
        return text.endswith("Z") and round(moment.timestamp() * 1_000_000) == value
    return bool(text == value)


def assert_csv_is_table(
    body: bytes, columns: list[str], kinds: list[str], rows: list[tuple[Any, ...]]
) -> None:
    """RFC 4180 (CRLF records, a header row), and every cell equal to the table's, in order."""
    text = body.decode("utf-8")  # strict: not UTF-8 would raise
    assert not text.startswith("\ufeff")
    assert text.endswith("\r\n")
    records = list(csv.reader(io.StringIO(text, newline=""), strict=True))
    assert records[0] == columns
    assert len(records) - 1 == len(rows)
    for number, (record, row) in enumerate(zip(records[1:], rows, strict=True), start=1):
        assert len(record) == len(columns), number
        for text_value, kind, value, column in zip(record, kinds, row, columns, strict=True):
            assert cell_matches(text_value, kind, value), (number, column, text_value, value)
    # Every record ends in CRLF: the only bare LFs are inside quoted fields.
    assert text.count("\r\n") >= len(records)
    assert "\n" not in text.replace("\r\n", "")


def duckdb_reads_back(
    path: Path, fmt: str, columns: list[str], kinds: list[str]
) -> list[tuple[Any, ...]]:
    """The export read by DuckDB (CSV with the table's own types), timestamps as epoch µs."""
    con = duckdb.connect()
    try:
        con.execute("SET TimeZone = 'UTC'")
        if fmt == "csv":
            types = (
                "{" + ", ".join(f"'{c}': '{k}'" for c, k in zip(columns, kinds, strict=True)) + "}"
            )
            source = (
                f"read_csv('{path}', header = true, auto_detect = false, delim = ',', "
                f"quote = '\"', escape = '\"', columns = {types})"
            )
        else:
            source = f"read_parquet('{path}')"
        described = con.execute(f"DESCRIBE SELECT * FROM {source}").fetchall()
        assert [row[0] for row in described] == columns
        assert [str(row[1]) for row in described] == kinds
        select = ", ".join(
            f'epoch_us("{c}")' if k.startswith("TIMESTAMP") else f'"{c}"'
            for c, k in zip(columns, kinds, strict=True)
        )
        return con.execute(f"SELECT {select} FROM {source}").fetchall()
    finally:
        con.close()


def export_log(server: LiveServer, response: httpx.Response, timeout: float = 10) -> dict[str, Any]:
    """The `export` log line of the request `response` answers."""
    rid = response.headers["x-request-id"]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in list(server.log_lines):
            if line.startswith("{"):
                record: dict[str, Any] = json.loads(line)
                if record.get("msg") == "export" and record.get("request_id") == rid:
                    return record
        time.sleep(0.02)
    raise AssertionError(f"no export log line for request {rid}")


def request_line(
    server: LiveServer, response: httpx.Response, timeout: float = 10
) -> dict[str, Any]:
    """The `request` log line of the request `response` answers."""
    rid = response.headers["x-request-id"]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in list(server.log_lines):
            if line.startswith("{"):
                record: dict[str, Any] = json.loads(line)
                if record.get("msg") == "request" and record.get("request_id") == rid:
                    return record
        time.sleep(0.02)
    raise AssertionError(f"no request log line for request {rid}")


def pipes_left(data_dir: Path) -> list[Path]:
    """Export pipes still in any run folder."""
    return sorted(data_dir.glob("run/*/exports/export-*"))


# --- contents: the round trips -------------------------------------------------------------------


@pytest.mark.parametrize("table", TABLES)
@pytest.mark.parametrize("vid", [OLDER, NEWER])
def test_a_csv_export_is_the_table_through_python_csv_and_duckdb(
    server: LiveServer, store: Path, tmp_path: Path, table: str, vid: str
) -> None:
    answer = server.get(f"{EXPORT}/{table}.csv", params={"version": vid})
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == "text/csv; header=present; charset=utf-8"
    assert answer.headers["x-data-version"] == vid
    columns, kinds, rows = table_of(store, vid, table)
    assert_csv_is_table(answer.content, columns, kinds, rows)
    path = tmp_path / f"{table}.csv"
    path.write_bytes(answer.content)
    assert duckdb_reads_back(path, "csv", columns, kinds) == rows


@pytest.mark.parametrize("table", TABLES)
def test_a_parquet_export_is_the_table_with_its_types(
    server: LiveServer, store: Path, tmp_path: Path, table: str
) -> None:
    answer = server.get(f"{EXPORT}/{table}.parquet", params={"version": OLDER})
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == "application/vnd.apache.parquet"
    assert answer.content[:4] == answer.content[-4:] == b"PAR1"
    path = tmp_path / f"{table}.parquet"
    path.write_bytes(answer.content)
    columns, kinds, rows = table_of(store, OLDER, table)
    assert duckdb_reads_back(path, "parquet", columns, kinds) == rows


def test_hostile_text_and_the_hardest_doubles_come_back_exactly(server: LiveServer) -> None:
    answer = server.get(f"{EXPORT}/dim_item.csv", params={"version": OLDER})
    records = list(csv.DictReader(io.StringIO(answer.content.decode("utf-8"), newline="")))
    by_item = {record["item_id"]: record for record in records}
    for item, name in HOSTILE_NAMES.items():
        assert by_item[item]["name"] == name
    for item, cost in HARD_DOUBLES.items():
        text = by_item[item]["unit_cost"]
        assert (text == "") if cost is None else (float(text) == cost), (item, text)
    # The shortest text that reads back as the same double through float() or strtod (a
    # spreadsheet keeps 15 significant digits: docs/api.md says what that changes).
    assert by_item["IT-0000003"]["unit_cost"] == "0.30000000000000004"
    assert by_item["IT-0000005"]["unit_cost"] == "1e-07"


def test_the_served_version_is_exported_when_none_is_named(server: LiveServer, store: Path) -> None:
    answer = server.get(f"{EXPORT}/fact_forecast.csv")
    assert answer.headers["x-data-version"] == NEWER
    named = server.get(f"{EXPORT}/fact_forecast.csv", params={"version": NEWER})
    assert answer.content == named.content
    assert answer.headers["etag"] == named.headers["etag"]
    older = server.get(f"{EXPORT}/fact_forecast.csv", params={"version": OLDER})
    assert older.content != answer.content


def test_the_file_name_carries_dataset_version_table_and_filters(server: LiveServer) -> None:
    plain = server.get(f"{EXPORT}/fact_forecast.parquet", params={"version": OLDER})
    assert plain.headers["content-disposition"] == (
        f'attachment; filename="{DATASET}_{OLDER}_fact_forecast.parquet"'
    )
    params = {
        "item": "IT-0000001",
        "category": "Fiber Optic",
        "from": "2026-10-01",
        "to": "2026-11-01",
    }
    filtered = server.get(f"{EXPORT}/fact_forecast.csv", params=params)
    assert filtered.headers["content-disposition"] == (
        f'attachment; filename="{DATASET}_{NEWER}_fact_forecast_item-IT-0000001_'
        'category-Fiber-Optic_from-2026-10-01_to-2026-11-01.csv"'
    )
    several = server.get(
        f"{EXPORT}/dim_item.csv", params=[("item", "IT-0000001"), ("item", "IT-0000002")]
    )
    assert f"{DATASET}_{NEWER}_dim_item_items-2.csv" in several.headers["content-disposition"]


# --- filters -------------------------------------------------------------------------------------


def a_category_and_site(store: Path) -> tuple[str, str]:
    """A category and a site that share some items but not all of either."""
    con = duckdb.connect(str(store / "versions" / NEWER / "data.duckdb"), read_only=True)
    try:
        row = con.execute(
            "SELECT category, site FROM dim_item GROUP BY ALL ORDER BY count(*) DESC, 1, 2 LIMIT 1"
        ).fetchone()
    finally:
        con.close()
    assert row is not None
    return str(row[0]), str(row[1])


FILTERS: list[tuple[str, list[tuple[str, str]], str, list[Any]]] = [
    ("fact_forecast", [("item", "IT-0000002")], "WHERE item_id = ?", ["IT-0000002"]),
    ("fact_forecast", [("item", "IT-0000009"), ("item", "IT-0000002"), ("item", "IT-0000009")],
     "WHERE item_id IN (?, ?)", ["IT-0000002", "IT-0000009"]),
    ("fact_forecast", [("from", "2026-10-20")], "WHERE date >= ?", [date(2026, 10, 20)]),
    ("fact_forecast", [("to", "2026-10-20")], "WHERE date <= ?", [date(2026, 10, 20)]),
    ("fact_inventory", [("from", "2026-11-05"), ("to", "2026-11-07"), ("item", "IT-0000004")],
     "WHERE date BETWEEN ? AND ? AND item_id = ?", [date(2026, 11, 5), date(2026, 11, 7), "IT-0000004"]),
    ("fact_forecast", [("from", "2026-11-01"), ("to", "2026-11-01")], "WHERE date = ?", [date(2026, 11, 1)]),
]  # fmt: skip


@pytest.mark.parametrize(("table", "params", "where", "args"), FILTERS)
def test_item_and_date_filters_keep_exactly_those_rows(
    server: LiveServer,
    store: Path,
    table: str,
    params: list[tuple[str, str]],
    where: str,
    args: list[Any],
) -> None:
    columns, kinds, rows = table_of(store, NEWER, table, where, args)
    assert rows, "a filter that keeps nothing proves nothing"
    answer = server.get(f"{EXPORT}/{table}.csv", params=params)
    assert answer.status_code == 200, answer.text
    assert_csv_is_table(answer.content, columns, kinds, rows)


@pytest.mark.parametrize("table", TABLES)
@pytest.mark.parametrize("which", ["category", "site", "both"])
def test_category_and_site_filters_keep_the_rows_of_those_items(
    server: LiveServer, store: Path, table: str, which: str
) -> None:
    category, site = a_category_and_site(store)
    chosen = {"category": category, "site": site}
    if which != "both":
        chosen = {which: chosen[which]}
    if table in ("dim_item", "fact_metrics"):  # their own columns
        where = " AND ".join(f"{name} = ?" for name in chosen)
    else:  # the items of that category and site
        where = (
            "item_id IN (SELECT item_id FROM dim_item WHERE "
            + " AND ".join(f"{n} = ?" for n in chosen)
            + ")"
        )
    columns, kinds, rows = table_of(store, NEWER, table, f"WHERE {where}", list(chosen.values()))
    everything = table_of(store, NEWER, table)[2]
    assert 0 < len(rows) < len(everything)
    answer = server.get(f"{EXPORT}/{table}.csv", params=chosen)
    assert_csv_is_table(answer.content, columns, kinds, rows)


def test_a_filter_that_matches_nothing_gives_the_header_alone(
    server: LiveServer, tmp_path: Path
) -> None:
    csv_answer = server.get(f"{EXPORT}/fact_forecast.csv", params={"category": "No such category"})
    assert csv_answer.status_code == 200
    assert csv_answer.content.count(b"\r\n") == 1
    assert csv_answer.content.startswith(b"item_id,date,")
    parquet = server.get(f"{EXPORT}/fact_forecast.parquet", params={"item": "IT-9999999"})
    path = tmp_path / "empty.parquet"
    path.write_bytes(parquet.content)
    assert duckdb.connect().execute(f"SELECT count(*) FROM '{path}'").fetchone() == (0,)


# --- ETags, 304 and HEAD -------------------------------------------------------------------------


def test_the_etag_names_version_table_format_and_normalized_filter(server: LiveServer) -> None:
    def etag(path: str, params: Any = None) -> str:
        answer = server.get(path, params=params)
        assert answer.status_code == 200, answer.text
        return str(answer.headers["etag"])

    base = etag(
        f"{EXPORT}/fact_forecast.csv",
        [("item", "IT-0000002"), ("item", "IT-0000001"), ("from", "2026-10-01")],
    )
    assert base.startswith(f'"{NEWER}-') and base.endswith('"')
    same = [
        [("from", "2026-10-01"), ("item", "IT-0000001"), ("item", "IT-0000002")],
        [
            ("item", "IT-0000001"),
            ("item", "IT-0000002"),
            ("item", "IT-0000001"),
            ("from", "2026-10-01"),
        ],
        [
            ("version", NEWER),
            ("item", "IT-0000001"),
            ("item", "IT-0000002"),
            ("from", "2026-10-01"),
        ],
    ]
    for params in same:
        assert etag(f"{EXPORT}/fact_forecast.csv", params) == base, params
    different = {
        etag(f"{EXPORT}/fact_forecast.parquet", [("item", "IT-0000002"), ("item", "IT-0000001"), ("from", "2026-10-01")]),
        etag(f"{EXPORT}/fact_inventory.csv", [("item", "IT-0000002"), ("item", "IT-0000001"), ("from", "2026-10-01")]),
        etag(f"{EXPORT}/fact_forecast.csv", [("item", "IT-0000002"), ("from", "2026-10-01")]),
        etag(f"{EXPORT}/fact_forecast.csv", [("item", "IT-0000002"), ("item", "IT-0000001"), ("from", "2026-10-02")]),
        etag(f"{EXPORT}/fact_forecast.csv", [("version", OLDER), ("item", "IT-0000002"), ("item", "IT-0000001"), ("from", "2026-10-01")]),
    }  # fmt: skip
    assert base not in different and len(different) == 5


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_the_same_export_is_the_same_bytes_on_every_worker(server: LiveServer, fmt: str) -> None:
    """Asked on fresh connections until both workers have answered (the kernel picks one)."""
    answers: dict[int, list[httpx.Response]] = {}
    for _ in range(60):
        answer = server.get(f"{EXPORT}/fact_inventory.{fmt}", params={"version": OLDER})
        answers.setdefault(export_log(server, answer)["worker"], []).append(answer)
        if len(answers) == server.workers and sum(map(len, answers.values())) >= 4:
            break
    assert len(answers) == server.workers, f"only workers {sorted(answers)} answered"
    every = [a for per_worker in answers.values() for a in per_worker]
    assert len({a.content for a in every}) == 1
    assert len({a.headers["etag"] for a in every}) == 1


def test_a_conditional_get_answers_304_without_running_the_export(server: LiveServer) -> None:
    first = server.get(f"{EXPORT}/dim_item.csv", params={"site": a_site_of(server)})
    etag = first.headers["etag"]
    again = server.get(f"{EXPORT}/dim_item.csv", params={"site": a_site_of(server)},
                       headers={"if-none-match": f'"other", {etag}'})  # fmt: skip
    assert again.status_code == 304
    assert again.content == b""
    assert again.headers["etag"] == etag
    assert again.headers["x-data-version"] == NEWER
    assert again.headers["content-disposition"] == first.headers["content-disposition"]
    stale = server.get(
        f"{EXPORT}/dim_item.csv", params={"version": OLDER}, headers={"if-none-match": etag}
    )
    assert stale.status_code == 200  # another version: another ETag
    time.sleep(0.3)
    assert not any(
        '"msg":"export"' in line and again.headers["x-request-id"] in line
        for line in server.log_lines
    )


def a_site_of(server: LiveServer) -> str:
    """A site of the served version, read through the API."""
    listing = server.get(f"{EXPORT}/dim_item.csv")
    return next(csv.DictReader(io.StringIO(listing.text)))["site"]


def test_head_answers_the_headers_without_a_body_or_an_export(server: LiveServer) -> None:
    with server.client() as client:
        head = client.head(f"{EXPORT}/fact_forecast.csv", params={"version": OLDER})
        get = client.get(f"{EXPORT}/fact_forecast.csv", params={"version": OLDER})
    assert head.status_code == 200
    assert head.content == b""
    for name in ("etag", "x-data-version", "content-type", "content-disposition"):
        assert head.headers[name] == get.headers[name], name
    time.sleep(0.3)
    rid = head.headers["x-request-id"]
    assert not any('"msg":"export"' in line and rid in line for line in server.log_lines)
    assert export_log(server, get)["outcome"] == "complete"


# --- bad requests --------------------------------------------------------------------------------


HOSTILE_QUERIES = [
    ("fact_forecast.csv", [("q", "x")], 400, "unknown_parameter"),
    ("fact_forecast.csv", [("limit", "10")], 400, "unknown_parameter"),
    ("fact_forecast.csv", [("ITEM", "IT-0000001")], 400, "unknown_parameter"),
    ("fact_forecast.csv", [("site", "a"), ("site", "b")], 400, "repeated_parameter"),
    ("fact_forecast.csv", [("version", OLDER), ("version", NEWER)], 400, "repeated_parameter"),
    ("fact_forecast.csv", [("from", "2026-1-01")], 400, "bad_parameter"),
    ("fact_forecast.csv", [("from", "20261101")], 400, "bad_parameter"),
    ("fact_forecast.csv", [("from", "2026-W45-1")], 400, "bad_parameter"),
    ("fact_forecast.csv", [("to", "2026-02-30")], 400, "bad_parameter"),
    ("fact_forecast.csv", [("to", "2026-11-01T00:00:00")], 400, "bad_parameter"),
    ("fact_forecast.csv", [("from", "")], 400, "bad_parameter"),
    ("fact_forecast.csv", [("from", "2026-11-02"), ("to", "2026-11-01")], 400, "from_after_to"),
    ("dim_item.csv", [("from", "2026-11-01")], 400, "filter_not_applicable"),
    ("fact_metrics.parquet", [("to", "2026-11-01")], 400, "filter_not_applicable"),
    ("fact_forecast.csv", [("item", "' OR 1=1 --")], 400, "bad_parameter"),
    ("fact_forecast.csv", [("item", "IT-1'); DROP TABLE dim_item; --")], 400, "bad_parameter"),
    ("fact_forecast.csv", [("item", "IT-0000001\x00")], 400, "bad_parameter"),
    ("fact_forecast.csv", [("item", "../../etc/passwd")], 400, "bad_parameter"),
    ("fact_forecast.csv", [("item", "I" * 65)], 400, "bad_parameter"),
    ("fact_forecast.csv", [("item", "")], 400, "bad_parameter"),
    ("fact_forecast.csv", [("item", f"IT-{n:07d}") for n in range(101)], 400, "bad_parameter"),
    ("fact_forecast.csv", [("category", "c" * 65)], 400, "bad_parameter"),
    ("fact_forecast.csv", [("category", "")], 400, "bad_parameter"),
    ("fact_forecast.csv", [("site", "a\r\nx-injected: 1")], 400, "bad_parameter"),
    ("fact_forecast.csv", [("version", "v1")], 400, "bad_parameter"),
    ("fact_forecast.csv", [("version", "../v0001")], 400, "bad_parameter"),
    ("fact_forecast.csv", [("version", "v0001'; --")], 400, "bad_parameter"),
    ("fact_forecast.csv", [("version", "v9999")], 404, "version_not_found"),
    ("fact_forecast.xlsx", [], 404, "unknown_format"),
    ("fact_forecast", [], 404, "unknown_format"),
    ("item_overview.csv", [], 404, "unknown_table"),
    ("answer_index.parquet", [], 404, "unknown_table"),
    ("appliance_version.csv", [], 404, "unknown_table"),
]


@pytest.mark.parametrize(("target", "params", "status", "reason"), HOSTILE_QUERIES)
def test_a_hostile_or_bad_query_is_refused_with_its_reason(
    server: LiveServer, target: str, params: list[tuple[str, str]], status: int, reason: str
) -> None:
    answer = server.get(f"{EXPORT}/{target}", params=params)
    error_of(answer, status, reason)
    assert "etag" not in answer.headers


def test_hostile_filters_harm_nothing(server: LiveServer, store: Path) -> None:
    for target, params, _status, _reason in HOSTILE_QUERIES:
        server.get(f"{EXPORT}/{target}", params=params)
    # Values that pass validation but look like SQL are parameters: they just match nothing.
    for name in ("category", "site"):
        answer = server.get(f"{EXPORT}/dim_item.csv", params={name: "x' OR '1'='1"})
        assert answer.status_code == 200 and answer.content.count(b"\r\n") == 1
    columns, kinds, rows = table_of(store, NEWER, "dim_item")
    assert_csv_is_table(server.get(f"{EXPORT}/dim_item.csv").content, columns, kinds, rows)


def test_a_token_in_the_url_is_refused_as_everywhere(server: LiveServer) -> None:
    answer = server.get(f"{EXPORT}/dim_item.csv", params={"token": "x"})
    assert answer.status_code == 400


# --- versions ------------------------------------------------------------------------------------


def test_the_version_listing_offers_each_table_of_each_kept_version(
    server: LiveServer, store: Path
) -> None:
    listing = msgspec.json.decode(server.get("/api/v1/data/versions").content, type=DataVersions)
    assert (
        [v.version for v in listing.exports]
        == [v.version for v in listing.versions]
        == [OLDER, NEWER]
    )
    assert [v.current for v in listing.exports] == [False, True]
    for offered, version in zip(listing.exports, listing.versions, strict=True):
        assert (
            offered.dataset_id == version.dataset_id
            and offered.generated_at == version.generated_at
        )
        assert [t.table for t in offered.tables] == list(TABLES)
        for entry in offered.tables:
            assert entry.rows == version.rows[entry.table]
            assert entry.filters == [
                "item",
                "category",
                "site",
                *(["from", "to"] if entry.table in DATED else []),
            ]
            for link, fmt in ((entry.csv, "csv"), (entry.parquet, "parquet")):
                assert link == f"{EXPORT}/{entry.table}.{fmt}?version={offered.version}"
            answer = server.get(entry.csv)
            assert answer.headers["x-data-version"] == offered.version
            records = list(csv.reader(io.StringIO(answer.text, newline="")))
            assert len(records) - 1 == entry.rows


def test_a_removed_version_is_not_found_and_no_longer_offered(
    tmp_path: Path, good_pack: Path, newer_pack: Path, signer: Signer
) -> None:
    data_dir = tmp_path / "data"
    import_into(data_dir, good_pack, signer)
    import_into(data_dir, newer_pack, signer)
    with live_server(data_dir, signer.allowed_signers) as live:
        assert live.get(f"{EXPORT}/dim_item.csv", params={"version": OLDER}).status_code == 200
        shutil.rmtree(data_dir / "versions" / OLDER)  # by hand, as an admin freeing space would
        message = error_of(
            live.get(f"{EXPORT}/dim_item.csv", params={"version": OLDER}), 404, "version_not_found"
        )
        assert OLDER in message
        listing = msgspec.json.decode(live.get("/api/v1/data/versions").content, type=DataVersions)
        assert [v.version for v in listing.exports] == [NEWER]
        assert live.get(f"{EXPORT}/dim_item.csv").status_code == 200


def test_a_damaged_older_version_is_refused_as_the_node_s_fault(
    tmp_path: Path, good_pack: Path, newer_pack: Path, signer: Signer
) -> None:
    data_dir = tmp_path / "data"
    import_into(data_dir, good_pack, signer)
    import_into(data_dir, newer_pack, signer)
    database = data_dir / "versions" / OLDER / "data.duckdb"
    with database.open("r+b") as file:  # bit rot in a version nobody has served in this run
        file.seek(database.stat().st_size // 2)
        file.write(b"\xff" * 64)
    with live_server(data_dir, signer.allowed_signers) as live:
        message = error_of(
            live.get(f"{EXPORT}/dim_item.csv", params={"version": OLDER}), 503, "damaged"
        )
        assert "rollback" in message or "import" in message
        assert live.get(f"{EXPORT}/dim_item.csv").status_code == 200


def damage_block_of(database: Path, table: str, column: str) -> None:
    """Write over the first stored block of `table`.`column` in a version's database."""
    con = duckdb.connect(str(database), read_only=True)
    try:
        block, offset, size = con.execute(
            "SELECT block_id, block_offset, current_setting('default_block_size') "
            "FROM pragma_storage_info($table) WHERE persistent AND block_id >= 0 "
            "AND column_name = $column ORDER BY row_group_id LIMIT 1",
            {"table": table, "column": column},
        ).fetchone() or (None, None, None)
    finally:
        con.close()
    assert block is not None
    header = 3 * 4096  # DuckDB's file header and two database headers come before block 0
    with database.open("r+b") as file:
        file.seek(header + int(block) * int(size) + int(offset) + 8)
        file.write(b"\x00\xff" * 64)


def test_damage_the_check_stamp_does_not_see_is_the_node_s_fault_on_one_line(
    tmp_path: Path, good_pack: Path, newer_pack: Path, signer: Signer
) -> None:
    """Bit rot under the file system: the stamp still vouches for the files, DuckDB finds it.

    Both places an export can meet it before its first byte (the scope's items read from
    dim_item, and a COPY that fails at once) answer 503 with a reason and one line that names no
    path of the node, and leave the slot free.
    """
    data_dir = tmp_path / "data"
    import_into(data_dir, good_pack, signer)
    import_into(data_dir, newer_pack, signer)
    folder = data_dir / "versions" / OLDER
    damage_block_of(folder / "data.duckdb", "dim_item", "category")
    write_check_stamp(RunFolders(data_dir).check_stamp(OLDER), folder)  # it "matched"
    with live_server(data_dir, signer.allowed_signers) as live:
        for path, params in (
            (f"{EXPORT}/fact_forecast.csv", {"version": OLDER, "category": "Radio"}),
            (f"{EXPORT}/dim_item.csv", {"version": OLDER}),
            (f"{EXPORT}/dim_item.parquet", {"version": OLDER}),
        ):
            answer = live.get(path, params=params)
            assert answer.status_code == 503, (path, answer.text)
            reason = msgspec.json.decode(answer.content, type=ErrorBody).error.reason
            assert reason in {"damaged", "io-error"}, (path, reason, answer.text)
            message = error_of(answer, 503, reason)
            assert OLDER in message and str(data_dir) not in message, message
        assert not any("Traceback" in entry for entry in live.log_lines)
        assert live.get(f"{EXPORT}/fact_forecast.csv", params={"version": NEWER}).status_code == 200
        assert not list(RunFolders(data_dir).exports.glob("*.csv")), "a pipe was left behind"


def test_no_data_yet_is_503(tmp_path: Path, signer: Signer) -> None:
    DataStore(tmp_path / "data").ensure()  # a new node: the store, nothing imported
    with live_server(tmp_path / "data", signer.allowed_signers) as live:
        answer = live.get(f"{EXPORT}/dim_item.csv")
        assert answer.status_code == 503, answer.text
        assert live.get(f"{EXPORT}/dim_item.csv", params={"version": OLDER}).status_code == 404


def test_reads_that_need_a_token_need_it_for_exports(store: Path, signer: Signer) -> None:
    viewer = "viewer-token-for-exports-0123456789"
    with live_server(store, signer.allowed_signers, env={"APPLIANCE_VIEWER_TOKEN": viewer}) as live:
        error_of(live.get(f"{EXPORT}/dim_item.csv"), 401, "token_required")
        ok = live.get(f"{EXPORT}/dim_item.csv", headers={"Authorization": f"Bearer {viewer}"})
        assert ok.status_code == 200
        assert "authorization" in ok.headers["vary"]


# --- while an export streams ---------------------------------------------------------------------


@pytest.fixture
def big_server(
    tmp_path: Path, big_pack: Path, newer_pack: Path, signer: Signer
) -> Iterator[LiveServer]:
    data_dir = big_store(tmp_path, big_pack, newer_pack, signer)
    env = {"APPLIANCE_EXPORT_SLOTS": "1"}
    with live_server(data_dir, signer.allowed_signers, workers=2, env=env) as started:
        yield started


def from_address(server: LiveServer, address: str) -> httpx.Client:
    """A client whose connections come from another loopback address (another analyst)."""
    transport = httpx.HTTPTransport(local_address=address)
    return httpx.Client(base_url=server.base, timeout=30, transport=transport)


def test_an_export_keeps_its_version_when_the_served_one_changes(big_server: LiveServer) -> None:
    columns, kinds, rows = table_of(big_server.data_dir, OLDER, "fact_forecast")
    with (
        big_server.client() as client,
        client.stream("GET", f"{EXPORT}/fact_forecast.csv") as answer,
    ):
        assert answer.headers["x-data-version"] == OLDER
        chunks = answer.iter_bytes()
        received = [next(chunks)]
        switched = big_server.post(
            "/api/v1/data/rollback", json={"version": NEWER}, headers=big_server.admin()
        )
        assert switched.status_code == 200, switched.text
        wait_until_served(big_server, NEWER)
        received += list(chunks)
    assert_csv_is_table(b"".join(received), columns, kinds, rows)
    assert export_log(big_server, answer)["outcome"] == "complete"
    assert all(
        big_server.get(f"{EXPORT}/dim_item.csv").headers["x-data-version"] == NEWER
        for _ in range(4)
    )


def test_one_export_at_a_time_per_address_and_the_node_cap(big_server: LiveServer) -> None:
    with (
        big_server.client() as first,
        first.stream("GET", f"{EXPORT}/fact_forecast.csv") as running,
    ):
        assert running.status_code == 200
        chunks = running.iter_bytes()  # kept: a dropped iterator closes the response
        next(chunks)  # it runs, and is not read further: it holds its caps
        again = big_server.get(f"{EXPORT}/dim_item.csv")
        error_of(again, 429, "export_in_progress")
        assert again.headers["retry-after"] == "5"
        with from_address(big_server, "127.0.0.2") as other:
            busy = other.get(f"{EXPORT}/dim_item.csv")
            error_of(busy, 503, "exports_busy")
            assert busy.headers["retry-after"] == "5"
            assert other.get("/api/v1/items").status_code == 200  # the rest of the API answers
            # A conditional GET or a HEAD takes no slot.
            etag = big_server.get(
                f"{EXPORT}/fact_forecast.csv", headers={"if-none-match": running.headers["etag"]}
            )
            assert etag.status_code == 304
            assert other.head(f"{EXPORT}/dim_item.csv").status_code == 200
    # The first one was cut off when its client left: its caps are free again.
    deadline = time.monotonic() + 10
    while big_server.get(f"{EXPORT}/dim_item.csv").status_code != 200:
        assert time.monotonic() < deadline, "the caps were not released"
        time.sleep(0.1)
    time.sleep(1.5)  # each worker writes its counters for the others every second
    metrics = big_server.get("/metrics").text
    assert 'appliance_exports_refused_total{reason="export_in_progress"' in metrics
    assert 'appliance_exports_refused_total{reason="exports_busy"' in metrics


def test_a_client_that_goes_away_stops_the_export_and_leaves_nothing(
    big_server: LiveServer,
) -> None:
    with (
        big_server.client() as client,
        client.stream("GET", f"{EXPORT}/fact_forecast.csv") as answer,
    ):
        next(answer.iter_bytes())
    record = export_log(big_server, answer)
    assert record["outcome"] == "cut-off"
    assert record["rows"] is None
    deadline = time.monotonic() + 5
    while pipes_left(big_server.data_dir):
        assert time.monotonic() < deadline, pipes_left(big_server.data_dir)
        time.sleep(0.05)
    whole = big_server.get(f"{EXPORT}/fact_forecast.csv")
    assert export_log(big_server, whole)["outcome"] == "complete"
    assert export_log(big_server, whole)["rows"] == BIG_ITEMS * BIG_DAYS


def test_an_export_that_outlasts_its_time_is_cut_off_and_frees_its_slot(
    tmp_path: Path, big_pack: Path, newer_pack: Path, signer: Signer
) -> None:
    """A client that takes the bytes very slowly (here 64 KiB every 0.2 s) holds its export, and
    a node slot, no longer than APPLIANCE_EXPORT_SECONDS: then the download breaks, never ends
    as a short file, and the same client may export again at once."""
    data_dir = big_store(tmp_path, big_pack, newer_pack, signer)
    env = {"APPLIANCE_EXPORT_SECONDS": "2", "APPLIANCE_EXPORT_SLOTS": "1"}
    with live_server(data_dir, signer.allowed_signers, env=env) as live:
        received = 0
        started = time.monotonic()
        with (
            live.client() as client,
            client.stream("GET", f"{EXPORT}/fact_forecast.csv") as answer,
        ):
            assert answer.status_code == 200
            with pytest.raises(httpx.RemoteProtocolError):
                for chunk in answer.iter_bytes(64 << 10):
                    received += len(chunk)
                    time.sleep(0.2)
        took = time.monotonic() - started
        assert 2 <= took < 2 + 60, took  # cut at the limit, not at the 60 s idle limit
        record = export_log(live, answer)
        assert record["outcome"] == "too-slow"
        assert "APPLIANCE_EXPORT_SECONDS" in record["error"]
        assert record["rows"] is None
        assert 0 < received < 100 << 20  # the whole file is 100 MB
        line = request_line(live, answer)
        assert (line["level"], line["status"]) == ("warning", 200)
        assert "too slowly" in line["error"]
        small = live.get(f"{EXPORT}/dim_item.csv")  # the slot and the client's lock are free
        assert small.status_code == 200, small.text
        assert not any("Traceback" in entry for entry in live.log_lines)


def test_a_database_that_fails_part_way_cuts_the_download_off(big_server: LiveServer) -> None:
    """Bit rot found while streaming: the client sees a broken download, never a short file."""
    database = big_server.data_dir / "versions" / OLDER / "data.duckdb"
    con = duckdb.connect(str(database), read_only=True)
    try:
        # A block of the last row group's forecasts that no earlier row group uses: DuckDB
        # reads it once the export is well under way.
        block, offset, size = con.execute(
            "WITH s AS (SELECT * FROM pragma_storage_info('fact_forecast') WHERE persistent "
            "AND block_id >= 0), last AS (SELECT max(row_group_id) AS rg FROM s) "
            "SELECT block_id, block_offset, current_setting('default_block_size') FROM s, last "
            "WHERE column_name = 'yhat' AND row_group_id = rg AND block_id NOT IN "
            "(SELECT block_id FROM s, last WHERE row_group_id < rg)"
        ).fetchone() or (None, None, None)
    finally:
        con.close()
    assert block is not None
    header = 3 * 4096  # DuckDB's file header and two database headers come before block 0
    with database.open("r+b") as file:
        file.seek(header + int(block) * int(size) + int(offset) + 4096)
        file.write(b"\x00\xff" * 256)
    with (
        big_server.client() as client,
        client.stream("GET", f"{EXPORT}/fact_forecast.csv") as answer,
    ):
        assert answer.status_code == 200
        received = 0
        with pytest.raises(httpx.RemoteProtocolError):
            for chunk in answer.iter_bytes():
                received += len(chunk)
    assert received > 0
    record = export_log(big_server, answer)
    assert record["outcome"] == "failed"
    assert "checksum" in record["error"]
    assert received == record["bytes"]  # what DuckDB had written when it failed, no more
    line = request_line(big_server, answer)
    assert (line["level"], line["status"]) == ("warning", 200)
    assert "failed part-way" in line["error"]
    assert not any("Traceback" in entry for entry in big_server.log_lines)
    assert big_server.get("/health/live").status_code == 200


# --- a full disk ---------------------------------------------------------------------------------


@pytest.fixture
def small_tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A 40 MB tmpfs with few inodes, mounted for the test (CI runs as root)."""
    mount = tmp_path / "tmpfs"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=40m,nr_inodes=400", "tmpfs", str(mount)],
        capture_output=True,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(mount: Path, *, blocks: bool) -> None:
    """Use up the file system's blocks (one big file) or its inodes (empty files)."""
    if blocks:
        with (mount / "filler").open("wb") as out:
            try:
                while True:
                    out.write(bytes(1 << 20))
                    out.flush()
            except OSError:
                pass
        return
    (mount / "inodes").mkdir(exist_ok=True)
    number = 0
    try:
        while True:
            (mount / "inodes" / str(number)).touch()
            number += 1
    except OSError:
        pass


def test_an_export_needs_no_disk_space_and_a_node_that_cannot_make_its_pipe_says_so(
    small_tmpfs: Path, good_pack: Path, signer: Signer
) -> None:
    data_dir = small_tmpfs / "data"
    import_into(data_dir, good_pack, signer)
    with live_server(data_dir, signer.allowed_signers) as live:
        fill(small_tmpfs, blocks=True)
        columns, kinds, rows = table_of(data_dir, OLDER, "fact_forecast")
        whole = live.get(f"{EXPORT}/fact_forecast.csv")  # streamed: no byte of it on the disk
        assert whole.status_code == 200
        assert_csv_is_table(whole.content, columns, kinds, rows)
        fill(small_tmpfs, blocks=False)
        message = error_of(live.get(f"{EXPORT}/fact_inventory.csv"), 503, "disk-full")
        assert "free disk space" in message
        assert str(data_dir) not in message
        shutil.rmtree(small_tmpfs / "inodes")
        assert live.get(f"{EXPORT}/fact_inventory.csv").status_code == 200
