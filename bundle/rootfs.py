"""The server image's base root filesystem: Debian 12 packages, unpacked without any registry.

`mmdebstrap --variant=extract` unpacks just the packages the Python runtime needs (no apt, no
maintainer scripts) into a tar, cached under the build cache; `--base-rootfs TAR` replaces it with
a tarball the builder brings. What the server never uses (documentation, locales, dpkg, the
Python test suite...) is pruned when the layer is written; each package's copyright stays.
"""

from __future__ import annotations

import hashlib
import shlex
import shutil
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from appliance.errors import ConfigError
from appliance.fsio import sha256_file
from appliance.progress import Progress
from bundle import layout, tools
from bundle.oci import Entry, clean_name

# The Python runtime and the C/C++ runtime libraries the manylinux wheels link against.
DEBIAN_PACKAGES = ("python3.11-minimal", "libpython3.11-stdlib", "libstdc++6", "libgcc-s1")
# Beside the cached rootfs.tar: name, version, arch, the .deb's sha256, and its Pre-Depends,
# Depends and Provides (the SBOM's dependency graph; a listing of four columns has none).
PACKAGES_FILE = "packages.tsv"
LISTING_FORMAT = 2  # in the cache key: a cache whose listing lacks the relations is made again
# mmdebstrap's time stamps: fixed (Debian 12's release day), so the rootfs tar depends only on the
# packages. The image's layers reset every time to the build's SOURCE_DATE_EPOCH anyway.
ROOTFS_EPOCH = 1686355200

# Paths (and everything below them) the server never reads.
PRUNED = (
    "bin/tar",
    "dev",  # engines mount their own /dev
    "etc/dpkg",
    "usr/bin/dpkg",
    "usr/bin/dpkg-deb",
    "usr/bin/dpkg-divert",
    "usr/bin/dpkg-maintscript-helper",
    "usr/bin/dpkg-query",
    "usr/bin/dpkg-realpath",
    "usr/bin/dpkg-split",
    "usr/bin/dpkg-statoverride",
    "usr/bin/dpkg-trigger",
    "usr/bin/update-alternatives",
    "usr/lib/dpkg",
    "usr/lib/python3.11/config-3.11-x86_64-linux-gnu",
    "usr/lib/python3.11/ensurepip",
    "usr/lib/python3.11/idlelib",
    "usr/lib/python3.11/lib2to3",
    "usr/lib/python3.11/pydoc_data",
    "usr/lib/python3.11/test",
    "usr/lib/python3.11/tkinter",
    "usr/lib/python3.11/turtledemo",
    "usr/lib/python3.11/pydoc.py",
    "usr/lib/python3.11/turtle.py",
    "usr/lib/python3.11/unittest",
    "usr/lib/python3.11/xmlrpc",
    "usr/lib/x86_64-linux-gnu/gconv",
    "usr/libexec/dpkg",
    "usr/sbin",
    "usr/share/bug",
    "usr/share/dpkg",
    "usr/share/info",
    "usr/share/lintian",
    "usr/share/locale",
    "usr/share/man",
    "usr/share/menu",
    "usr/share/polkit-1",
    "usr/share/readline",
    "var/cache",
    "var/lib/dpkg",
    "var/log",
)
# Extension modules for terminals, old databases, NIS and Asian legacy codecs, and the
# libraries only they (or the pruned dpkg and tar) load. Checked by the image smoke test.
PRUNED_MODULES = ("_codecs_", "_curses", "_dbm", "_gdbm", "nis.", "readline.")
PRUNED_LIBRARIES = (
    "libacl.",
    "libcom_err.",
    "libdb-",
    "libgssapi_krb5.",
    "libk5crypto.",
    "libkeyutils.",
    "libkrb5.",
    "libkrb5support.",
    "libmd.",
    "libncursesw.",
    "libnsl.",
    "libpcre2-8.",
    "libreadline.",
    "libselinux.",
    "libtinfo.",
    "libtirpc.",
    "libzstd.",
)
DYNLOAD_DIR = "usr/lib/python3.11/lib-dynload/"
LIBRARY_DIRS = ("lib/x86_64-linux-gnu/", "usr/lib/x86_64-linux-gnu/")
DOC_DIR = "usr/share/doc"
KEPT_DOC_NAMES = ("copyright",)

# A shell script run by mmdebstrap after unpacking: lists the .deb files it unpacked (the extract
# variant keeps no dpkg status, so the relations are read from each .deb here).
_LIST_PACKAGES_HOOK = (
    'for deb in "$1"/var/cache/apt/archives/*.deb; do '
    'printf "%s\\t%s\\t%s\\t%s\\t%s\\t%s\\t%s\\n" "$(dpkg-deb -f "$deb" Package)" '
    '"$(dpkg-deb -f "$deb" Version)" "$(dpkg-deb -f "$deb" Architecture)" '
    '"$(sha256sum < "$deb" | cut -d" " -f1)" "$(dpkg-deb -f "$deb" Pre-Depends)" '
    '"$(dpkg-deb -f "$deb" Depends)" "$(dpkg-deb -f "$deb" Provides)"; done > {out}'
)


@dataclass(frozen=True)
class Relations:
    """A Debian package's Pre-Depends, Depends and Provides fields, as its control file has them."""

    pre_depends: str = ""
    depends: str = ""
    provides: str = ""


@dataclass(frozen=True, order=True)
class DebianPackage:
    name: str
    version: str
    arch: str
    sha256: str
    relations: Relations | None = field(default=None, compare=False)  # None: not known


@dataclass(frozen=True)
class BaseRootfs:
    """A base root filesystem tar and the Debian packages it was made of (if known)."""

    tarball: Path
    packages: tuple[DebianPackage, ...]
    digest: str  # "sha256:<hex>" of the tar: the same for the same tar, however it was obtained

    @property
    def origin(self) -> str:
        """How the manifest and the progress name it: "rootfs sha256:<hex>"."""
        return f"rootfs {self.digest}"


def read_packages(path: Path) -> tuple[DebianPackage, ...]:
    if not path.is_file():
        return ()
    rows = [line.split("\t") for line in path.read_text(encoding="utf-8").splitlines() if line]
    return tuple(
        sorted(
            DebianPackage(
                row[0], row[1], row[2], row[3], Relations(*row[4:7]) if len(row) >= 7 else None
            )
            for row in rows
            if len(row) >= 4
        )
    )


def _cache_key(suite: str, packages: tuple[str, ...]) -> str:
    text = "\n".join(
        [suite, layout.TARGET_ARCH, str(ROOTFS_EPOCH), f"listing {LISTING_FORMAT}", *packages]
    )
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def cache_folder(cache_dir: Path) -> Path:
    """Where the build cache keeps the base rootfs of DEBIAN_PACKAGES and its package list."""
    return cache_dir / "rootfs" / _cache_key(layout.IMAGE_DEBIAN_SUITE, DEBIAN_PACKAGES)


def digest_of(tarball: Path) -> str:
    return f"sha256:{sha256_file(tarball)}"


def _is_cached(cache_dir: Path) -> bool:
    folder = cache_folder(cache_dir)
    return (folder / "rootfs.tar").is_file() and (folder / PACKAGES_FILE).is_file()


def check_can_make(cache_dir: Path, *, refresh: bool = False) -> None:
    """ConfigError if debian_rootfs would need mmdebstrap and this machine has none."""
    if (refresh or not _is_cached(cache_dir)) and shutil.which("mmdebstrap") is None:
        msg = "base rootfs: mmdebstrap not found; install it (apt-get install mmdebstrap) or pass --base-rootfs TAR"
        raise ConfigError(msg)


def debian_rootfs(cache_dir: Path, progress: Progress, *, refresh: bool = False) -> BaseRootfs:
    """The cached rootfs of DEBIAN_PACKAGES, made with mmdebstrap the first time (or on refresh)."""
    suite = layout.IMAGE_DEBIAN_SUITE
    folder = cache_folder(cache_dir)
    tarball, listing = folder / "rootfs.tar", folder / PACKAGES_FILE
    if _is_cached(cache_dir) and not refresh:
        progress(f"base rootfs: cached {tarball}")
        return BaseRootfs(tarball, read_packages(listing), digest_of(tarball))
    check_can_make(cache_dir, refresh=refresh)
    folder.mkdir(parents=True, exist_ok=True)
    partial, partial_listing = folder / "rootfs.tar.partial", folder / f"{PACKAGES_FILE}.partial"
    progress(f"base rootfs: mmdebstrap {suite} {' '.join(DEBIAN_PACKAGES)}")
    command = [
        "mmdebstrap",
        "--quiet",
        "--variant=extract",
        f"--architectures={layout.TARGET_ARCH}",
        f"--include={','.join(DEBIAN_PACKAGES)}",
        f"--extract-hook={_LIST_PACKAGES_HOOK.format(out=shlex.quote(str(partial_listing)))}",
        "--format=tar",
        suite,
        str(partial),
    ]
    env = {"SOURCE_DATE_EPOCH": str(ROOTFS_EPOCH), "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
    tools.run(command, "base rootfs: mmdebstrap failed", env=env)
    partial_listing.replace(listing)
    partial.replace(tarball)
    return BaseRootfs(tarball, read_packages(listing), digest_of(tarball))


def check_given(tarball: Path) -> None:
    """ConfigError unless `tarball` is a readable tar archive (its header, not every member)."""
    if not tarball.is_file():
        msg = f"--base-rootfs {tarball}: no such file"
        raise ConfigError(msg)
    try:
        is_tar = tarfile.is_tarfile(tarball)
    except OSError as exc:
        msg = f"--base-rootfs {tarball}: cannot read it ({exc.strerror or exc})"
        raise ConfigError(msg) from exc
    if not is_tar:
        msg = f"--base-rootfs {tarball}: not a tar archive"
        raise ConfigError(msg)


def given_rootfs(tarball: Path) -> BaseRootfs:
    """A builder's own base tarball; its packages come from `<tar>.packages.tsv` or `packages.tsv` beside it."""
    check_given(tarball)
    listing = tarball.with_name(f"{tarball.name}.{PACKAGES_FILE}")
    if not listing.is_file():
        listing = tarball.with_name(PACKAGES_FILE)
    return BaseRootfs(tarball, read_packages(listing), digest_of(tarball))


def is_pruned(name: str) -> bool:
    """Whether the rootfs path `name` stays out of the image."""
    for prefix in PRUNED:
        if name == prefix or name.startswith(f"{prefix}/"):
            return True
    if name.startswith(DYNLOAD_DIR) and name[len(DYNLOAD_DIR) :].startswith(PRUNED_MODULES):
        return True
    for folder in LIBRARY_DIRS:
        if name.startswith(folder) and name[len(folder) :].startswith(PRUNED_LIBRARIES):
            return True
    if name.startswith(f"{DOC_DIR}/"):
        return name.count("/") > 3 or (
            name.count("/") == 3 and name.rsplit("/", 1)[1] not in KEPT_DOC_NAMES
        )
    return "/__pycache__" in f"/{name}"


def _reason(exc: BaseException) -> str:
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def _members(tar: tarfile.TarFile) -> dict[str, tarfile.TarInfo]:
    """Every member by its clean name; reading them all finds a truncated tar before any use."""
    members = {}
    for member in tar:
        if member.name in (".", "./"):
            continue
        members[clean_name(member.name)] = member
    return members


def runtime_entries(rootfs: BaseRootfs) -> Iterator[Entry]:
    """The rootfs's folders, files and symlinks that the image keeps, with their modes.

    Hard links become plain copies; device nodes and the like are refused.
    """
    unreadable = f"base rootfs {rootfs.tarball}: not a readable tar archive"
    try:
        tar = tarfile.open(rootfs.tarball, "r:*")  # noqa: SIM115 (members are read lazily below)
    except (OSError, tarfile.TarError) as exc:
        msg = f"{unreadable} ({_reason(exc)})"
        raise ConfigError(msg) from exc
    with tar:
        try:
            members = _members(tar)
        except (tarfile.TarError, EOFError) as exc:
            msg = f"{unreadable} ({_reason(exc)})"
            raise ConfigError(msg) from exc
        for name, member in members.items():
            if is_pruned(name):
                continue
            mode = member.mode & 0o1777  # no setuid or setgid bits in the image
            if member.isdir():
                yield Entry(name, "dir", mode, member.uid, member.gid)
            elif member.issym():
                yield Entry(name, "symlink", 0o777, link=member.linkname)
            elif member.isfile() or member.islnk():
                source = members.get(clean_name(member.linkname)) if member.islnk() else member
                extracted = tar.extractfile(source) if source is not None else None
                if extracted is None:
                    msg = f"base rootfs: cannot read {name}"
                    raise ConfigError(msg)
                try:
                    data = extracted.read()
                except (tarfile.TarError, EOFError) as exc:
                    msg = f"{unreadable} ({name}: {_reason(exc)})"
                    raise ConfigError(msg) from exc
                yield Entry(name, "file", mode, member.uid, member.gid, data=data)
            else:
                msg = f"base rootfs: {name} is a device or special file; the image holds none"
                raise ConfigError(msg)
