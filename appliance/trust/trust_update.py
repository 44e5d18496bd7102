"""Trust updates: change whom a node trusts for a role, offline, signed by a key it already trusts.

The order follows the trust chain, as for packs and bundles: the archive's two members read
safely, the JSON read strictly (one reading only), then the signature (namespace
"appliance-trust") by a key trusted for the role the update names, whose allowed_signers line
names that namespace itself, and not revoked; then every field, then the serial, which must be
greater than the one last applied (an older or replayed update is refused, as TUF refuses old
root metadata). Applying writes the revocation list, the allowed_signers and the serial each
whole (fsio.atomic_write_bytes), in an order whose every step trusts no more than both the old
and the new state; an update refused at any check changes nothing. See docs/formats.md.
"""

from __future__ import annotations

import fcntl
import hashlib
import io
import json
import os
import tarfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from appliance.errors import ConfigError, KeyFileError, NodeFault, Rejected, SignatureError
from appliance.faults import describe, os_fault
from appliance.fsio import atomic_write_bytes
from appliance.packs.result_pack import format_timestamp, is_integer, parse_timestamp
from appliance.trust import trust_layout as layout
from appliance.trust.safe_tar import member_kind, trailer_problem
from appliance.trust.sshsig import (
    AllowedSigner,
    AllowedSigners,
    RevokedKeys,
    SignerKey,
    VerifiedSignature,
    load_allowed_signers,
    load_revoked_keys,
    parse_allowed_signers,
    parse_revoked_keys,
    sign,
    verify,
)
from appliance.trust.strict_json import StrictJSONError, parse_strict_json


class TrustRejected(Rejected):
    """A trust update was refused; nothing on the node changed. `role` is the one it names, once read."""

    role: str | None = None

    def audit_fields(self, path: Path) -> dict[str, Any]:
        """What the audit trail records of the refusal (event `trust-update-refused`)."""
        role = {} if self.role is None else {"role": self.role}
        return {"file": path.name, **role, "reason": self.reason, "message": str(self)}


@dataclass(frozen=True)
class TrustFiles:
    """Where one role's trust lives on this node: its allowed_signers and the files beside it."""

    role: str
    signers: Path

    @property
    def revoked(self) -> Path:
        """The role's revocation list (`ssh-keygen -Y verify -r` reads the same file)."""
        return layout.revoked_path(self.signers)

    @property
    def serial_file(self) -> Path:
        """The file holding the serial of the last update applied."""
        return layout.serial_path(self.signers)

    def serial(self) -> int:
        """The serial of the last update applied to this role; 0 when none was."""
        try:
            text = self.serial_file.read_text(encoding="ascii").strip()
        except FileNotFoundError:
            return 0
        except (OSError, UnicodeDecodeError) as exc:
            msg = f"cannot read the trust serial {self.serial_file}: {exc}"
            raise KeyFileError(msg) from exc
        if not text.isdigit() or int(text) > layout.MAX_SERIAL:
            msg = f"trust serial file {self.serial_file} does not hold a serial number"
            raise KeyFileError(msg)
        return int(text)


@dataclass(frozen=True)
class TrustUpdate:
    """The content of trust-update.json: what a role's whole trust becomes, and its serial."""

    role: str
    serial: int
    issued_at: datetime
    allowed_signers: str
    revoked_keys: str

    def as_json(self) -> dict[str, Any]:
        """The update as a JSON object, fields in format order."""
        return {
            "format": layout.FORMAT_NAME,
            "format_version": layout.FORMAT_VERSION,
            "role": self.role,
            "serial": self.serial,
            "issued_at": format_timestamp(self.issued_at),
            "allowed_signers": self.allowed_signers,
            "revoked_keys": self.revoked_keys,
        }

    def to_bytes(self) -> bytes:
        """Canonical trust-update.json bytes (the exact bytes that get signed)."""
        return (json.dumps(self.as_json(), indent=2, ensure_ascii=True) + "\n").encode("ascii")

    def signers(self) -> list[AllowedSigner]:
        """The allowed_signers lines the update installs."""
        return parse_allowed_signers(self.allowed_signers, source=layout.UPDATE_MANIFEST)

    def revoked(self) -> RevokedKeys:
        """The revocation list the update installs."""
        return parse_revoked_keys(self.revoked_keys, source=layout.UPDATE_MANIFEST)


@dataclass(frozen=True)
class VerifiedUpdate:
    """A trust update whose signature, fields and serial are good for this node."""

    path: Path
    update: TrustUpdate
    signer: VerifiedSignature
    previous_serial: int
    sha256: str
    added: tuple[str, ...]
    removed: tuple[str, ...]
    revoked: tuple[str, ...]
    unrevoked: tuple[str, ...]

    def audit_fields(self) -> dict[str, Any]:
        """What the audit trail records of the update (event `trust-update`)."""
        return {
            "role": self.update.role,
            "serial": self.update.serial,
            "previous_serial": self.previous_serial,
            "issued_at": format_timestamp(self.update.issued_at),
            "file": self.path.name,
            "sha256": self.sha256,
            "signer": self.signer.principal,
            "fingerprint": self.signer.fingerprint,
            "added": list(self.added),
            "removed": list(self.removed),
            "revoked": list(self.revoked),
            "unrevoked": list(self.unrevoked),
        }


def _reject(reason: str, message: str) -> TrustRejected:
    return TrustRejected(reason, message)


def read_update_file(path: Path) -> tuple[bytes, bytes]:
    """trust-update.json and its signature from a `.trust` archive, refusing anything else in it."""
    try:
        size = path.stat().st_size
        if not path.is_file():
            raise _reject("not-an-update", f"{path.name} is not a regular file")
        if size > layout.MAX_UPDATE_FILE_BYTES:
            msg = f"{path.name} is {size} bytes, over the {layout.MAX_UPDATE_FILE_BYTES}-byte limit"
            raise _reject("bad-update", msg)
        data = path.read_bytes()
    except FileNotFoundError as exc:
        msg = f"trust update {path} does not exist"
        raise ConfigError(msg) from exc
    except OSError as exc:
        raise os_fault(exc, f"reading {path}") from exc
    return read_update_bytes(data, path.name)


def read_update_bytes(data: bytes, name: str) -> tuple[bytes, bytes]:
    """The two members of a trust update archive held in memory (`name` is for messages)."""
    handle = io.BytesIO(data)
    try:
        with tarfile.open(fileobj=handle, mode="r:") as tar:
            members = [_member_data(tar, name, want) for want in layout.UPDATE_MEMBERS]
            try:
                extra = tar.next()
            except tarfile.TarError as exc:
                raise _reject("truncated", f"{name} is truncated ({exc})") from exc
            if extra is not None:
                msg = f"{name} holds {extra.name!r}; a trust update holds only {', '.join(layout.UPDATE_MEMBERS)}"
                raise _reject("bad-update", msg)
            problem = trailer_problem(handle, tar.offset)
    except tarfile.TarError as exc:
        raise _reject(
            "not-an-update", f"{name} is not an uncompressed tar archive ({exc})"
        ) from exc
    if problem is not None:
        raise _reject("truncated", f"{name} {problem}")
    return members[0], members[1]


def _member_data(tar: tarfile.TarFile, name: str, want: str) -> bytes:
    """The next member, which must be the regular file `want`, within its size limit."""
    try:
        member = tar.next()
    except tarfile.TarError as exc:
        raise _reject("truncated", f"{name} is truncated ({exc})") from exc
    if member is None:
        raise _reject("truncated", f"{name} ends before {want}")
    if member.name != want:
        order = " then ".join(layout.UPDATE_MEMBERS)
        raise _reject("bad-update", f"{name} holds {member.name!r} where {want} must be ({order})")
    if not member.isreg():
        raise _reject("bad-update", f"{name}: {want} is {member_kind(member)}")
    limit = (
        layout.MAX_MANIFEST_BYTES if want == layout.UPDATE_MANIFEST else layout.MAX_SIGNATURE_BYTES
    )
    if member.size > limit:
        raise _reject(
            "bad-update", f"{name}: {want} is {member.size} bytes, over the {limit}-byte limit"
        )
    stream = tar.extractfile(member)
    try:
        content = b"" if stream is None else stream.read()
    except tarfile.TarError as exc:
        raise _reject("truncated", f"{name} is truncated inside {want}") from exc
    if len(content) != member.size:
        raise _reject("truncated", f"{name} is truncated inside {want}")
    return content


def _update_object(data: bytes) -> dict[str, Any]:
    """trust-update.json as a JSON object of this format with exactly its fields."""
    try:
        raw = parse_strict_json(data)
    except StrictJSONError as exc:
        raise _reject("bad-update", f"{layout.UPDATE_MANIFEST}: {exc}") from exc
    if not isinstance(raw, dict):
        raise _reject("bad-update", f"{layout.UPDATE_MANIFEST}: must be a JSON object")
    if raw.get("format") != layout.FORMAT_NAME:
        raise _reject(
            "bad-update", f"{layout.UPDATE_MANIFEST}: format must be {layout.FORMAT_NAME!r}"
        )
    version = raw.get("format_version")
    if not is_integer(version) or version != layout.FORMAT_VERSION:
        msg = (
            f"{layout.UPDATE_MANIFEST}: format_version {version!r} is not supported "
            f"(this appliance reads version {layout.FORMAT_VERSION})"
        )
        raise _reject("unsupported-format", msg)
    missing = [key for key in layout.UPDATE_FIELDS if key not in raw]
    unknown = sorted(set(raw) - set(layout.UPDATE_FIELDS))
    if missing or unknown:
        parts = [f"missing {', '.join(missing)}"] if missing else []
        parts += [f"unknown {', '.join(unknown)}"] if unknown else []
        raise _reject("bad-update", f"{layout.UPDATE_MANIFEST}: {'; '.join(parts)}")
    if raw["role"] not in layout.ROLES:
        msg = f"{layout.UPDATE_MANIFEST}: role {raw['role']!r} is not one of {', '.join(layout.ROLES)}"
        raise _reject("bad-update", msg)
    return raw


def update_role(data: bytes) -> str:
    """The role a trust-update.json names (still unverified: it only says whose keys must sign)."""
    role: str = _update_object(data)["role"]
    return role


def parse_update(data: bytes) -> TrustUpdate:
    """Parse and check trust-update.json's fields; TrustRejected with a one-line reason."""
    raw = _update_object(data)
    where = layout.UPDATE_MANIFEST
    serial = raw["serial"]
    if not is_integer(serial) or not 1 <= serial <= layout.MAX_SERIAL:
        raise _reject(
            "bad-update", f"{where}: serial must be a whole number from 1 to {layout.MAX_SERIAL}"
        )
    try:
        issued_at = parse_timestamp(raw["issued_at"])
    except ValueError as exc:
        raise _reject("bad-update", f"{where}: issued_at: {exc}") from exc
    for key in ("allowed_signers", "revoked_keys"):
        if not isinstance(raw[key], str):
            raise _reject("bad-update", f"{where}: {key} must be a string (the file's text)")
    update = TrustUpdate(
        raw["role"], serial, issued_at, raw["allowed_signers"], raw["revoked_keys"]
    )
    try:
        signers = update.signers()
        update.revoked()
    except KeyFileError as exc:
        raise _reject("bad-update", str(exc)) from exc
    _check_grants(update.role, signers)
    return update


def _check_grants(role: str, signers: list[AllowedSigner]) -> None:
    """Each line may grant only the role's namespace and the trust namespace, named one by one."""
    allowed = {layout.ROLE_NAMESPACES[role], layout.SIGNATURE_NAMESPACE}
    if not signers:
        msg = f"{layout.UPDATE_MANIFEST}: allowed_signers lists no keys (role {role} would trust nobody)"
        raise _reject("grant", msg)
    for signer in signers:
        who = f"{signer.principals[0]} ({signer.key.fingerprint})"
        if signer.namespaces is None:
            msg = (
                f"{layout.UPDATE_MANIFEST}: the line of {who} has no namespaces= option, which "
                f"grants every namespace; role {role} may grant {', '.join(sorted(allowed))} only"
            )
            raise _reject("grant", msg)
        beyond = sorted(set(signer.namespaces) - allowed)
        if beyond:
            msg = (
                f"{layout.UPDATE_MANIFEST}: the line of {who} grants {', '.join(beyond)}, "
                f"beyond role {role} ({', '.join(sorted(allowed))})"
            )
            raise _reject("grant", msg)
    if not any(
        layout.SIGNATURE_NAMESPACE in signer.namespaces for signer in signers if signer.namespaces
    ):
        msg = (
            f"{layout.UPDATE_MANIFEST}: no key keeps namespace {layout.SIGNATURE_NAMESPACE}, so "
            f"role {role} could never be updated again"
        )
        raise _reject("grant", msg)


def _trusted_signers(files: TrustFiles) -> AllowedSigners:
    """The role's current allowed_signers and revocation list."""
    try:
        return load_allowed_signers(files.signers)
    except KeyFileError as exc:
        msg = f"role {files.role}: {exc}"
        raise KeyFileError(msg) from exc


def _check_signer(
    manifest: bytes, signature: bytes, files: TrustFiles, signers: AllowedSigners
) -> VerifiedSignature:
    """The signature must be by a key of the role whose own line names the trust namespace."""
    try:
        signer = verify(manifest, signature, signers, layout.SIGNATURE_NAMESPACE)
    except SignatureError as exc:
        msg = f"{layout.UPDATE_SIGNATURE}: {exc} (role {files.role}, {files.signers})"
        raise _reject("signature", msg) from exc
    now = datetime.now(UTC)
    named = [
        line
        for line in signers
        if line.key.fingerprint == signer.fingerprint
        and line.namespaces is not None
        and layout.SIGNATURE_NAMESPACE in line.namespaces
        and line.is_valid_at(now)
    ]
    if not named:
        # A line without namespaces= allows every namespace to ssh-keygen; rewriting trust
        # needs the namespace named, so that a key granted "anything" by habit cannot.
        msg = (
            f"{layout.UPDATE_SIGNATURE}: key {signer.fingerprint} is trusted for role {files.role} "
            f"but its line does not name namespace {layout.SIGNATURE_NAMESPACE}"
        )
        raise _reject("signature", msg)
    return signer


def _fingerprints(keys: list[SignerKey] | tuple[SignerKey, ...]) -> set[str]:
    return {key.fingerprint for key in keys}


def verify_update(
    manifest: bytes, signature: bytes, files: TrustFiles, path: Path
) -> VerifiedUpdate:
    """Check a trust update against the node's trust for its role; TrustRejected if not good."""
    role = update_role(manifest)
    try:
        return _verify_role_update(manifest, signature, files, path, role)
    except TrustRejected as exc:
        exc.role = role
        raise


def _verify_role_update(
    manifest: bytes, signature: bytes, files: TrustFiles, path: Path, role: str
) -> VerifiedUpdate:
    """verify_update once the update's role is read."""
    if role != files.role:
        msg = f"{path.name} is a trust update for role {role}, not {files.role}"
        raise _reject("wrong-role", msg)
    signers = _trusted_signers(files)
    signer = _check_signer(manifest, signature, files, signers)
    update = parse_update(manifest)
    previous = files.serial()
    if update.serial == previous:
        msg = f"{path.name}: serial {update.serial} of role {role} is already applied (a replay)"
        raise _reject("replay", msg)
    if update.serial < previous:
        msg = f"{path.name}: serial {update.serial} is older than the applied serial {previous} of role {role}"
        raise _reject("old-serial", msg)
    old_keys = _fingerprints([line.key for line in signers])
    new_keys = _fingerprints([line.key for line in update.signers()])
    old_revoked = _fingerprints(signers.revoked.keys)
    new_revoked = _fingerprints(update.revoked().keys)
    return VerifiedUpdate(
        path=path,
        update=update,
        signer=signer,
        previous_serial=previous,
        sha256=hashlib.sha256(manifest).hexdigest(),
        added=tuple(sorted(new_keys - old_keys)),
        removed=tuple(sorted(old_keys - new_keys)),
        revoked=tuple(sorted(new_revoked - old_revoked)),
        unrevoked=tuple(sorted(old_revoked - new_revoked)),
    )


@contextmanager
def _trust_lock(folder: Path) -> Iterator[None]:
    """Hold the trust folder's lock: two updates applied at once would race on the serial."""
    try:
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    except OSError as exc:
        raise os_fault(exc, f"opening the trust folder {folder}") from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _revocation_text(keys: list[SignerKey]) -> bytes:
    return "".join(f"{key.openssh_line()}\n" for key in keys).encode("utf-8")


def _write_update(files: TrustFiles, update: TrustUpdate, current: RevokedKeys) -> None:
    """Write the role's new trust so that each step trusts no more than old and new both do.

    First the revocation list as old and new together, then the allowed_signers, then the new
    revocation list alone, then the serial: a crash between two steps leaves the old serial,
    so the same update applies again, and meanwhile no key either state refuses verifies.
    """
    new_revoked = list(update.revoked().keys)
    union = list(current.keys) + [key for key in new_revoked if key.blob not in current]
    header = f"# role {update.role}, trust update serial {update.serial}, issued {format_timestamp(update.issued_at)}\n"
    atomic_write_bytes(files.revoked, (header.encode() + _revocation_text(union)))
    signers_text = (
        update.allowed_signers
        if update.allowed_signers.endswith("\n")
        else f"{update.allowed_signers}\n"
    )
    atomic_write_bytes(files.signers, signers_text.encode("utf-8"))
    atomic_write_bytes(files.revoked, header.encode() + _revocation_text(new_revoked))
    atomic_write_bytes(files.serial_file, f"{update.serial}\n".encode("ascii"))


def apply_update(path: Path, files: TrustFiles) -> VerifiedUpdate:
    """Verify the trust update at `path` for `files.role` and install it; nothing changes if refused."""
    manifest, signature = read_update_file(path)
    with _trust_lock(files.signers.parent):
        verified = verify_update(manifest, signature, files, path)
        current = load_revoked_keys(files.revoked)
        try:
            _write_update(files, verified.update, current)
        except OSError as exc:
            raise _write_fault(exc, files) from exc
    return verified


def _write_fault(exc: OSError, files: TrustFiles) -> NodeFault:
    """A fault writing the trust files; if this process may not write them, say who may."""
    fault = os_fault(exc, f"writing the trust of role {files.role}")
    if fault.reason not in ("permission", "read-only"):
        return fault
    msg = (
        f"writing the trust of role {files.role} failed on this node ({describe(exc)}); "
        f"apply it as a user that may write {files.signers.parent} (root on a node, "
        "with appliance trust apply)"
    )
    return NodeFault(fault.reason, msg)


def check_update(path: Path, files: TrustFiles) -> VerifiedUpdate:
    """Verify the trust update at `path` for `files.role` without installing it."""
    manifest, signature = read_update_file(path)
    return verify_update(manifest, signature, files, path)


def make_update(update: TrustUpdate, private_key: Ed25519PrivateKey) -> bytes:
    """The `.trust` archive of `update`, signed with `private_key` (what `ssh-keygen -Y sign` makes)."""
    manifest = update.to_bytes()
    parse_update(manifest)  # the signing side refuses what the node would refuse
    signature = sign(manifest, private_key, layout.SIGNATURE_NAMESPACE)
    out = io.BytesIO()
    mtime = int(update.issued_at.timestamp())
    with tarfile.open(fileobj=out, mode="w:", format=tarfile.USTAR_FORMAT) as tar:
        for name, data in zip(layout.UPDATE_MEMBERS, (manifest, signature), strict=True):
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(data), mtime, 0o644
            info.uname = info.gname = "root"
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()
