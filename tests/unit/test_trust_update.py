"""Trust updates (appliance/trust/trust_update.py): rotation, revocation, and hostile updates.

Every refusal is one line and leaves each trust file byte for byte as it was; the stock
`ssh-keygen -Y verify` (with `-r` for the revocation list) reaches the same verdict as our code.
"""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import tarfile
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from appliance.errors import KeyFileError, NodeFault, SignatureError
from appliance.trust import trust_layout as layout
from appliance.trust import trust_update
from appliance.trust.sshsig import (
    SignerKey,
    generate_key,
    load_allowed_signers,
    load_private_key,
    sign,
    verify,
)
from appliance.trust.trust_update import (
    TrustFiles,
    TrustRejected,
    TrustUpdate,
    apply_update,
    make_update,
    read_update_bytes,
)

pytestmark = pytest.mark.skipif(shutil.which("ssh-keygen") is None, reason="needs ssh-keygen")

BUNDLE_NS = layout.ROLE_NAMESPACES[layout.ROLE_BUNDLE]
PACK_NS = layout.ROLE_NAMESPACES[layout.ROLE_PACK]
TRUST_NS = layout.SIGNATURE_NAMESPACE
ISSUED = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


@dataclass(frozen=True)
class Key:
    """A signing key on disk and its public half."""

    path: Path
    public: SignerKey

    def line(self, principal: str, *namespaces: str, window: str = "") -> str:
        options = f'namespaces="{",".join(namespaces)}"' + (f",{window}" if window else "")
        return f"{principal} {options} {self.public.openssh_line()}\n"


def new_key(folder: Path, name: str) -> Key:
    folder.mkdir(parents=True, exist_ok=True)
    return Key(folder / name, generate_key(folder / name, name))


@pytest.fixture
def keys(tmp_path: Path) -> dict[str, Key]:
    folder = tmp_path / "keys"
    return {name: new_key(folder, name) for name in ("old", "new", "stranger", "workstation")}


@pytest.fixture
def node(tmp_path: Path, keys: dict[str, Key]) -> dict[str, TrustFiles]:
    """A node's /etc/appliance: the old release key may sign bundles and trust updates;
    the workstation key may sign packs only."""
    etc = tmp_path / "etc"
    etc.mkdir()
    bundle = etc / "bundle_signers"
    bundle.write_text(keys["old"].line("release", BUNDLE_NS, TRUST_NS))
    pack = etc / "pack_signers"
    pack.write_text(keys["workstation"].line("ml@ws", PACK_NS))
    return {
        layout.ROLE_BUNDLE: TrustFiles(layout.ROLE_BUNDLE, bundle),
        layout.ROLE_PACK: TrustFiles(layout.ROLE_PACK, pack),
    }


def snapshot(files: TrustFiles) -> dict[str, bytes]:
    """Every file of the trust folder, to show that a refusal changed nothing."""
    return {p.name: p.read_bytes() for p in sorted(files.signers.parent.iterdir())}


def write_update(
    folder: Path,
    key: Key,
    signers: str,
    *,
    role: str = layout.ROLE_BUNDLE,
    serial: int = 1,
    revoked: str = "",
    name: str = "update.trust",
) -> Path:
    update = TrustUpdate(role, serial, ISSUED, signers, revoked)
    path = folder / name
    path.write_bytes(make_update(update, load_private_key(key.path)))
    return path


def raw_update(folder: Path, key: Key, manifest: bytes, name: str = "raw.trust") -> Path:
    """An update archive of any manifest bytes, signed by `key` (what a hostile signer can make)."""
    signature = sign(manifest, load_private_key(key.path), TRUST_NS)
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:", format=tarfile.USTAR_FORMAT) as tar:
        for member, data in (
            (layout.UPDATE_MANIFEST, manifest),
            (layout.UPDATE_SIGNATURE, signature),
        ):
            info = tarfile.TarInfo(member)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    path = folder / name
    path.write_bytes(out.getvalue())
    return path


def refused(path: Path, files: TrustFiles) -> TrustRejected:
    """Apply an update that must be refused; check it said so in one line and changed nothing."""
    before = snapshot(files)
    with pytest.raises(TrustRejected) as caught:
        apply_update(path, files)
    assert "\n" not in str(caught.value)
    assert snapshot(files) == before
    return caught.value


def stock_verify(
    allowed: Path, principal: str, namespace: str, sig: Path, message: Path, revoked: Path | None
) -> subprocess.CompletedProcess[str]:
    argv = ["ssh-keygen", "-Y", "verify", "-f", str(allowed), "-I", principal, "-n", namespace]
    argv += ["-s", str(sig)] + (["-r", str(revoked)] if revoked else [])
    with message.open("rb") as stdin:
        return subprocess.run(argv, stdin=stdin, capture_output=True, text=True, check=False)


def rotation_signers(keys: dict[str, Key], old_window: str = "") -> str:
    return keys["old"].line("release", BUNDLE_NS, TRUST_NS, window=old_window) + keys["new"].line(
        "release", BUNDLE_NS, TRUST_NS
    )


# --- applying a good update -------------------------------------------------------------------


def test_a_rotation_applies_and_both_keys_verify_during_the_overlap(
    tmp_path: Path, keys: dict[str, Key], node: dict[str, TrustFiles]
) -> None:
    files = node[layout.ROLE_BUNDLE]
    later = (datetime.now(UTC) + timedelta(days=30)).strftime("%Y%m%d%H%M%SZ")
    path = write_update(tmp_path, keys["old"], rotation_signers(keys, f'valid-before="{later}"'))
    applied = apply_update(path, files)
    assert applied.update.serial == 1 and applied.previous_serial == 0
    assert applied.added == (keys["new"].public.fingerprint,)
    assert files.serial() == 1
    trusted = load_allowed_signers(files.signers)
    for key in (keys["old"], keys["new"]):
        signature = sign(b"SHA256SUMS", load_private_key(key.path), BUNDLE_NS)
        assert (
            verify(b"SHA256SUMS", signature, trusted, BUNDLE_NS).fingerprint
            == key.public.fingerprint
        )


def test_the_retired_key_is_refused_after_its_valid_before(
    tmp_path: Path, keys: dict[str, Key], node: dict[str, TrustFiles]
) -> None:
    files = node[layout.ROLE_BUNDLE]
    apply_update(
        write_update(tmp_path, keys["old"], rotation_signers(keys, 'valid-before="20261130Z"')),
        files,
    )
    signature = sign(b"SHA256SUMS", load_private_key(keys["old"].path), BUNDLE_NS)
    with pytest.raises(SignatureError, match=r"expired at 2026-11-30T00:00:00Z \(valid-before"):
        verify(b"SHA256SUMS", signature, load_allowed_signers(files.signers), BUNDLE_NS)
    (tmp_path / "msg").write_bytes(b"SHA256SUMS")
    (tmp_path / "msg.sig").write_bytes(signature)
    result = stock_verify(
        files.signers, "release", BUNDLE_NS, tmp_path / "msg.sig", tmp_path / "msg", None
    )
    assert result.returncode != 0


def test_an_auditor_checks_an_update_with_tar_and_ssh_keygen_alone(
    tmp_path: Path, keys: dict[str, Key], node: dict[str, TrustFiles]
) -> None:
    files = node[layout.ROLE_BUNDLE]
    path = write_update(tmp_path, keys["old"], rotation_signers(keys))
    out = tmp_path / "unpacked"
    out.mkdir()
    subprocess.run(["tar", "-xf", str(path), "-C", str(out)], check=True)
    manifest, sig = out / layout.UPDATE_MANIFEST, out / layout.UPDATE_SIGNATURE
    good = stock_verify(files.signers, "release", TRUST_NS, sig, manifest, None)
    assert good.returncode == 0, good.stderr
    assert 'Good "appliance-trust" signature for release' in good.stdout
    # The JSON it signs reads as the format says (jq or python3 -m json.tool would show it).
    assert json.loads(manifest.read_bytes())["serial"] == 1


def test_a_later_update_applies_over_an_earlier_one(
    tmp_path: Path, keys: dict[str, Key], node: dict[str, TrustFiles]
) -> None:
    files = node[layout.ROLE_BUNDLE]
    apply_update(write_update(tmp_path, keys["old"], rotation_signers(keys), name="1.trust"), files)
    only_new = keys["new"].line("release", BUNDLE_NS, TRUST_NS)
    second = write_update(tmp_path, keys["new"], only_new, serial=5, name="5.trust")
    applied = apply_update(second, files)
    assert applied.removed == (keys["old"].public.fingerprint,)
    assert files.serial() == 5
    assert files.signers.read_text() == only_new


# --- revocation --------------------------------------------------------------------------------


def test_a_revoked_key_is_refused_though_a_line_still_names_it(
    tmp_path: Path, keys: dict[str, Key], node: dict[str, TrustFiles]
) -> None:
    """The update keeps the old line (an operator's mistake) and revokes the key: refused."""
    files = node[layout.ROLE_BUNDLE]
    revoked = keys["old"].public.openssh_line() + "\n"
    apply_update(
        write_update(tmp_path, keys["old"], rotation_signers(keys), revoked=revoked), files
    )
    signature = sign(b"SHA256SUMS", load_private_key(keys["old"].path), BUNDLE_NS)
    with pytest.raises(
        SignatureError,
        match=r"is revoked \(listed in the revocation list .*bundle_signers\.revoked\)",
    ):
        verify(b"SHA256SUMS", signature, load_allowed_signers(files.signers), BUNDLE_NS)
    (tmp_path / "msg").write_bytes(b"SHA256SUMS")
    (tmp_path / "msg.sig").write_bytes(signature)
    sig, msg = tmp_path / "msg.sig", tmp_path / "msg"
    assert stock_verify(files.signers, "release", BUNDLE_NS, sig, msg, None).returncode == 0
    assert (
        stock_verify(files.signers, "release", BUNDLE_NS, sig, msg, files.revoked).returncode != 0
    )
    # The revoked key can no longer sign trust updates either.
    again = write_update(tmp_path, keys["old"], rotation_signers(keys), serial=2, name="2.trust")
    assert "is revoked" in str(refused(again, files))


def test_a_revoked_pack_key_is_refused_by_verify_and_by_ssh_keygen_r(
    tmp_path: Path, keys: dict[str, Key], node: dict[str, TrustFiles]
) -> None:
    files = node[layout.ROLE_PACK]
    lead = new_key(tmp_path / "keys", "lead")
    files.signers.write_text(
        lead.line("lead@ml", PACK_NS, TRUST_NS) + keys["workstation"].line("ml@ws", PACK_NS)
    )
    signers = lead.line("lead@ml", PACK_NS, TRUST_NS) + keys["workstation"].line("ml@ws", PACK_NS)
    revoked = keys["workstation"].public.openssh_line() + "\n"
    applied = apply_update(
        write_update(tmp_path, lead, signers, role=layout.ROLE_PACK, revoked=revoked), files
    )
    assert applied.revoked == (keys["workstation"].public.fingerprint,)
    signature = sign(b"pack.json", load_private_key(keys["workstation"].path), PACK_NS)
    with pytest.raises(SignatureError, match="is revoked"):
        verify(b"pack.json", signature, load_allowed_signers(files.signers), PACK_NS)
    (tmp_path / "pack.json").write_bytes(b"pack.json")
    (tmp_path / "pack.json.sig").write_bytes(signature)
    result = stock_verify(
        files.signers,
        "ml@ws",
        PACK_NS,
        tmp_path / "pack.json.sig",
        tmp_path / "pack.json",
        files.revoked,
    )
    assert result.returncode != 0


def test_a_binary_krl_is_refused_rather_than_read_as_empty(node: dict[str, TrustFiles]) -> None:
    files = node[layout.ROLE_BUNDLE]
    files.revoked.write_bytes(layout.KRL_MAGIC + b"\0" * 40)
    with pytest.raises(KeyFileError, match="is a binary KRL"):
        load_allowed_signers(files.signers)


def test_a_malformed_revocation_list_is_a_node_error_naming_its_line(
    node: dict[str, TrustFiles],
) -> None:
    files = node[layout.ROLE_BUNDLE]
    files.revoked.write_text("# revoked\nssh-ed25519 not-base64!\n")
    with pytest.raises(KeyFileError, match=r"bundle_signers\.revoked line 2"):
        load_allowed_signers(files.signers)


# --- hostile updates: each refused in one line, nothing changed ---------------------------------


def test_an_update_signed_by_an_untrusted_key_is_refused(
    tmp_path: Path, keys: dict[str, Key], node: dict[str, TrustFiles]
) -> None:
    path = write_update(
        tmp_path, keys["stranger"], keys["stranger"].line("release", BUNDLE_NS, TRUST_NS)
    )
    exc = refused(path, node[layout.ROLE_BUNDLE])
    assert exc.reason == "signature" and "is not an allowed signer" in str(exc)


def test_an_update_with_a_lower_serial_is_refused(
    tmp_path: Path, keys: dict[str, Key], node: dict[str, TrustFiles]
) -> None:
    files = node[layout.ROLE_BUNDLE]
    apply_update(
        write_update(tmp_path, keys["old"], rotation_signers(keys), serial=7, name="7.trust"), files
    )
    exc = refused(
        write_update(tmp_path, keys["old"], rotation_signers(keys), serial=6, name="6.trust"), files
    )
    assert exc.reason == "old-serial" and "older than the applied serial 7" in str(exc)


def test_a_replayed_update_is_refused(
    tmp_path: Path, keys: dict[str, Key], node: dict[str, TrustFiles]
) -> None:
    files = node[layout.ROLE_BUNDLE]
    path = write_update(tmp_path, keys["old"], rotation_signers(keys))
    apply_update(path, files)
    exc = refused(path, files)
    assert exc.reason == "replay" and "already applied" in str(exc)


def test_an_update_cut_anywhere_is_refused(
    tmp_path: Path, keys: dict[str, Key], node: dict[str, TrustFiles]
) -> None:
    """Cut anywhere before the end-of-archive marker (two zero blocks); past it, nothing is lost."""
    files = node[layout.ROLE_BUNDLE]
    whole = write_update(tmp_path, keys["old"], rotation_signers(keys)).read_bytes()
    with tarfile.open(fileobj=io.BytesIO(whole)) as tar:
        data_end = tar.getmembers()[-1].offset_data + 512
    cut = tmp_path / "cut.trust"
    for length in [*range(0, data_end, 97), data_end, data_end + 511, data_end + 1023]:
        cut.write_bytes(whole[:length])
        exc = refused(cut, files)
        assert exc.reason in ("truncated", "not-an-update", "bad-update"), (length, exc)


def test_an_update_with_duplicate_json_keys_is_refused(
    tmp_path: Path, keys: dict[str, Key], node: dict[str, TrustFiles]
) -> None:
    """Signed by the trusted key, yet two readers would see two serials: refused."""
    files = node[layout.ROLE_BUNDLE]
    good = TrustUpdate(layout.ROLE_BUNDLE, 1, ISSUED, rotation_signers(keys), "").to_bytes()
    doubled = good.replace(b'"serial": 1,', b'"serial": 1,\n  "serial": 99,')
    exc = refused(raw_update(tmp_path, keys["old"], doubled), files)
    assert "'serial' appears twice" in str(exc)


def test_an_update_for_a_role_its_signer_does_not_hold_is_refused(
    tmp_path: Path, keys: dict[str, Key], node: dict[str, TrustFiles]
) -> None:
    """The workstation key (role pack) signs an update of role bundle: not a bundle signer."""
    path = write_update(
        tmp_path, keys["workstation"], keys["workstation"].line("release", BUNDLE_NS, TRUST_NS)
    )
    exc = refused(path, node[layout.ROLE_BUNDLE])
    assert "not an allowed signer" in str(exc)


def test_a_key_without_the_trust_namespace_cannot_rewrite_trust(
    tmp_path: Path, keys: dict[str, Key], node: dict[str, TrustFiles]
) -> None:
    files = node[layout.ROLE_PACK]
    signers = keys["workstation"].line("ml@ws", PACK_NS, TRUST_NS)
    exc = refused(
        write_update(tmp_path, keys["workstation"], signers, role=layout.ROLE_PACK), files
    )
    assert "not an allowed signer for namespace 'appliance-trust'" in str(exc)


def test_a_line_without_namespaces_may_not_sign_trust_updates(
    tmp_path: Path, keys: dict[str, Key], node: dict[str, TrustFiles]
) -> None:
    """ssh-keygen lets a line without namespaces= sign anything; rewriting trust needs it named."""
    files = node[layout.ROLE_BUNDLE]
    files.signers.write_text(f"release {keys['old'].public.openssh_line()}\n")
    exc = refused(write_update(tmp_path, keys["old"], rotation_signers(keys)), files)
    assert "does not name namespace appliance-trust" in str(exc)


@pytest.mark.parametrize(
    ("namespaces", "says"),
    [
        ((PACK_NS, TRUST_NS), "grants appliance-result-pack, beyond role bundle"),
        ((BUNDLE_NS, "*", TRUST_NS), "grants *, beyond role bundle"),
        ((BUNDLE_NS,), "no key keeps namespace appliance-trust"),
    ],
)
def test_an_update_granting_beyond_its_role_is_refused(
    tmp_path: Path,
    keys: dict[str, Key],
    node: dict[str, TrustFiles],
    namespaces: tuple[str, ...],
    says: str,
) -> None:
    path = write_update_unchecked(tmp_path, keys["old"], keys["new"].line("release", *namespaces))
    exc = refused(path, node[layout.ROLE_BUNDLE])
    assert exc.reason == "grant" and says in str(exc)


def test_an_update_granting_every_namespace_is_refused(
    tmp_path: Path, keys: dict[str, Key], node: dict[str, TrustFiles]
) -> None:
    signers = f"release {keys['new'].public.openssh_line()}\n"
    exc = refused(write_update_unchecked(tmp_path, keys["old"], signers), node[layout.ROLE_BUNDLE])
    assert "has no namespaces= option" in str(exc)


def write_update_unchecked(folder: Path, key: Key, signers: str) -> Path:
    """An update the signing tool would refuse to make, signed all the same."""
    manifest = TrustUpdate(layout.ROLE_BUNDLE, 1, ISSUED, signers, "").to_bytes()
    return raw_update(folder, key, manifest)


@pytest.mark.parametrize(
    ("change", "says"),
    [
        ({"serial": 0}, "serial must be a whole number"),
        ({"serial": True}, "serial must be a whole number"),
        ({"serial": "2"}, "serial must be a whole number"),
        ({"format_version": 2}, "format_version 2 is not supported"),
        ({"format": "something-else"}, "format must be"),
        ({"role": "root"}, "role 'root' is not one of bundle, pack"),
        ({"issued_at": "yesterday"}, "issued_at"),
        ({"allowed_signers": ["a list"]}, "allowed_signers must be a string"),
        ({"revoked_keys": "ssh-ed25519 AAAA"}, "revoked_keys"),
        ({"extra": 1}, "unknown extra"),
    ],
)
def test_a_signed_update_with_a_bad_field_is_refused(
    tmp_path: Path,
    keys: dict[str, Key],
    node: dict[str, TrustFiles],
    change: dict[str, object],
    says: str,
) -> None:
    fields = (
        TrustUpdate(layout.ROLE_BUNDLE, 1, ISSUED, rotation_signers(keys), "").as_json() | change
    )
    exc = refused(
        raw_update(tmp_path, keys["old"], json.dumps(fields).encode()), node[layout.ROLE_BUNDLE]
    )
    assert says in str(exc) or (says == "revoked_keys" and "malformed" in str(exc)), str(exc)


def test_an_update_with_an_extra_member_is_refused(
    tmp_path: Path, keys: dict[str, Key], node: dict[str, TrustFiles]
) -> None:
    good = write_update(tmp_path, keys["old"], rotation_signers(keys)).read_bytes()
    out = io.BytesIO()
    with (
        tarfile.open(fileobj=io.BytesIO(good)) as source,
        tarfile.open(fileobj=out, mode="w:") as tar,
    ):
        for member in source.getmembers():
            tar.addfile(member, source.extractfile(member))
        extra = tarfile.TarInfo("bundle_signers")
        extra.size = 1
        tar.addfile(extra, io.BytesIO(b"x"))
    path = tmp_path / "extra.trust"
    path.write_bytes(out.getvalue())
    assert "a trust update holds only" in str(refused(path, node[layout.ROLE_BUNDLE]))


def test_an_update_whose_manifest_is_a_link_is_refused(
    tmp_path: Path, keys: dict[str, Key], node: dict[str, TrustFiles]
) -> None:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:") as tar:
        link = tarfile.TarInfo(layout.UPDATE_MANIFEST)
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/appliance/bundle_signers"
        tar.addfile(link)
    path = tmp_path / "link.trust"
    path.write_bytes(out.getvalue())
    assert "is a symbolic link" in str(refused(path, node[layout.ROLE_BUNDLE]))


def test_the_wrong_role_for_the_files_is_refused(
    tmp_path: Path, keys: dict[str, Key], node: dict[str, TrustFiles]
) -> None:
    """`appliance watch` holds the pack role's files: a bundle update is not for it."""
    path = write_update(tmp_path, keys["old"], rotation_signers(keys))
    exc = refused(path, node[layout.ROLE_PACK])
    assert exc.reason == "wrong-role"


def test_the_signing_tool_refuses_what_a_node_would_refuse(keys: dict[str, Key]) -> None:
    update = TrustUpdate(
        layout.ROLE_BUNDLE, 1, ISSUED, keys["new"].line("release", PACK_NS, TRUST_NS), ""
    )
    with pytest.raises(TrustRejected, match="beyond role bundle"):
        make_update(update, load_private_key(keys["old"].path))


# --- a crash while applying --------------------------------------------------------------------


def test_a_crash_between_writes_leaves_the_old_serial_and_the_update_applies_again(
    tmp_path: Path,
    keys: dict[str, Key],
    node: dict[str, TrustFiles],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    files = node[layout.ROLE_BUNDLE]
    files.revoked.write_text(keys["stranger"].public.openssh_line() + "\n")
    revoked = keys["workstation"].public.openssh_line() + "\n"
    path = write_update(tmp_path, keys["old"], rotation_signers(keys), revoked=revoked)
    real_write = trust_update.atomic_write_bytes  # type: ignore[attr-defined]
    calls: list[Path] = []

    def crash_on_second_write(target: Path, data: bytes, mode: int = 0o644) -> None:
        calls.append(target)
        if len(calls) == 2:
            raise OSError(28, "No space left on device", str(target))
        real_write(target, data, mode)

    monkeypatch.setattr(trust_update, "atomic_write_bytes", crash_on_second_write)
    with pytest.raises(NodeFault, match="No space left on device"):
        apply_update(path, files)
    # After the first step: the old signers with both revocation lists, the old serial.
    revoked_now = files.revoked.read_text()
    assert keys["stranger"].public.openssh_line() in revoked_now
    assert keys["workstation"].public.openssh_line() in revoked_now
    assert files.serial() == 0
    monkeypatch.setattr(trust_update, "atomic_write_bytes", real_write)
    apply_update(path, files)
    assert files.serial() == 1
    assert keys["stranger"].public.openssh_line() not in files.revoked.read_text()


def test_read_update_bytes_names_the_members_in_order(tmp_path: Path, keys: dict[str, Key]) -> None:
    data = write_update(tmp_path, keys["old"], rotation_signers(keys)).read_bytes()
    manifest, signature = read_update_bytes(data, "u.trust")
    assert json.loads(manifest)["role"] == "bundle"
    assert signature.startswith(b"-----BEGIN SSH SIGNATURE-----")


def test_an_update_made_with_stock_tools_as_formats_md_shows_is_applied(
    tmp_path: Path, keys: dict[str, Key], node: dict[str, TrustFiles]
) -> None:
    """json + `ssh-keygen -Y sign -n appliance-trust` + `tar --format=ustar`: no code of ours."""
    if shutil.which("tar") is None:
        pytest.skip("needs tar")
    work = tmp_path / "stock"
    work.mkdir()
    manifest = TrustUpdate(layout.ROLE_BUNDLE, 1, ISSUED, rotation_signers(keys), "").as_json()
    (work / layout.UPDATE_MANIFEST).write_text(json.dumps(manifest, indent=2))
    sign_argv = ["ssh-keygen", "-Y", "sign", "-f", str(keys["old"].path), "-n", TRUST_NS]
    subprocess.run([*sign_argv, layout.UPDATE_MANIFEST], cwd=work, check=True, capture_output=True)
    tar_argv = ["tar", "--format=ustar", "-cf", str(tmp_path / "stock.trust")]
    subprocess.run([*tar_argv, *layout.UPDATE_MEMBERS], cwd=work, check=True)
    applied = apply_update(tmp_path / "stock.trust", node[layout.ROLE_BUNDLE])
    assert applied.update.serial == 1 and applied.signer.principal == "release"
