#!/usr/bin/python3
"""Ansible module: install Debian packages from the bundle's own archive copy, or purge them.

The bundle carries, for each Debian release it targets, the .deb files the appliance needs
beyond a standard installation, beside the exact `InRelease` and `Packages.xz` files Debian
signed (debs/<target>/<archive>/{dists,pool}, docs/formats.md). This module points the node's
own apt at that folder through a private configuration made for the one command (the node's
sources, lists and caches are never touched), so apt itself checks Debian's signature with the
node's keyring, offline, and resolves what is missing against what is installed.

    state=planned  what apt would install (never changes anything, also outside check mode);
                   `missing` names what the plan needs that the bundle does not carry
    state=present  install what is missing (nothing when the plan is empty); fails, changing
                   nothing, when the plan needs a package the bundle does not carry
    state=absent   purge `packages`, but only when apt would remove nothing else; otherwise
                   keep them all and say which installed package still needs them

Returns `plan`/`installed`/`purged`/`kept` as lists of {name, version}.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from pathlib import Path

from ansible.module_utils.basic import AnsibleModule

# The keyrings a Debian node has (trixie ships both, bookworm the .gpg only).
KEYRINGS = (
    "/usr/share/keyrings/debian-archive-keyring.pgp",
    "/usr/share/keyrings/debian-archive-keyring.gpg",
)
# `apt-get -s` lines: "Inst podman (5.4.2+ds1-2 Debian:13.2/stable [amd64])",
# "Inst libc6 [2.36-9] (2.36-9+deb12u9 ...)" (an upgrade), "Purg podman [5.4.2+ds1-2]".
INST = re.compile(r"^Inst (\S+) (?:\[[^\]]*\] )?\((\S+)")
REMOVAL = re.compile(r"^(?:Purg|Remv) (\S+)(?: \[([^\]]*)\])?")
APT_ENV = {
    "DEBIAN_FRONTEND": "noninteractive",
    "LC_ALL": "C.UTF-8",
    "APT_LISTCHANGES_FRONTEND": "none",
}


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
        lines.append(
            f"deb [signed-by={ring}] file:{root} {source['suite']} {source['component']}\n"
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
    ]


def run_apt(module: AnsibleModule, args: list[str], what: str) -> str:
    rc, out, err = module.run_command(["apt-get", *args], environ_update=APT_ENV)
    if rc != 0:
        lines = [line for line in (err + "\n" + out).splitlines() if line.startswith(("E:", "W:"))]
        why = (lines or (err + out).strip().splitlines() or ["no output"])[-1]
        module.fail_json(msg=f"{what}: {why}", rc=rc, stdout=out, stderr=err)
    return out


def plan(module: AnsibleModule, options: list[str]) -> list[dict[str, str]]:
    run_apt(module, [*options, "-q", "update"], "apt could not read the bundle's Debian packages")
    out = run_apt(
        module,
        [*options, "-s", "-q", "install", "--no-install-recommends", *module.params["packages"]],
        "apt cannot install what the appliance needs from the bundle",
    )
    return [
        {"name": match[1], "version": match[2]}
        for match in map(INST.match, out.splitlines())
        if match
    ]


def installed_versions(module: AnsibleModule, names: list[str]) -> dict[str, str]:
    _, out, _ = module.run_command(
        ["dpkg-query", "-W", "-f", "${Package} ${Version} ${db:Status-Abbrev}\n", *names],
        environ_update=APT_ENV,
    )
    versions = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[2].startswith("ii"):
            versions[parts[0]] = parts[1]
    return versions


def present(module: AnsibleModule, state: str) -> None:
    wanted_names = module.params["packages"]
    if set(wanted_names) <= set(installed_versions(module, wanted_names)):
        # All there: nothing to plan, and apt need not read the bundle's indexes (seconds each).
        module.exit_json(changed=False, plan=[], missing=[], installed=[])
    work = Path(tempfile.mkdtemp(prefix="appliance-apt-"))
    try:
        options = private_config(module, work)
        wanted = plan(module, options)
        carried = {(p["name"], p["version"]) for p in module.params["carried"]}
        missing = [p for p in wanted if (p["name"], p["version"]) not in carried]
        if state == "planned":
            module.exit_json(changed=False, plan=wanted, missing=missing)
        if missing:
            names = ", ".join(f"{p['name']} {p['version']}" for p in missing)
            module.fail_json(
                msg=f"the node needs {names}, which the bundle does not carry", missing=missing
            )
        if not wanted or module.check_mode:
            module.exit_json(changed=bool(wanted), plan=wanted, installed=[])
        run_apt(
            module,
            [
                *options,
                "-q",
                "-y",
                "-oDpkg::Options::=--force-confdef",
                "-oDpkg::Options::=--force-confold",
                "install",
                "--no-install-recommends",
                *module.params["packages"],
            ],
            "installing the bundle's Debian packages failed",
        )
        now = installed_versions(module, [p["name"] for p in wanted])
        absent = [p["name"] for p in wanted if now.get(p["name"]) != p["version"]]
        if absent:
            module.fail_json(
                msg=f"apt finished but {', '.join(absent)} is not installed as planned"
            )
        module.exit_json(changed=True, plan=wanted, installed=wanted)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def absent(module: AnsibleModule) -> None:
    names = module.params["packages"]
    on_node = installed_versions(module, names)
    ours = [name for name in names if name in on_node]
    if not ours:
        module.exit_json(changed=False, purged=[], kept=[])
    out = run_apt(module, ["-s", "-q", "purge", *ours], "apt cannot work out the purge")
    removed = {m[1] for m in map(REMOVAL.match, out.splitlines()) if m}
    others = sorted(removed - set(ours))
    listed = [{"name": name, "version": on_node[name]} for name in ours]
    if others:
        module.exit_json(
            changed=False,
            purged=[],
            kept=listed,
            reason=f"kept: {', '.join(others)} still needs them",
        )
    if not module.check_mode:
        run_apt(
            module, ["-q", "-y", "purge", *ours], "purging the appliance's Debian packages failed"
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
