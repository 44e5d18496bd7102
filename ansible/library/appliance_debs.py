#!/usr/bin/python3
"""Ansible module: install Debian packages from the bundle's own archive copy, or purge them.

The bundle carries, for each Debian release it targets, the .deb files the appliance needs
beyond a standard installation, beside the exact `InRelease` and `Packages.xz` files Debian
signed (debs/<target>/<archive>/{dists,pool}, docs/formats.md). This module points the node's
own apt at that folder through a private configuration made for the one command (the node's
sources, lists and caches are never touched), so apt itself checks Debian's signature with the
node's keyring, offline, and resolves what is missing against what is installed.

    state=planned  what apt would install (never changes anything, also outside check mode);
                   `missing` names what the plan needs that the bundle does not carry, and
                   `error` why apt cannot plan at all (it does not fail: preflight reports it)
    state=present  install what is missing (nothing when the plan is empty); fails, changing
                   nothing, when the plan needs a package the bundle does not carry
    state=absent   purge `packages`, but only when apt would remove nothing else; otherwise
                   keep them all and say which installed package still needs them

Only packages that are not installed are asked for: the node's own are never upgraded. Returns
`plan`/`installed`/`purged`/`kept` as lists of {name, version}. `installed` holds only packages
that were not on the node before (an upgrade apt makes to satisfy a dependency is not the
appliance's to purge later), also when apt fails part-way, so that the caller can take them off.
"""

from __future__ import annotations

import re
import shutil
import tempfile
import urllib.parse
from pathlib import Path

from ansible.module_utils.basic import AnsibleModule

# The keyrings a Debian node has (trixie ships both, bookworm the .gpg only).
KEYRINGS = (
    "/usr/share/keyrings/debian-archive-keyring.pgp",
    "/usr/share/keyrings/debian-archive-keyring.gpg",
)
# `apt-get -s` lines: "Inst podman (5.4.2+ds1-2 Debian:13.2/stable [amd64])",
# "Inst libc6 [2.36-9] (2.36-9+deb12u9 ...)" (an upgrade: group 2 is the version before), and
# "Purg podman [5.4.2+ds1-2]".
INST = re.compile(r"^Inst (\S+) (?:\[([^\]]*)\] )?\((\S+)")
REMOVAL = re.compile(r"^(?:Purg|Remv) (\S+)(?: \[([^\]]*)\])?")
APT_ENV = {
    "DEBIAN_FRONTEND": "noninteractive",
    "LC_ALL": "C.UTF-8",
    "APT_LISTCHANGES_FRONTEND": "none",
}
# dpkg states (db:Status-Abbrev, first two letters) that leave the package's files on the node:
# installed, or half-installed, half-configured, awaiting triggers, for any wanted state.
ON_NODE = re.compile(r"^[uihrp][iUFHWt]")
LOCK_TIMEOUT = "-oDPkg::Lock::Timeout=120"  # unattended-upgrades may hold dpkg's lock a while


class AptFailed(Exception):
    """apt-get failed; `why` is its own reason, in one line."""

    def __init__(self, why: str, rc: int = 1, out: str = "", err: str = "") -> None:
        super().__init__(why)
        self.why, self.rc, self.out, self.err = why, rc, out, err

    def again(self, what: str) -> AptFailed:
        return AptFailed(f"{what}: {self.why}", self.rc, self.out, self.err)


def apt_reason(out: str, err: str) -> str:
    """apt's own cause in one line: dpkg's error about a package, an unmet dependency, else the
    first E: line (the last ones are consequences, such as "you have held broken packages")."""
    lines = (err + "\n" + out).splitlines()
    for prefix in ("dpkg: error processing", " ", "E: "):
        found = [
            line.strip()
            for line in lines
            if line.startswith(prefix) and (prefix != " " or " Depends: " in line)
        ]
        if found:
            return found[0]
    return next((line.strip() for line in reversed(lines) if line.strip()), "no output")


def keyring(module: AnsibleModule) -> str:
    given = module.params["keyring"]
    if given:
        return str(given)
    for path in KEYRINGS:
        if Path(path).is_file():
            return path
    module.fail_json(
        msg="no Debian archive keyring in /usr/share/keyrings: install debian-archive-keyring"
    )
    raise AssertionError  # fail_json exits


def private_config(module: AnsibleModule, work: Path) -> list[str]:
    """apt -o options for a configuration of its own in `work`, with the bundle as its only source."""
    ring = keyring(module)
    lines = []
    for source in module.params["sources"]:
        root = Path(module.params["debs_dir"]) / source["archive"]
        if not root.is_dir():
            module.fail_json(msg=f"the bundle has no {root}: not a whole bundle")
        url = urllib.parse.quote(str(root))  # a stick mounted at "/media/usb/USB DISK" too
        lines.append(
            f"deb [arch=amd64 signed-by={ring}] file:{url} {source['suite']} {source['component']}\n"
        )
    sources = work / "sources.list"
    sources.write_text("".join(lines), encoding="utf-8")
    for folder in ("lists/partial", "cache/archives/partial", "parts"):
        (work / folder).mkdir(parents=True, exist_ok=True)
    return [
        f"-oDir::Etc::SourceList={sources}",
        f"-oDir::Etc::SourceParts={work}/parts",
        f"-oDir::State::Lists={work}/lists",
        f"-oDir::Cache={work}/cache",
        "-oDir::Cache::pkgcache=",
        "-oDir::Cache::srcpkgcache=",
        "-oAcquire::Languages=none",
        "-oAcquire::By-Hash=no",  # the bundle keeps each index at its plain path only
        "-oAcquire::IndexTargets::deb::Contents-deb::DefaultEnabled=false",
        # The bundle is as old as its build: security's InRelease is "valid" for a week only.
        "-oAcquire::Check-Valid-Until=false",
        "-oAPT::Get::List-Cleanup=false",
        "-oAPT::Install-Recommends=false",
        "-oAPT::Architectures=amd64",
        LOCK_TIMEOUT,
    ]


def apt(module: AnsibleModule, args: list[str]) -> str:
    rc, out, err = module.run_command(["apt-get", *args], environ_update=APT_ENV)
    if rc != 0:
        raise AptFailed(apt_reason(out, err), rc, out, err)
    return out


def fail(module: AnsibleModule, failed: AptFailed, **extra: object) -> None:
    module.fail_json(msg=failed.why, rc=failed.rc, stdout=failed.out, stderr=failed.err, **extra)


def plan(module: AnsibleModule, options: list[str], names: list[str]) -> list[dict[str, str]]:
    """What `apt-get install names` would install, each with the version apt would take."""
    try:
        apt(module, [*options, "-q", "update"])
    except AptFailed as failed:
        raise failed.again("apt could not read the bundle's Debian packages") from failed
    try:
        out = apt(module, [*options, "-s", "-q", "install", "--no-install-recommends", *names])
    except AptFailed as failed:
        raise failed.again(
            "apt cannot install what the appliance needs from the bundle"
        ) from failed
    return [
        {"name": match[1], "version": match[3], **({"upgrade_from": match[2]} if match[2] else {})}
        for match in map(INST.match, out.splitlines())
        if match
    ]


def dpkg_versions(module: AnsibleModule, names: list[str], *, configured: bool) -> dict[str, str]:
    """{package: version} that dpkg has: installed and configured ("ii") with `configured`, else
    in any state that leaves files on the node. All packages when `names` is empty."""
    _, out, _ = module.run_command(
        ["dpkg-query", "-W", "-f", "${Package} ${Version} ${db:Status-Abbrev}\n", *names],
        environ_update=APT_ENV,
    )
    versions = {}
    for parts in (line.split() for line in out.splitlines()):
        if len(parts) >= 3 and (parts[2][:2] == "ii" if configured else ON_NODE.match(parts[2])):
            versions[parts[0]] = parts[1]
    return versions


def new_packages(before: dict[str, str], after: dict[str, str]) -> list[dict[str, str]]:
    """What is on the node now that was not before, sorted by name."""
    return [{"name": name, "version": after[name]} for name in sorted(after) if name not in before]


def present(module: AnsibleModule, state: str) -> None:
    have = dpkg_versions(module, module.params["packages"], configured=True)
    names = [name for name in module.params["packages"] if name not in have]
    if not names:
        # All there: nothing to plan, and apt need not read the bundle's indexes (seconds each).
        module.exit_json(changed=False, plan=[], missing=[], installed=[])
    work = Path(tempfile.mkdtemp(prefix="appliance-apt-"))
    work.chmod(0o755)  # apt's sandbox user (_apt) reads the lists there
    try:
        options = private_config(module, work)
        try:
            wanted = plan(module, options, names)
        except AptFailed as failed:
            if state == "planned":
                module.exit_json(changed=False, plan=[], missing=[], error=failed.why)
            fail(module, failed)
        carried = {(p["name"], p["version"]) for p in module.params["carried"]}
        missing = [p for p in wanted if (p["name"], p["version"]) not in carried]
        if state == "planned":
            module.exit_json(changed=False, plan=wanted, missing=missing)
        if missing:
            listed = ", ".join(f"{p['name']} {p['version']}" for p in missing)
            module.fail_json(
                msg=f"the node needs {listed}, which the bundle does not carry", missing=missing
            )
        if not wanted or module.check_mode:
            module.exit_json(changed=bool(wanted), plan=wanted, installed=[])
        before = dpkg_versions(module, [], configured=False)
        command = [
            *options,
            "-q",
            "-y",
            "-oDpkg::Options::=--force-confdef",
            "-oDpkg::Options::=--force-confold",
            "install",
            "--no-install-recommends",
            *names,
        ]
        try:
            apt(module, command)
        except AptFailed as failed:
            # What apt put on the node before it failed is the appliance's: the caller takes it
            # off again. (dpkg --configure -a would finish what dpkg left half-done.)
            left = new_packages(before, dpkg_versions(module, [], configured=False))
            fail(
                module,
                failed.again("installing the bundle's Debian packages failed"),
                installed=left,
            )
        installed = new_packages(before, dpkg_versions(module, [], configured=False))
        now = dpkg_versions(module, [p["name"] for p in wanted], configured=True)
        wrong = [p["name"] for p in wanted if now.get(p["name"]) != p["version"]]
        if wrong:
            module.fail_json(
                msg=f"apt finished but {', '.join(wrong)} is not installed as planned",
                installed=installed,
            )
        module.exit_json(changed=True, plan=wanted, installed=installed)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def absent(module: AnsibleModule) -> None:
    names = module.params["packages"]
    there = dpkg_versions(module, names, configured=False) if names else {}
    ours = [name for name in names if name in there]
    if not ours:
        module.exit_json(changed=False, purged=[], kept=[])
    listed = [{"name": name, "version": there[name]} for name in ours]
    try:
        out = apt(module, [LOCK_TIMEOUT, "-s", "-q", "purge", *ours])
    except AptFailed as failed:
        fail(module, failed.again("apt cannot work out the purge"), kept=listed)
    removed = {m[1] for m in map(REMOVAL.match, out.splitlines()) if m}
    others = sorted(removed - set(ours))
    if others:
        module.exit_json(
            changed=False,
            purged=[],
            kept=listed,
            reason=f"kept: {', '.join(others)} still needs them",
        )
    if not module.check_mode:
        try:
            apt(module, [LOCK_TIMEOUT, "-q", "-y", "purge", *ours])
        except AptFailed as failed:
            fail(
                module, failed.again("purging the appliance's Debian packages failed"), kept=listed
            )
    module.exit_json(changed=True, purged=listed, kept=[])


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "state": {"choices": ["planned", "present", "absent"], "default": "present"},
            "debs_dir": {"type": "path"},
            "sources": {"type": "list", "elements": "dict", "default": []},
            "packages": {"type": "list", "elements": "str", "required": True},
            "carried": {"type": "list", "elements": "dict", "default": []},
            "keyring": {"type": "path"},
        },
        required_if=[("state", "planned", ["debs_dir"]), ("state", "present", ["debs_dir"])],
        supports_check_mode=True,
    )
    if module.params["state"] == "absent":
        absent(module)
    else:
        present(module, module.params["state"])


if __name__ == "__main__":
    main()
