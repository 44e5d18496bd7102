"""Build the signed install bundle appliance-<version>.tar (see docs/building.md).

    python build_bundle.py --version 1.0.0 --key release.key --out dist/

Thin on purpose: it reads the flags, and bundle/build.py runs the steps, each in its own module.
Every failure is one line "error: ..." on stderr and an exit code from docs/building.md.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

try:
    import click

    from appliance.console import Progress, reported_errors
    from appliance.errors import ConfigError
    from bundle import layout
    from bundle.build import (
        DEFAULT_MIN_UPGRADE_FROM,
        BuildOptions,
        build_bundle,
        default_source_date_epoch,
        source_revision,
    )
    from bundle.debs import DEFAULT_MIRROR
except ModuleNotFoundError as exc:
    # The usual cause: a Python other than the dev environment's (`python3 build_bundle.py`).
    sys.stderr.write(
        f"error: the {exc.name} package is not installed for {sys.executable}; "
        "use the dev environment: make, then .venv/bin/python build_bundle.py\n"
    )
    sys.exit(2)

USAGE_HINT = "build_bundle.py --help lists the flags"
INTERRUPTED_EXIT = 130  # as a shell reports a command stopped by Ctrl-C

DEFAULT_CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "appliance-bundle"


def _names(text: str) -> tuple[str, ...]:
    """A comma-separated flag's names."""
    return tuple(name.strip() for name in text.split(",") if name.strip())


def _source_date_epoch(root: Path) -> int:
    raw = os.environ.get("SOURCE_DATE_EPOCH")
    if raw is None:
        return default_source_date_epoch(root)
    if not raw.isdigit():
        msg = f"SOURCE_DATE_EPOCH={raw!r} is not a whole number of seconds"
        raise ConfigError(msg)
    return int(raw)


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--version", "version", required=True, help="Bundle version, e.g. 1.2.0.")
@click.option(
    "--key",
    "key_file",
    required=True,
    type=click.Path(path_type=Path, dir_okay=False),
    help="Ed25519 signing key (OpenSSH format).",
)
@click.option(
    "--out",
    "out_dir",
    required=True,
    type=click.Path(path_type=Path, file_okay=False),
    help="Folder for appliance-<version>.tar.",
)
@click.option(
    "--targets",
    "targets",
    default=",".join(t.name for t in layout.NODE_TARGETS),
    show_default=True,
    help="The node kinds to carry wheels and Debian packages for, comma-separated.",
)
@click.option(
    "--engines",
    "engines",
    default=",".join(layout.ENGINE_PACKAGES),
    show_default=True,
    help="The container engines to carry Debian packages for, comma-separated.",
)
@click.option(
    "--debian-mirror",
    default=DEFAULT_MIRROR,
    show_default=True,
    help="Debian mirror holding debian/ and debian-security/ (http, https or file URL).",
)
@click.option(
    "--debian-keyring",
    type=click.Path(path_type=Path, dir_okay=False),
    default=Path(layout.DEBIAN_KEYRING),
    show_default=True,
    help="Keyring of Debian's archive keys that Debian's metadata is checked against.",
)
@click.option(
    "--refresh-debian",
    is_flag=True,
    help="Fetch Debian's metadata again (a newer snapshot) instead of the cached one.",
)
@click.option(
    "--base-rootfs",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Base root filesystem tar for the image instead of mmdebstrap.",
)
@click.option(
    "--min-upgrade-from",
    default=DEFAULT_MIN_UPGRADE_FROM,
    show_default=True,
    help="Oldest installed version that may upgrade to this one.",
)
@click.option(
    "--cache-dir",
    type=click.Path(path_type=Path, file_okay=False),
    default=DEFAULT_CACHE,
    show_default=True,
    help="Downloads and the base rootfs, kept between builds.",
)
@click.option(
    "--source-root",
    type=click.Path(path_type=Path, file_okay=False, exists=True),
    default=Path(__file__).resolve().parent,
    help="The source tree to build (default: this file's folder).",
)
@click.option(
    "--skip-engine-check", is_flag=True, help="Do not load and run the image in a container engine."
)
@click.option("--rebuild-frontend", is_flag=True, help="Run npm ci and npm run build first.")
@click.option(
    "--refresh-rootfs", is_flag=True, help="Make the base rootfs again instead of the cached one."
)
def main(
    version: str,
    key_file: Path,
    out_dir: Path,
    targets: str,
    engines: str,
    debian_mirror: str,
    debian_keyring: Path,
    refresh_debian: bool,
    base_rootfs: Path | None,
    min_upgrade_from: str,
    cache_dir: Path,
    source_root: Path,
    skip_engine_check: bool,
    rebuild_frontend: bool,
    refresh_rootfs: bool,
) -> None:
    """Build DIR/appliance-VERSION.tar: wheels, server image, SBOMs, manifest, signed checksums.

    Reproducible: the same sources, lock and SOURCE_DATE_EPOCH (default: the last commit's
    time) give a byte-identical archive.
    """
    progress = Progress()
    with reported_errors():
        options = BuildOptions(
            version=version,
            key_file=key_file,
            out_dir=out_dir,
            source_root=source_root,
            cache_dir=cache_dir,
            source_date_epoch=_source_date_epoch(source_root),
            revision=source_revision(source_root),
            targets=tuple(name.strip() for name in targets.split(",") if name.strip()),
            base_rootfs=base_rootfs,
            min_upgrade_from=min_upgrade_from,
            engine_check=not skip_engine_check,
            rebuild_frontend=rebuild_frontend,
            refresh_rootfs=refresh_rootfs,
            engines=_names(engines),
            refresh_debian=refresh_debian,
            debian_mirror=debian_mirror,
            debian_keyring=debian_keyring,
        )
        result = build_bundle(options, progress)
    image = result.image
    click.echo(f"bundle   {result.archive}")
    click.echo(f"sha256   {result.sha256}")
    click.echo(f"size     {result.size / 1e6:.1f} MB")
    click.echo(
        f"image    {image.repo_tag} {image.image_id} {image.uncompressed_bytes / 1e6:.1f} MB uncompressed"
    )
    click.echo(f"signer   {result.report.fingerprint}")
    for found in result.debs:
        closures = ", ".join(
            f"{engine} {len(debs)} debs {sum(deb.size for deb in debs) / 1e6:.1f} MB"
            for engine, debs in found.closure.items()
        )
        click.echo(f"debs     {found.target.name}: {closures}; {found.bytes / 1e6:.1f} MB in all")
    click.echo(
        "steps    "
        + ", ".join(f"{name} {seconds:.1f}s" for name, seconds in result.step_seconds.items())
    )


def run() -> None:
    """main(), with click's usage errors and Ctrl-C as one line each, like every other failure."""
    try:
        main.main(prog_name="build_bundle.py", standalone_mode=False)
    except click.Abort:
        click.echo("error: interrupted; no archive was written", err=True)
        sys.exit(INTERRUPTED_EXIT)
    except click.ClickException as exc:
        click.echo(f"error: {exc.format_message()} ({USAGE_HINT})", err=True)
        sys.exit(exc.exit_code)


if __name__ == "__main__":
    run()
