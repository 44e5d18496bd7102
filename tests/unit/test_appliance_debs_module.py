"""The Ansible module appliance_debs reads apt-get's simulation the way apt writes it.

The module itself runs for real in tests/e2e (install, preflight plan, purge); these pin down how
it reads apt's lines, including the forms a standard node seldom shows (an upgrade, a removal).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

MODULE = Path(__file__).resolve().parents[2] / "ansible" / "library" / "appliance_debs.py"


def _module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("appliance_debs", MODULE)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


SIMULATED_INSTALL = """\
NOTE: This is only a simulation!
Reading package lists...
The following NEW packages will be installed:
  conmon podman
Inst conmon (2.1.12-4 Debian:13.2/stable [amd64])
Inst libc6 [2.41-12] (2.41-12+deb13u1 Debian-Security:13/stable-security [amd64])
Inst podman (5.4.2+ds1-2 Debian:13.2/stable [amd64])
Conf conmon (2.1.12-4 Debian:13.2/stable [amd64])
"""

SIMULATED_PURGE = """\
Purg podman [5.4.2+ds1-2]
Remv toolbox [0.1.2-1]
Purg conmon [2.1.12-4]
"""


def test_a_plan_names_each_package_and_the_version_apt_would_install() -> None:
    inst = _module().INST
    planned = [(m[1], m[2], m[3]) for m in map(inst.match, SIMULATED_INSTALL.splitlines()) if m]
    assert planned == [
        ("conmon", None, "2.1.12-4"),
        ("libc6", "2.41-12", "2.41-12+deb13u1"),  # an upgrade: the version before, and the new
        ("podman", None, "5.4.2+ds1-2"),
    ]


def test_apts_own_reason_comes_before_its_consequences() -> None:
    reason = _module().apt_reason
    unmet = (
        "Some packages could not be installed.\n"
        "The following packages have unmet dependencies:\n"
        " python3.11-venv : Depends: python3.11 (= 3.11.2-6+deb12u6) but 3.11.2-6+deb12u9 is to be installed\n"
        "E: Unable to correct problems, you have held broken packages.\n"
    )
    assert reason(unmet, "").startswith(
        "python3.11-venv : Depends: python3.11 (= 3.11.2-6+deb12u6)"
    )
    dpkg = "dpkg: error processing package docker.io (--configure):\n installed post-installation script returned error exit status 1\nE: Sub-process /usr/bin/dpkg returned an error code (1)\n"
    assert reason("", dpkg) == "dpkg: error processing package docker.io (--configure):"
    assert reason(
        "", "E: Could not get lock /var/lib/dpkg/lock-frontend\nE: Unable to acquire\n"
    ) == ("E: Could not get lock /var/lib/dpkg/lock-frontend")


def test_what_dpkg_leaves_on_the_node_counts_as_there() -> None:
    on_node = _module().ON_NODE
    assert [bool(on_node.match(s)) for s in ("ii ", "iU ", "iF ", "hi ", "rc ", "un ", "pn ")] == [
        True, True, True, True, False, False, False,
    ]  # fmt: skip


def test_a_purge_names_what_else_apt_would_remove() -> None:
    removal = _module().REMOVAL
    removed = {m[1] for m in map(removal.match, SIMULATED_PURGE.splitlines()) if m}
    assert removed == {"podman", "toolbox", "conmon"}
    assert removed - {"podman", "conmon"} == {"toolbox"}  # what makes the module keep them all
