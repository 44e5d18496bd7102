"""Trust updates and revocation for result packs, through the real commands: `appliance trust`,
`appliance import`, `appliance watch`, and the stock `ssh-keygen -Y verify -r`.

The node trusts a team lead's key for role pack with namespace appliance-trust (it may rewrite
the role's trust) and workstation keys for packs only.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from appliance.packs.pack_layout import MANIFEST_NAME, SIGNATURE_NAME
from appliance.trust import trust_layout as layout
from tests.conftest import Signer, current_of, make_pack, make_signer, run
from tests.integration.test_watch import watch_once
from tests.unit.test_trust_update import PACK_NS, TRUST_NS, Key, new_key, write_update


@dataclass(frozen=True)
class PackNode:
    """A node's pack trust (etc/pack_signers and the files beside it) and its data store."""

    etc: Path
    data: Path
    lead: Key
    workstation: Signer

    @property
    def signers(self) -> Path:
        return self.etc / "pack_signers"

    @property
    def trust(self) -> Signer:
        """What `watch_once` and `import_into` take: the node's signers file."""
        return Signer(self.workstation.key, self.workstation.public, self.signers, "node")


def line(principal: str, key: Signer | Key, *namespaces: str) -> str:
    return f'{principal} namespaces="{",".join(namespaces)}" {key.public.openssh_line()}\n'


@pytest.fixture
def node(tmp_path: Path) -> PackNode:
    etc = tmp_path / "etc"
    etc.mkdir()
    lead = new_key(tmp_path / "keys", "lead")
    workstation = make_signer(tmp_path / "ws1", "ml@ws1")
    (etc / "pack_signers").write_text(
        line("lead@ml", lead, PACK_NS, TRUST_NS) + line("ml@ws1", workstation, PACK_NS)
    )
    return PackNode(etc, tmp_path / "data", lead, workstation)


def trust(node: PackNode, *args: str | Path) -> subprocess.CompletedProcess[str]:
    """`appliance trust ...` with the node's files (a bundle role that does not exist here)."""
    files: list[str | Path] = [
        "--signers",
        node.signers,
        "--bundle-signers",
        node.etc / "bundle_signers",
    ]
    if args[0] == "apply":
        files += ["--data-dir", node.data]
    return run("appliance", "trust", *args, *files)


def history(node: PackNode) -> list[dict[str, object]]:
    path = node.data / "history.jsonl"
    return [json.loads(text) for text in path.read_text().splitlines()] if path.exists() else []


def stock_verify_pack(pack: Path, allowed: Path, principal: str, revoked: Path | None) -> int:
    """`ssh-keygen -Y verify` of a pack's pack.json, as docs/auditor-guide.md shows it."""
    with tarfile.open(pack) as tar:
        manifest = tar.extractfile(MANIFEST_NAME).read()  # type: ignore[union-attr]
        signature = tar.extractfile(SIGNATURE_NAME).read()  # type: ignore[union-attr]
    sig = pack.with_suffix(".sig")
    sig.write_bytes(signature)
    argv = ["ssh-keygen", "-Y", "verify", "-f", str(allowed), "-I", principal]
    argv += ["-n", PACK_NS, "-s", str(sig)] + (["-r", str(revoked)] if revoked else [])
    result = subprocess.run(argv, input=manifest, capture_output=True, check=False)
    return result.returncode


def test_a_pack_signed_by_a_revoked_workstation_key_is_refused_by_the_importer_and_ssh_keygen(
    tmp_path: Path, node: PackNode, demo_tables: Path
) -> None:
    pack = make_pack(demo_tables, node.workstation, tmp_path / "ws1.pack")
    assert stock_verify_pack(pack, node.signers, "ml@ws1", None) == 0
    node.data.mkdir()
    signers = line("lead@ml", node.lead, PACK_NS, TRUST_NS) + line(
        "ml@ws1", node.workstation, PACK_NS
    )
    revoked = node.workstation.public.openssh_line() + "\n"
    update = write_update(tmp_path, node.lead, signers, role=layout.ROLE_PACK, revoked=revoked)
    applied = trust(node, "apply", update)
    assert applied.returncode == 0, applied.stderr
    assert "1 revoked" in applied.stdout
    result = run("appliance", "import", pack, "--data-dir", node.data, "--signers", node.signers)
    assert result.returncode == 3
    [error] = result.stderr.strip().splitlines()[-1:]
    assert error.startswith("error: ws1.pack:") and "is revoked" in error, result.stderr
    assert "pack_signers.revoked" in error
    assert current_of(node.data) is None
    revoked_list = node.etc / "pack_signers.revoked"
    assert stock_verify_pack(pack, node.signers, "ml@ws1", revoked_list) != 0
    events = [e["event"] for e in history(node)]
    assert events == ["trust-update", "reject"]


def test_watch_applies_a_trust_update_before_the_pack_beside_it(
    tmp_path: Path, node: PackNode, demo_tables: Path
) -> None:
    """A new workstation's first pack arrives with the update that trusts its key."""
    ws2 = make_signer(tmp_path / "ws2", "ml@ws2")
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    # Named so that the pack sorts first: the order is the watcher's, not the names'.
    make_pack(demo_tables, ws2, inbox / "a-first.pack")
    signers = node.signers.read_text() + line("ml@ws2", ws2, PACK_NS)
    write_update(inbox, node.lead, signers, role=layout.ROLE_PACK, name="z-trust.trust")
    result = watch_once(inbox, node.data, node.trust)
    assert result.returncode == 0, result.stderr
    assert "z-trust.trust applied: role pack serial 0 -> 1" in result.stderr
    assert "a-first.pack imported" in result.stderr
    assert result.stderr.index("z-trust.trust applied") < result.stderr.index(
        "a-first.pack imported"
    )
    assert (inbox / "done" / "z-trust.trust").exists() and (
        inbox / "done" / "a-first.pack"
    ).exists()
    assert current_of(node.data) is not None
    assert [e["event"] for e in history(node)][:2] == ["trust-update", "import"]


def test_watch_refuses_a_hostile_trust_update_and_changes_no_trust(
    tmp_path: Path, node: PackNode
) -> None:
    """The workstation key (packs only) tries to trust itself for everything."""
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    before = node.signers.read_bytes()
    signers = line("ml@ws1", node.workstation, PACK_NS, TRUST_NS)
    key = Key(node.workstation.key, node.workstation.public)
    write_update(inbox, key, signers, role=layout.ROLE_PACK, name="mine.trust")
    result = watch_once(inbox, node.data, node.trust)
    assert result.returncode == 3
    assert "mine.trust refused:" in result.stderr and "appliance-trust" in result.stderr
    assert node.signers.read_bytes() == before
    assert not (node.etc / "pack_signers.serial").exists()
    reason = (inbox / "rejected" / "mine.trust.reason.txt").read_text()
    assert reason.startswith("signature: ")
    assert history(node)[-1]["event"] == "trust-update-refused"


def test_watch_refuses_a_bundle_trust_update_in_a_pack_inbox(
    tmp_path: Path, node: PackNode
) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    signers = line("release", node.lead, "appliance-bundle", TRUST_NS)
    write_update(inbox, node.lead, signers, role=layout.ROLE_BUNDLE, name="release.trust")
    result = watch_once(inbox, node.data, node.trust)
    assert result.returncode == 3
    assert "is a trust update for role bundle, not pack" in result.stderr


def test_trust_apply_refuses_in_one_line_and_records_it(tmp_path: Path, node: PackNode) -> None:
    signers = node.signers.read_text()
    update = write_update(tmp_path, node.lead, signers, role=layout.ROLE_PACK)
    node.data.mkdir()
    assert trust(node, "apply", update).returncode == 0
    again = trust(node, "apply", update)
    assert again.returncode == 3
    assert again.stderr.strip().splitlines() == [
        "error: update.trust: serial 1 of role pack is already applied (a replay)"
    ]
    [refusal] = [e for e in history(node) if e["event"] == "trust-update-refused"]
    assert refusal["reason"] == "replay" and refusal["role"] == "pack"


def test_trust_apply_records_nothing_and_creates_no_store_without_one(
    tmp_path: Path, node: PackNode
) -> None:
    update = write_update(tmp_path, node.lead, node.signers.read_text(), role=layout.ROLE_PACK)
    result = trust(node, "apply", update)
    assert result.returncode == 0
    assert "not in history.jsonl: there is no data store" in result.stderr
    assert not node.data.exists()


def test_trust_show_lists_each_role_with_validity_and_revocations(
    tmp_path: Path, node: PackNode
) -> None:
    ws2 = make_signer(tmp_path / "ws2", "ml@ws2")
    expired = (
        f'ml@ws2 namespaces="{PACK_NS}",valid-before="20200101Z" {ws2.public.openssh_line()}\n'
    )
    node.signers.write_text(node.signers.read_text() + expired)
    (node.etc / "pack_signers.revoked").write_text(node.workstation.public.openssh_line() + "\n")
    result = trust(node, "show", "--json")
    assert result.returncode == 0, result.stderr
    roles = {view["role"]: view for view in json.loads(result.stdout)["roles"]}
    assert roles["bundle"]["present"] is False and roles["bundle"]["keys"] == []
    statuses = {key["principals"][0]: key["status"] for key in roles["pack"]["keys"]}
    assert statuses == {"lead@ml": "valid", "ml@ws1": "revoked", "ml@ws2": "expired"}
    assert [k["signs_trust_updates"] for k in roles["pack"]["keys"]] == [True, False, False]
    text = trust(node, "show")
    assert "role pack (namespace appliance-result-pack)" in text.stdout
    assert "expired" in text.stdout and "valid-before 2020-01-01T00:00:00Z" in text.stdout


def test_trust_verify_checks_without_applying(tmp_path: Path, node: PackNode) -> None:
    update = write_update(tmp_path, node.lead, node.signers.read_text(), role=layout.ROLE_PACK)
    result = trust(node, "verify", update)
    assert result.returncode == 0 and "OK, would apply: role pack: serial 0 -> 1" in result.stdout
    assert not (node.etc / "pack_signers.serial").exists()


def test_trust_make_writes_what_apply_accepts_and_refuses_what_it_would_refuse(
    tmp_path: Path, node: PackNode
) -> None:
    new = tmp_path / "new_pack_signers"
    new.write_text(node.signers.read_text())
    out = tmp_path / "made.trust"
    argv: list[str | Path] = ["--role", "pack", "--serial", "3", "--allowed-signers", new]
    argv += ["--key", node.lead.path]
    made = run("appliance", "trust", "make", *argv, "-o", out)
    assert made.returncode == 0, made.stderr
    assert trust(node, "apply", out).returncode == 0
    assert (node.etc / "pack_signers.serial").read_text() == "3\n"
    new.write_text(f"ml@ws1 {node.workstation.public.openssh_line()}\n")
    refused = run("appliance", "trust", "make", *argv, "-o", tmp_path / "bad.trust")
    assert refused.returncode == 2
    assert "a node would refuse this update" in refused.stderr
    assert not (tmp_path / "bad.trust").exists()


def test_a_cut_trust_update_is_refused_by_apply_in_one_line(tmp_path: Path, node: PackNode) -> None:
    update = write_update(tmp_path, node.lead, node.signers.read_text(), role=layout.ROLE_PACK)
    data = update.read_bytes()
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        end = tar.getmembers()[-1].offset_data
    update.write_bytes(data[: end + 10])
    node.data.mkdir()
    result = trust(node, "apply", update)
    assert result.returncode == 3
    [error] = result.stderr.strip().splitlines()
    assert error.startswith("error: update.trust is truncated")


def test_a_trust_update_the_node_cannot_apply_holds_no_pack_back(
    tmp_path: Path, node: PackNode, demo_tables: Path
) -> None:
    """The update waits (a fault of the node); the pack beside it goes on with today's trust."""
    (
        node.etc / "pack_signers.serial"
    ).mkdir()  # the node's trust is damaged: not the update's fault
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    make_pack(demo_tables, node.workstation, inbox / "today.pack")
    write_update(inbox, node.lead, node.signers.read_text(), role=layout.ROLE_PACK, name="u.trust")
    result = watch_once(inbox, node.data, node.trust)
    assert result.returncode == 3  # something is left waiting
    assert "u.trust waits:" in result.stderr and "today.pack imported" in result.stderr
    assert (inbox / "u.trust").exists()


def test_root_records_in_the_trail_as_the_data_stores_owner(tmp_path: Path, node: PackNode) -> None:
    """Root applies trust (its files are root's); the trail stays the appliance user's."""
    if os.geteuid() != 0:
        pytest.skip("needs root to apply as root and a store owned by another user")
    nobody = 65534
    # Below a folder others may pass through, as /var/lib is (pytest's own is root's alone).
    shared = Path(tempfile.mkdtemp(prefix="trust-owner-", dir="/var/tmp"))
    try:
        shared.chmod(0o755)
        store = dataclasses.replace(node, data=shared / "data")
        store.data.mkdir(mode=0o750)
        os.chown(store.data, nobody, nobody)
        update = write_update(tmp_path, node.lead, node.signers.read_text(), role=layout.ROLE_PACK)
        result = trust(store, "apply", update)
        assert result.returncode == 0, result.stderr
        assert "not in history.jsonl" not in result.stderr
        owners = {path.name: path.stat().st_uid for path in store.data.iterdir()}
        assert owners and set(owners.values()) == {nobody}, owners
        assert history(store)[-1]["event"] == "trust-update"
    finally:
        shutil.rmtree(shared)
