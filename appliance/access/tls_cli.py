"""`appliance tls self-signed|show`: the node's HTTPS certificate (docs/admin-guide.md, "HTTPS")."""

from __future__ import annotations

import json
from pathlib import Path

import click

from appliance.access.site_tls import (
    SELF_SIGNED_DAYS,
    SiteCertificate,
    load_site_certificate,
    make_self_signed,
)
from appliance.console import reported_errors


@click.group("tls")
def tls_group() -> None:
    """The server's HTTPS certificate: make a self-signed one, or check one you bring."""


def describe(site: SiteCertificate, as_json: bool) -> None:
    """Print a checked certificate: fingerprint, names, end of validity."""
    if as_json:
        click.echo(json.dumps({
            "cert": str(site.cert), "key": str(site.key), "fingerprint": site.fingerprint,
            "names": list(site.names), "not_after": f"{site.not_after:%Y-%m-%dT%H:%M:%SZ}",
        }, indent=2))  # fmt: skip
        return
    click.echo(f"certificate  {site.cert}")
    click.echo(f"fingerprint  {site.fingerprint}")
    click.echo(f"for          {', '.join(site.names) or '(no names)'}")
    click.echo(f"valid until  {site.not_after:%Y-%m-%d %H:%M} UTC")


@tls_group.command("self-signed")
@click.option("--cert", type=click.Path(path_type=Path, dir_okay=False), required=True)
@click.option("--key", type=click.Path(path_type=Path, dir_okay=False), required=True)
@click.option("--name", "names", multiple=True, help="A DNS name of the node (repeat).")
@click.option("--address", "addresses", multiple=True, help="An IP address of the node (repeat).")
@click.option("--days", type=click.IntRange(1, SELF_SIGNED_DAYS), default=SELF_SIGNED_DAYS,
              show_default=True)  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def self_signed_command(
    cert: Path, key: Path, names: tuple[str, ...], addresses: tuple[str, ...], days: int,
    as_json: bool,
) -> None:  # fmt: skip
    """Make a P-256 key and a self-signed certificate for the node's names and addresses.

    The key is written with mode 0600. Give clients the certificate (or its fingerprint) to
    trust: curl --cacert CERT, or the browser's certificate settings.
    """
    with reported_errors():
        site = make_self_signed(cert, key, list(names), list(addresses), days)
    describe(site, as_json)


@tls_group.command("show")
@click.argument("cert", type=click.Path(path_type=Path))
@click.argument("key", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def show_command(cert: Path, key: Path, as_json: bool) -> None:
    """Check CERT and KEY as the server will (PEM, PKCS#8, the pair, validity); print them."""
    with reported_errors():
        site = load_site_certificate(cert, key)
    describe(site, as_json)
