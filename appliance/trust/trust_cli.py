"""`appliance trust`: show whom the node trusts per role, verify and apply trust updates, make them.

Exit codes, as for the other commands: 0 done, 2 a flag or a trust file of the node is not as
needed, 3 the trust update is refused (nothing changed), 4 a fault of the node (nothing changed
unless the line says the update was applied).
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from appliance import settings as cfg
from appliance.console import data_dir_option as console_data_dir_option
from appliance.console import reported_errors
from appliance.data.store import DataStore
from appliance.errors import ConfigError, KeyFileError
from appliance.faults import os_fault
from appliance.fsio import atomic_write_bytes
from appliance.trust import trust_layout as layout
from appliance.trust.sshsig import (
    AllowedSigner,
    load_private_key,
    load_revoked_keys,
    parse_allowed_signers,
)
from appliance.trust.trust_update import (
    TrustFiles,
    TrustRejected,
    TrustUpdate,
    VerifiedUpdate,
    apply_update,
    check_update,
    make_update,
    read_update_file,
    update_role,
)

BUNDLE_SIGNERS_ENV = "APPLIANCE_BUNDLE_SIGNERS"
BUNDLE_SIGNERS_DEFAULT = f"{layout.NODE_CONFIG_DIR}/{layout.NODE_SIGNERS[layout.ROLE_BUNDLE]}"

pack_signers_option = click.option(
    cfg.SIGNERS.flag,
    "pack_signers",
    envvar=cfg.SIGNERS.env,
    default=cfg.SIGNERS.default,
    show_default=True,
    show_envvar=True,
    type=click.Path(path_type=Path, dir_okay=False),
    help="allowed_signers of role pack (result packs); its .revoked and .serial sit beside it.",
)
bundle_signers_option = click.option(
    "--bundle-signers",
    envvar=BUNDLE_SIGNERS_ENV,
    default=BUNDLE_SIGNERS_DEFAULT,
    show_default=True,
    show_envvar=True,
    type=click.Path(path_type=Path, dir_okay=False),
    help="allowed_signers of role bundle (the release key); its .revoked and .serial beside it.",
)
data_dir_option = console_data_dir_option(
    help="Data store whose history.jsonl records each trust update applied or refused."
)


def role_files(pack_signers: Path, bundle_signers: Path) -> dict[str, TrustFiles]:
    """Each role's trust files on this node."""
    return {
        layout.ROLE_BUNDLE: TrustFiles(layout.ROLE_BUNDLE, bundle_signers),
        layout.ROLE_PACK: TrustFiles(layout.ROLE_PACK, pack_signers),
    }


@click.group("trust", context_settings={"help_option_names": ["-h", "--help"]})
def trust_group() -> None:
    """Whom the node trusts per role (bundle, pack): show it, apply signed trust updates."""


def _utc(moment: datetime | None) -> str | None:
    return None if moment is None else f"{moment:%Y-%m-%dT%H:%M:%SZ}"


def _status(line: AllowedSigner, revoked: bool, now: datetime) -> str:
    if revoked:
        return "revoked"
    if line.valid_before is not None and now > line.valid_before:
        return "expired"
    if line.valid_after is not None and now < line.valid_after:
        return "not yet valid"
    return "valid"


def _role_view(files: TrustFiles, now: datetime) -> dict[str, Any]:
    """One role's trust as JSON: its keys with validity, its revocations, its serial."""
    try:
        text = files.signers.read_text(encoding="utf-8")
    except FileNotFoundError:
        text = None
    except (OSError, UnicodeDecodeError) as exc:
        msg = f"cannot read allowed signers file {files.signers}: {exc}"
        raise KeyFileError(msg) from exc
    lines = [] if text is None else parse_allowed_signers(text, source=str(files.signers))
    revoked = load_revoked_keys(files.revoked)
    keys = []
    for line in lines:
        keys.append(
            {
                "principals": list(line.principals),
                "fingerprint": line.key.fingerprint,
                "key_type": line.key.key_type,
                "namespaces": None if line.namespaces is None else list(line.namespaces),
                "valid_after": _utc(line.valid_after),
                "valid_before": _utc(line.valid_before),
                "status": _status(line, line.key.blob in revoked, now),
                "signs_trust_updates": line.namespaces is not None
                and layout.SIGNATURE_NAMESPACE in line.namespaces,
            }
        )
    return {
        "role": files.role,
        "namespace": layout.ROLE_NAMESPACES[files.role],
        "signers_file": str(files.signers),
        "present": text is not None,
        "serial": files.serial(),
        "revocation_list": str(files.revoked),
        "keys": keys,
        "revoked": [{"fingerprint": k.fingerprint, "key": k.openssh_line()} for k in revoked.keys],
    }


@trust_group.command("show")
@pack_signers_option
@bundle_signers_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON (stable, for scripts).")
def show_command(pack_signers: Path, bundle_signers: Path, as_json: bool) -> None:
    """List the keys trusted per role, with their validity, revocations and the applied serial."""
    now = datetime.now(UTC)
    with reported_errors():
        views = [
            _role_view(files, now) for files in role_files(pack_signers, bundle_signers).values()
        ]
    if as_json:
        click.echo(json.dumps({"checked_at": _utc(now), "roles": views}, indent=2))
        return
    for view in views:
        state = "" if view["present"] else " (no such file)"
        click.echo(
            f"role {view['role']} (namespace {view['namespace']}): {view['signers_file']}{state}, "
            f"serial {view['serial']}"
        )
        for key in view["keys"]:
            namespaces = ",".join(key["namespaces"]) if key["namespaces"] else "any namespace"
            window = _window_text(key)
            click.echo(
                f"  {key['status']:<13} {key['fingerprint']}  {','.join(key['principals'])}  "
                f"[{namespaces}]{window}"
            )
        if not view["keys"]:
            click.echo("  (no keys: nothing of this role is accepted)")
        for key in view["revoked"]:
            click.echo(f"  revoked       {key['fingerprint']}  (in {view['revocation_list']})")


def _window_text(key: dict[str, Any]) -> str:
    parts = []
    if key["valid_after"]:
        parts.append(f"valid-after {key['valid_after']}")
    if key["valid_before"]:
        parts.append(f"valid-before {key['valid_before']}")
    return f"  {', '.join(parts)}" if parts else ""


def _files_for(path: Path, roles: dict[str, TrustFiles]) -> TrustFiles:
    """The trust files of the role the update names."""
    manifest, _signature = read_update_file(path)
    return roles[update_role(manifest)]


def _summary(verified: VerifiedUpdate) -> str:
    update = verified.update
    changes = [
        f"{len(verified.added)} key(s) added",
        f"{len(verified.removed)} removed",
        f"{len(verified.revoked)} revoked",
    ]
    if verified.unrevoked:
        changes.append(f"{len(verified.unrevoked)} no longer revoked")
    return (
        f"role {update.role}: serial {verified.previous_serial} -> {update.serial}, "
        f"signed by {verified.signer.principal} ({verified.signer.fingerprint}); {', '.join(changes)}"
    )


@trust_group.command("verify")
@click.argument("update", type=click.Path(path_type=Path, dir_okay=False))
@pack_signers_option
@bundle_signers_option
@click.option("--json", "as_json", is_flag=True, help="Print what would change as JSON.")
def verify_command(update: Path, pack_signers: Path, bundle_signers: Path, as_json: bool) -> None:
    """Check a trust update (.trust) against this node's trust, without applying it.

    Exits 0 when `appliance trust apply` would apply it, 3 when it would refuse it.
    """
    with reported_errors():
        files = _files_for(update, role_files(pack_signers, bundle_signers))
        verified = check_update(update, files)
    if as_json:
        click.echo(json.dumps(verified.audit_fields(), indent=2))
        return
    click.echo(f"{update}: OK, would apply: {_summary(verified)}")


@trust_group.command("apply")
@click.argument("update", type=click.Path(path_type=Path, dir_okay=False))
@pack_signers_option
@bundle_signers_option
@data_dir_option
def apply_command(update: Path, pack_signers: Path, bundle_signers: Path, data_dir: Path) -> None:
    """Verify a trust update (.trust) and install the allowed_signers and revocations it carries.

    The update must be signed (namespace appliance-trust) by a key the role already trusts with
    that namespace named in its line, and carry a serial above the one last applied. Refused:
    one line, exit 3, nothing changed. Either way the node's history.jsonl records it (written
    as the data store's owner; not at all when there is no data store yet, as on a first install).
    """
    with reported_errors():
        try:
            files = _files_for(update, role_files(pack_signers, bundle_signers))
            verified = apply_update(update, files)
        except TrustRejected as exc:
            note = record_event(data_dir, "trust-update-refused", **exc.audit_fields(update))
            if note:
                click.echo(f"note: the refusal is not in history.jsonl: {note}", err=True)
            raise
        note = record_event(data_dir, "trust-update", **verified.audit_fields())
    click.echo(f"{update}: applied: {_summary(verified)}")
    if note:
        click.echo(f"note: the update is not in history.jsonl: {note}", err=True)


def record_event(data_dir: Path, event: str, **fields: Any) -> str | None:
    """Append `event` to the data store's audit trail as the store's owner; else say why not.

    Root applies trust updates (the trust files are root's); the store is the appliance user's,
    whose files a root-owned history.jsonl or head would lock out. A node without a data store
    (a first install) gets none created here.
    """
    if not data_dir.is_dir():
        return f"there is no data store at {data_dir} yet"
    owner = data_dir.stat()
    if os.geteuid() != 0 or owner.st_uid == 0:
        try:
            DataStore(data_dir).record(event, **fields)
        except OSError as exc:
            return str(os_fault(exc, "recording it"))
        return None
    pid = os.fork()
    if pid == 0:  # the child writes as the store's owner, then leaves without cleanup
        code = 1
        try:
            os.setgroups([])
            os.setgid(owner.st_gid)
            os.setuid(owner.st_uid)
            DataStore(data_dir).record(event, **fields)
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        return f"writing {data_dir}'s history.jsonl as its owner (uid {owner.st_uid}) failed"
    return None


@trust_group.command("make")
@click.option(
    "--role",
    type=click.Choice(layout.ROLES),
    required=True,
    help="The role whose trust is replaced.",
)
@click.option(
    "--serial",
    type=click.IntRange(min=1, max=layout.MAX_SERIAL),
    required=True,
    help="Above the serial every node has applied (appliance trust show prints it).",
)
@click.option(
    "--allowed-signers",
    "allowed_signers",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    required=True,
    help="The role's complete new allowed_signers file.",
)
@click.option(
    "--revoked",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    default=None,
    help="The role's complete revocation list (public key lines) [default: none revoked].",
)
@click.option(
    "--key",
    type=click.Path(path_type=Path, dir_okay=False),
    required=True,
    help="Private key (OpenSSH Ed25519) the nodes trust for the role with namespace appliance-trust.",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path, dir_okay=False),
    required=True,
    help="The .trust file to write.",
)
def make_command(
    role: str, serial: int, allowed_signers: Path, revoked: Path | None, key: Path, output: Path
) -> None:
    """Write a signed trust update (the signing side: the release machine, the ML workstation)."""
    with reported_errors():
        try:
            signers_text = allowed_signers.read_text(encoding="utf-8")
            revoked_text = "" if revoked is None else revoked.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            msg = f"cannot read the new trust: {exc}"
            raise ConfigError(msg) from exc
        update = TrustUpdate(
            role, serial, datetime.now(UTC).replace(microsecond=0), signers_text, revoked_text
        )
        try:
            archive = make_update(update, load_private_key(key))
        except TrustRejected as exc:
            msg = f"a node would refuse this update: {exc}"
            raise ConfigError(msg) from exc
        atomic_write_bytes(output, archive)
    click.echo(f"{output}: trust update for role {role}, serial {serial}")
