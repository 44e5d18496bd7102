"""`appliance token create|list|revoke`: the node's named API tokens (docs/admin-guide.md, "Tokens")."""

from __future__ import annotations

import json
import os
from datetime import datetime
from pathlib import Path
from typing import Any

import click

from appliance import settings as cfg
from appliance.access.tokens import (
    BOOTSTRAP_ADMIN,
    BOOTSTRAP_ROLES,
    BOOTSTRAP_VIEWER,
    ROLES,
    VIEWER,
    TokenRecord,
    TokenStore,
    parse_lifetime,
    token_digest,
)
from appliance.console import data_dir_option as console_data_dir_option
from appliance.console import reported_errors
from appliance.data.store import DataStore, now_utc
from appliance.errors import ApplianceError, ConfigError, NodeFault
from appliance.packs.result_pack import format_timestamp

BOOTSTRAP_SETTINGS = {
    BOOTSTRAP_ADMIN: (cfg.ADMIN_TOKEN, cfg.ADMIN_TOKEN_FILE),
    BOOTSTRAP_VIEWER: (cfg.VIEWER_TOKEN, cfg.VIEWER_TOKEN_FILE),
}

data_dir_option = console_data_dir_option()


def shown(moment: datetime | None, never: str = "never") -> str:
    """A time for the table."""
    return never if moment is None else format_timestamp(moment)


def bootstrap_secret(name: str) -> str | None:
    """The secret of a bootstrap token as the server's settings give it here, if any."""
    value, file = BOOTSTRAP_SETTINGS[name]
    return cfg.read_token(os.environ, value, file) or None


def bootstrap_source(name: str) -> str | None:
    """Where a bootstrap token is set in this environment (a file or a variable), if it is."""
    value, file = BOOTSTRAP_SETTINGS[name]
    if os.environ.get(file.env):
        return f"{file.env}={os.environ[file.env]}"
    return value.env if os.environ.get(value.env, "").strip() else None


def require_owner(data_dir: Path) -> None:
    """Refuse root writing into a data dir another user owns: the server could not read it."""
    try:
        owner = data_dir.stat().st_uid
    except FileNotFoundError:
        return
    if os.geteuid() == 0 and owner != 0:
        msg = (
            f"{data_dir} belongs to uid {owner}: run this as that user (the node's `appliance` "
            "command does), or the server could not read what it writes"
        )
        raise ConfigError(msg)


@click.group("token")
def token_group() -> None:
    """Named API tokens: create one per person or system, list them, revoke them.

    The node keeps only each token's SHA-256 (in DATA_DIR/tokens.json); a running server
    honours a new or revoked token within a second. The bootstrap admin token of the server's
    settings (APPLIANCE_ADMIN_TOKEN_FILE) is listed as `bootstrap`, and can be revoked too.
    """


@token_group.command("create")
@click.argument("name")
@click.option(
    "--role", type=click.Choice(ROLES), required=True, help="viewer: read; admin: also change."
)
@click.option(
    "--expires", default=None, help="Lifetime, e.g. 90d, 12h, 30m or 2w [default: never]."
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON (the secret included).")
@data_dir_option
def create_command(
    name: str, role: str, expires: str | None, as_json: bool, data_dir: Path
) -> None:
    """Make a token NAME and print its secret once (on stdout, alone on its line).

    The secret is never stored and cannot be shown again: keep it, or revoke the token and
    make another. Names are never reused, so the audit trail stays unambiguous.
    """
    with reported_errors():
        lifetime = None if expires is None else parse_lifetime(expires)
        require_owner(data_dir)
        store = DataStore(data_dir)
        book = TokenStore(data_dir)
        had_viewer = any(r.role == VIEWER and r.revoked is None for r in book.records())
        secret, record = book.create(name, role, lifetime, store.actor.label(), now_utc())
        try:
            store.record(
                "token-create",
                token=name,
                role=role,
                expires=shown(record.expires, never="") or None,
            )
        except BaseException:
            book.undo_create(name)  # no token the audit trail does not know of
            raise
    if as_json:
        click.echo(json.dumps(record_json(record, None) | {"secret": secret}, indent=2))
    else:
        click.echo(secret)
    lasts = f"expires {shown(record.expires)}" if record.expires else "does not expire"
    click.echo(f"made {role} token {name!r} ({lasts}); its secret is printed above, once", err=True)
    if role == VIEWER and not had_viewer:
        click.echo(
            "note: this node now has a viewer token, so its read endpoints and dashboard need one",
            err=True,
        )


@token_group.command("revoke")
@click.argument("name")
@click.option(
    "--open-reads",
    is_flag=True,
    help="Allow revoking the last viewer token, which opens the read endpoints to everyone.",
)
@data_dir_option
def revoke_command(name: str, open_reads: bool, data_dir: Path) -> None:
    """Revoke token NAME: a running server refuses it within a second (401 token_revoked).

    Revoking the bootstrap token revokes the secret its file holds now: restart the server
    after changing that file, before revoking it.
    """
    with reported_errors():
        require_owner(data_dir)
        store = DataStore(data_dir)
        secret = bootstrap_secret(name) if name in BOOTSTRAP_ROLES else None
        book = TokenStore(data_dir)
        record = book.revoke(name, store.actor.label(), now_utc(), secret, open_reads)
        try:
            store.record("token-revoke", token=name, role=record.role)
        except (OSError, ApplianceError) as exc:
            msg = f"token {name!r} is revoked, but the audit trail could not record it: {exc}"
            raise NodeFault("trail-unwritable", msg) from exc
    click.echo(f"revoked {record.role} token {name!r}")
    if open_reads and not book.book(()).reads_need_token:
        click.echo(
            "note: no named viewer token is left: unless the server has APPLIANCE_VIEWER_TOKEN, "
            "its reads are open to everyone",
            err=True,
        )
    if name in BOOTSTRAP_ROLES:
        _value, file = BOOTSTRAP_SETTINGS[name]
        click.echo(
            f"note: that secret is refused from now on; a new secret in {file.env} is a new "
            f"{name} token",
            err=True,
        )


@token_group.command("keep-revocations")
@click.argument("earlier", type=click.Path(path_type=Path, file_okay=False))
@data_dir_option
def keep_revocations_command(earlier: Path, data_dir: Path) -> None:
    """Carry the revocations of the token book in EARLIER (a data dir) into this one.

    The restore playbook runs it with the data it put aside, so that a token revoked after the
    backup was made stays revoked.
    """
    with reported_errors():
        require_owner(data_dir)
        store = DataStore(data_dir)
        changed = TokenStore(data_dir).keep_revocations(
            TokenStore(earlier).records(), store.actor.label()
        )
        if changed:
            store.record("token-revocations-kept", source=str(earlier), tokens=changed)
    click.echo(f"{changed} revocation(s) carried over from {earlier}")


def record_json(record: TokenRecord, last_used: datetime | None) -> dict[str, Any]:
    """One token as `token list --json` prints it (never its hash)."""
    return {
        "name": record.name,
        "role": record.role,
        "state": record.state(now_utc()),
        "created": format_timestamp(record.created),
        "created_by": record.created_by,
        "expires": None if record.expires is None else format_timestamp(record.expires),
        "revoked": None if record.revoked is None else format_timestamp(record.revoked),
        "revoked_by": record.revoked_by,
        "last_used": None if last_used is None else format_timestamp(last_used),
        "source": "tokens.json",
    }


def bootstrap_rows(store: TokenStore, records: tuple[TokenRecord, ...]) -> list[dict[str, Any]]:
    """The bootstrap tokens set in this environment, as rows of the list."""
    rows = []
    for name, role in BOOTSTRAP_ROLES.items():
        source = bootstrap_source(name)
        if source is None:
            continue
        try:
            secret = bootstrap_secret(name)
        except ConfigError:
            secret = None  # listed all the same; the server refuses to start on it
        revoked = [r for r in records if secret and r.sha256 == token_digest(secret)]
        last = store.last_used(name)
        rows.append({
            "name": name,
            "role": role,
            "state": "revoked" if revoked else "active" if secret else "unreadable",
            "created": None,
            "created_by": "the server's settings",
            "expires": None,
            "revoked": format_timestamp(revoked[0].revoked) if revoked and revoked[0].revoked else None,
            "revoked_by": revoked[0].revoked_by if revoked else None,
            "last_used": None if last is None else format_timestamp(last),
            "source": source,
        })  # fmt: skip
    return rows


@token_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (stable, for scripts).")
@data_dir_option
def list_command(as_json: bool, data_dir: Path) -> None:
    """List the tokens: name, role, state, created, expires, last used (to a minute)."""
    with reported_errors():
        store = TokenStore(data_dir)
        records = store.records()
        named = [r for r in records if r.name not in BOOTSTRAP_ROLES]
        rows = bootstrap_rows(store, records)
        rows += [record_json(r, store.last_used(r.name)) for r in named]
    if as_json:
        click.echo(json.dumps({"tokens": rows}, indent=2))
        return
    if not rows:
        click.echo("no tokens (make one with `appliance token create NAME --role admin`)")
        return
    click.echo(
        f"{'NAME':<20} {'ROLE':<7} {'STATE':<10} {'CREATED':<21} {'EXPIRES':<21} {'LAST USED':<21} BY"
    )
    for row in rows:
        click.echo(
            f"{row['name']:<20} {row['role']:<7} {row['state']:<10} {row['created'] or '-':<21} "
            f"{row['expires'] or 'never':<21} {row['last_used'] or '-':<21} {row['created_by']}"
        )
