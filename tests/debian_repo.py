"""A small Debian repository signed by a test key, laid out as a bundle's debs/<target>/ folder.

Debian's own metadata cannot be changed and still verify, so the hostile inputs that need a
good signature over bad content (a Packages.xz cut short, a Filename climbing out with '..')
are made here: a real gpg key, real cleartext signatures, real xz, checked by the real gpgv.
"""

from __future__ import annotations

import hashlib
import json
import lzma
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from appliance.bundles import bundle_layout as layout

TARGET = layout.node_target("debian12")
DATE = "Sat, 11 Jul 2026 10:16:37 UTC"


@dataclass(frozen=True)
class ArchiveKey:
    """A signing key in its own gpg home, and a keyring file holding its public half."""

    home: Path
    keyring: Path

    @property
    def gpg(self) -> list[str]:
        return ["gpg", "--homedir", str(self.home), "--batch", "--passphrase", ""]

    def clearsign(self, text: str) -> bytes:
        result = subprocess.run(
            [*self.gpg, "--yes", "--digest-algo", "SHA256", "--clearsign", "--output", "-"],
            input=text.encode(),
            capture_output=True,
            check=True,
        )
        return result.stdout


def make_key(folder: Path) -> Iterator[ArchiveKey]:
    """A fresh ed25519 key (its gpg-agent is stopped afterwards)."""
    # A short home: gpg-agent's socket path must fit in 108 bytes.
    home = Path(tempfile.mkdtemp(prefix="gpg-", dir="/tmp"))
    try:
        gpg = ["gpg", "--homedir", str(home), "--batch", "--passphrase", ""]
        subprocess.run(
            [*gpg, "--quick-gen-key", "Test Archive <archive@test>", "ed25519", "sign", "never"],
            capture_output=True,
            check=True,
        )
        keyring = folder / "test-keyring.gpg"
        keyring.write_bytes(
            subprocess.run([*gpg, "--export"], capture_output=True, check=True).stdout
        )
        yield ArchiveKey(home, keyring)
    finally:
        subprocess.run(
            ["gpgconf", "--homedir", str(home), "--kill", "gpg-agent"],
            capture_output=True,
            check=False,
        )
        shutil.rmtree(home, ignore_errors=True)


@dataclass
class Deb:
    name: str
    version: str
    filename: str  # below the archive
    data: bytes
    archive: str = "debian"
    depends: str = ""

    def stanza(self) -> str:
        depends = f"Depends: {self.depends}\n" if self.depends else ""
        return (
            f"Package: {self.name}\nVersion: {self.version}\nArchitecture: amd64\n{depends}"
            f"Description: test package\n one more line\n .\n"
            f"Filename: {self.filename}\nSize: {len(self.data)}\n"
            f"SHA256: {hashlib.sha256(self.data).hexdigest()}\n"
        )


@dataclass
class SignedRepo:
    """A debs/<target>/ folder with its manifest entry; `seal` (re)writes the signed metadata."""

    bundle_root: Path
    key: ArchiveKey
    debs: list[Deb] = field(default_factory=list)
    packages_override: dict[str, bytes] = field(default_factory=dict)  # suite -> Packages.xz
    date: str = DATE

    @property
    def folder(self) -> Path:
        return self.bundle_root / layout.debs_dir(TARGET)

    def seal(self) -> dict[str, Any]:
        """Write each suite's Packages.xz, InRelease and the .debs; return the manifest entry."""
        sources = []
        for suite in layout.debian_suites(TARGET):
            debs = [deb for deb in self.debs if deb.archive == suite.archive]
            own = debs if suite.suite == TARGET.codename or suite.archive != "debian" else []
            packages = self.packages_override.get(suite.suite)
            text = "\n".join(d.stanza() for d in own).encode()
            if packages is None:
                packages = lzma.compress(text)
            index = self.folder / suite.packages_index
            index.parent.mkdir(parents=True, exist_ok=True)
            index.write_bytes(packages)
            release = (
                f"Origin: Test\nCodename: {suite.suite}\nSuite: {suite.suite}\nDate: {self.date}\n"
                f"Architectures: amd64\nComponents: main\n"
                # apt takes an index only if Release lists it uncompressed too, as Debian's does.
                f"SHA256:\n {hashlib.sha256(text).hexdigest()} {len(text)} "
                f"{layout.PACKAGES_INDEX.removesuffix('.xz')}\n"
                f" {hashlib.sha256(packages).hexdigest()} {len(packages)} "
                f"{layout.PACKAGES_INDEX}\n"
            )
            inrelease = self.key.clearsign(release)
            (self.folder / suite.inrelease).write_bytes(inrelease)
            sources.append(
                {
                    "archive": suite.archive,
                    "suite": suite.suite,
                    "component": layout.DEBIAN_COMPONENT,
                    "date": self.date,
                    "inrelease_sha256": hashlib.sha256(inrelease).hexdigest(),
                }
            )
        for deb in self.debs:
            path = self.folder / deb.archive / deb.filename
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(deb.data)
        closure = [
            {
                "name": deb.name,
                "version": deb.version,
                "file": f"{deb.archive}/{deb.filename}",
                "sha256": hashlib.sha256(deb.data).hexdigest(),
                "size": len(deb.data),
            }
            for deb in self.debs
        ]
        return {
            "name": TARGET.name,
            "codename": TARGET.codename,
            "os_version_id": TARGET.os_version_id,
            "python": TARGET.python,
            "debs_dir": layout.debs_dir(TARGET),
            "sources": sources,
            "requires": {"base": ["python3-venv"], "podman": ["podman"]},
            "closure": {"podman": closure},
            "bytes": sum(len(deb.data) for deb in self.debs),
        }


def standard_debs() -> list[Deb]:
    """Three packages: two from the release, one from its security updates."""
    return [
        Deb(
            "python3-venv",
            "3.11.2-1+b1",
            "pool/main/p/python3-defaults/python3-venv_3.11.2-1+b1_amd64.deb",
            b"venv" * 300,
        ),
        Deb(
            "podman",
            "4.3.1+ds1-8+deb12u1",
            "pool/main/libp/libpod/podman_4.3.1+ds1-8+deb12u1_amd64.deb",
            b"podman" * 500,
        ),
        Deb(
            "libgpgme11",
            "1.18.0-3+deb12u1",
            "pool/updates/main/g/gpgme1.0/libgpgme11_1.18.0-3+deb12u1_amd64.deb",
            b"gpgme" * 100,
            archive="debian-security",
        ),
    ]


def tree_digest(root: Path) -> str:
    """One digest over every file's path and bytes below `root`."""
    listing = {
        path.relative_to(root).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }
    return hashlib.sha256(json.dumps(listing, sort_keys=True).encode()).hexdigest()
