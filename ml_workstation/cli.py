"""The `mlws` command: demo data, keys, signed result packs, verification and export."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import click

from appliance import __version__
from appliance.console import Progress, reported_errors
from appliance.data.importer import check_pack
from appliance.errors import ApplianceError, PackRejected
from appliance.packs.pack_layout import SIGNATURE_NAMESPACE
from appliance.packs.result_pack import format_timestamp, parse_timestamp
from appliance.trust.sshsig import generate_key, load_allowed_signers
from ml_workstation import demo
from ml_workstation.conform import Conversion, TablesDoNotConform
from ml_workstation.export import export_pack
from ml_workstation.pack_builder import PackRequest, build_pack, conform_to_folder


class Timestamp(click.ParamType[datetime, Any]):
    """An RFC 3339 timestamp with an offset, e.g. 2026-11-01T06:00:00Z."""

    name = "timestamp"

    def convert(
        self, value: object, param: click.Parameter | None, ctx: click.Context | None
    ) -> datetime:
        if isinstance(value, datetime):
            return value
        try:
            return parse_timestamp(str(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="mlws")
def main() -> None:
    """ML workstation tools: make, sign, check and export result packs for the appliance."""


@main.command("demo")
@click.option(
    "--out",
    required=True,
    type=click.Path(path_type=Path, file_okay=False),
    help="Folder for the tables.",
)
@click.option(
    "--items",
    default=demo.DEFAULT_ITEMS,
    show_default=True,
    type=click.IntRange(min=1, max=demo.MAX_ITEMS),
    help="Number of items.",
)
@click.option(
    "--days",
    default=demo.DEFAULT_DAYS,
    show_default=True,
    type=click.IntRange(min=demo.MIN_DAYS, max=demo.MAX_DAYS),
    help="Days of history plus horizon.",
)
@click.option(
    "--seed",
    default=demo.DEFAULT_SEED,
    show_default=True,
    type=click.IntRange(min=0, max=demo.MAX_SEED),
    help="Seed: the same seed gives the same tables.",
)
@click.option("--dataset-id", default=demo.DEFAULT_DATASET_ID, show_default=True)
@click.option("--model-version", default=demo.DEFAULT_MODEL_VERSION, show_default=True)
@click.option("--source", default=demo.DEFAULT_SOURCE, show_default=True)
@click.option(
    "--generated-at",
    type=Timestamp(),
    default=format_timestamp(demo.DEFAULT_GENERATED_AT),
    show_default=True,
)
def demo_command(
    out: Path,
    items: int,
    days: int,
    seed: int,
    dataset_id: str,
    model_version: str,
    source: str,
    generated_at: datetime,
) -> None:
    """Write deterministic demo gold tables (telecom spare parts) as Parquet files in OUT."""
    progress = Progress()
    with reported_errors():
        spec = demo.DemoSpec(
            items=items,
            days=days,
            seed=seed,
            dataset_id=dataset_id,
            model_version=model_version,
            source=source,
            generated_at=generated_at,
        )
        rows = demo.generate_demo(out, spec, progress)
    for table, count in rows.items():
        click.echo(f"{table}\t{count}")


@main.command("keygen")
@click.option(
    "--out",
    "key_file",
    required=True,
    type=click.Path(path_type=Path, dir_okay=False),
    help="Private key file; the public key goes to KEYFILE.pub.",
)
@click.option(
    "--principal",
    default="mlws@workstation",
    show_default=True,
    help="Name the node's allowed_signers gives this key.",
)
def keygen_command(key_file: Path, principal: str) -> None:
    """Make an Ed25519 signing key (OpenSSH format) and print its allowed_signers line."""
    with reported_errors():
        public = generate_key(key_file, principal)
    click.echo(f"wrote {key_file} and {key_file}.pub ({public.fingerprint})", err=True)
    click.echo(f'{principal} namespaces="{SIGNATURE_NAMESPACE}" {public.openssh_line()}')


F = TypeVar("F", bound=Callable[..., Any])


def metadata_options(command: F) -> F:
    """The four traceability flags, each defaulting to the value the tables carry."""
    options = (
        click.option(
            "--dataset-id",
            default=None,
            help="Identifier of the input data set [default: the tables' dataset_id].",
        ),
        click.option(
            "--model-version",
            default=None,
            help="Version of the model that made the results [default: the tables' model_version].",
        ),
        click.option(
            "--source",
            default=None,
            help="Model family: prophet, arima, lstm, ensemble, ... [default: the tables' source].",
        ),
        click.option(
            "--generated-at",
            type=Timestamp(),
            default=None,
            help="When the results were made [default: the tables' generated_at, else now].",
        ),
    )
    for option in reversed(options):
        command = option(command)
    return command


json_option = click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print the result, or every problem, as JSON on stdout (for pipelines).",
)


def _print_conversions(conversions: Sequence[Conversion]) -> None:
    """Say on stderr what was converted, one line per table and column."""
    for conversion in conversions:
        click.echo(f"converted {conversion.line()}", err=True)


def _report_problems(exc: ApplianceError, as_json: bool) -> None:
    """Print every problem (stderr, or stdout as JSON for any error); the error line follows."""
    problems = exc.problems if isinstance(exc, TablesDoNotConform) else []
    if as_json:
        report = {
            "ok": False,
            "error": str(exc),
            "exit_code": exc.exit_code,
            "problems": [p.as_dict() for p in problems],
            "conversions": [
                c.as_dict()
                for c in (exc.conversions if isinstance(exc, TablesDoNotConform) else [])
            ],
        }
        click.echo(json.dumps(report, indent=2))
        return
    if not isinstance(exc, TablesDoNotConform):
        return
    _print_conversions(exc.conversions)
    click.echo(f"{len(exc.problems)} problem(s):", err=True)
    for problem in exc.problems:
        click.echo(f"  {problem.line()}", err=True)


@main.command("pack")
@click.argument("tables", type=click.Path(path_type=Path))
@click.option(
    "--key",
    "key_file",
    required=True,
    type=click.Path(path_type=Path, dir_okay=False),
    help="Ed25519 private key (OpenSSH format).",
)
@metadata_options
@click.option(
    "--out",
    required=True,
    type=click.Path(path_type=Path, dir_okay=False),
    help="The pack file to write (NAME.pack).",
)
@json_option
def pack_command(
    tables: Path,
    key_file: Path,
    dataset_id: str | None,
    model_version: str | None,
    source: str | None,
    generated_at: datetime | None,
    out: Path,
    as_json: bool,
) -> None:
    """Conform the tables in TABLES to the registry and write a signed result pack.

    TABLES is a folder of <table>.parquet or <table>.csv files (pandas, polars, DuckDB or any
    Parquet writer), or a DuckDB database file with tables named as the registry's. What can be
    converted without losing information is converted, and said on stderr; anything else is
    refused with every problem listed (exit 3). Tables that carry the metadata columns give the
    flags their defaults; tables without them get the flags' values.
    """
    progress = Progress()
    with reported_errors():
        request = PackRequest(tables, dataset_id, model_version, source, generated_at)
        try:
            built = build_pack(request, key_file, out, progress)
        except ApplianceError as exc:
            _report_problems(exc, as_json)
            raise
    progress(f"wrote {out} (pack_id {built.pack_id})")
    if as_json:
        result = {
            "ok": True,
            "pack": str(out),
            "pack_id": built.pack_id,
            "conversions": [c.as_dict() for c in built.conversions],
        }
        click.echo(json.dumps(result, indent=2))
    else:
        _print_conversions(built.conversions)
        click.echo(str(out))


@main.command("conform")
@click.argument("tables", type=click.Path(path_type=Path))
@click.argument("out", type=click.Path(path_type=Path))
@metadata_options
@json_option
def conform_command(
    tables: Path,
    out: Path,
    dataset_id: str | None,
    model_version: str | None,
    source: str | None,
    generated_at: datetime | None,
    as_json: bool,
) -> None:
    """Conform the tables in TABLES to the registry into the new folder OUT, without signing.

    OUT then holds one <table>.parquet per table, exactly as `mlws pack` would put them in a
    pack (and `mlws pack OUT` takes them byte for byte). The conversions and problems are
    reported as by `mlws pack`.
    """
    progress = Progress()
    with reported_errors():
        request = PackRequest(tables, dataset_id, model_version, source, generated_at)
        try:
            conformed = conform_to_folder(request, out, progress)
        except ApplianceError as exc:
            _report_problems(exc, as_json)
            raise
    if as_json:
        result = {
            "ok": True,
            "tables": str(out),
            "rows": {name: entry.rows for name, entry in conformed.manifest.tables.items()},
            "conversions": [c.as_dict() for c in conformed.conversions],
        }
        click.echo(json.dumps(result, indent=2))
    else:
        _print_conversions(conformed.conversions)
        click.echo(str(out))


@main.command("verify")
@click.argument("pack", type=click.Path(path_type=Path, dir_okay=False))
@click.option(
    "--signers",
    required=True,
    type=click.Path(path_type=Path, dir_okay=False),
    help="allowed_signers file to trust.",
)
def verify_command(pack: Path, signers: Path) -> None:
    """Run every check the node's import runs on PACK, without importing it."""
    progress = Progress()
    with reported_errors():
        trusted = load_allowed_signers(signers)
        try:
            manifest, signer, rows = check_pack(
                pack, trusted, Path(tempfile.gettempdir()), progress=progress
            )
        except PackRejected as exc:
            # As `appliance import` says it: which pack, then why.
            raise PackRejected(exc.reason, f"{pack.name}: {exc}") from exc
    click.echo(f"{pack}: OK")
    click.echo(f"  signed by   {signer.principal} ({signer.fingerprint})")
    click.echo(f"  pack_id     {manifest.pack_id}")
    click.echo(
        f"  dataset     {manifest.dataset_id}, model {manifest.model_version}, source {manifest.source}"
    )
    click.echo(f"  generated   {format_timestamp(manifest.generated_at)}")
    for table, count in rows.items():
        click.echo(f"  {table:<16}{count:>12,} rows")


@main.command("export")
@click.argument("pack", type=click.Path(path_type=Path, dir_okay=False))
@click.option(
    "--to",
    "destination",
    required=True,
    type=click.Path(path_type=Path, file_okay=False),
    help="Mounted stick or share folder.",
)
def export_command(pack: Path, destination: Path) -> None:
    """Copy PACK to a USB stick or share safely: temporary name, flush, read back, rename."""
    with reported_errors():
        copy, digest = export_pack(pack, destination)
    click.echo(f"{copy}\tsha256 {digest}")
