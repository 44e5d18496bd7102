"""The debs step: for each node target, the .debs the appliance needs beyond a standard Debian
installation, with Debian's signed metadata, laid out in debs/<target>/ as apt `file:` sources.

    metadata   InRelease and main/binary-amd64/Packages.xz of <codename> and <codename>-updates
               (archive debian) and <codename>-security (archive debian-security), fetched once
               into the build cache; InRelease checked with gpgv, Packages.xz against InRelease
    standard   the dpkg status of a standard installation (`mmdebstrap --variant=standard`),
               made once per release and kept in the cache (nothing else of it is kept)
    closure    `apt-get install --print-uris --no-install-recommends` of what each engine needs,
               run by the host's apt in a private configuration that reads only the cached
               metadata (as `file:` sources, signed-by Debian's keyring) and that status
    debs       each .deb fetched once by its Filename, checked against its Packages stanza, kept
               in the cache by its SHA-256
    layout     debs/<target>/<archive>/dists/<suite>/... and <archive>/pool/...: the bytes Debian
               signed, so the node's apt checks the same chain offline

The cache is keyed by what each part depends on, never by the mirror: once it holds everything,
a build makes no network request, and the same cache gives the same files. --refresh-debian
fetches the metadata again (a newer snapshot, hence a new closure); the .debs and the standard
status are kept. The manifest records each suite's InRelease Date and SHA-256.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import re
import shutil
import tarfile
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Any

from appliance.bundles.debian_archive import (
    BinaryPackage,
    Deb822Error,
    Release,
    find_packages,
    packages_of,
    provenance_problem,
    verify_inrelease,
)
from appliance.errors import ConfigError, SignatureError
from appliance.fsio import CHUNK_BYTES, atomic_output, atomic_write_bytes, scratch_dir, sha256_file
from appliance.progress import Progress
from bundle import layout, tools

DEFAULT_MIRROR = "http://deb.debian.org"  # holds the archives debian/ and debian-security/
MIRROR_SCHEMES = ("http", "https", "file")
FETCH_SECONDS = 60
FETCH_THREADS = 4
CACHE_FOLDER = "debian"
CLOSURE_FORMAT = 1  # bump when what a cached closure holds changes
# A standard installation, as a netinst with "standard system utilities" gives one.
STANDARD_VARIANT = "standard"
STANDARD_INCLUDE = ("systemd-sysv",)
STANDARD_STATUS = "var/lib/dpkg/status"
TOOLS = ("apt-get", "gpgv")

# 'URI' file-name size [hash]: apt prints its first hash, none where a suite lists no MD5sum.
_PRINT_URI = re.compile(r"'([^']+)' (\S+) ([0-9]+)(?: \S*)?")


@dataclass(frozen=True)
class DebianOptions:
    """Where the step's inputs come from."""

    cache_dir: Path
    mirror: str = DEFAULT_MIRROR
    keyring: Path = Path(layout.DEBIAN_KEYRING)
    refresh: bool = False


@dataclass(frozen=True)
class SuiteSnapshot:
    """A suite's verified InRelease, as the cache holds it."""

    suite: layout.DebianSuite
    release: Release
    inrelease_sha256: str

    def manifest_entry(self) -> dict[str, str]:
        return {
            "archive": self.suite.archive,
            "suite": self.suite.suite,
            "component": layout.DEBIAN_COMPONENT,
            "date": self.release.date,
            "inrelease_sha256": self.inrelease_sha256,
        }


@dataclass(frozen=True, order=True)
class DebFile:
    """One .deb of a closure, as its Packages stanza describes it."""

    archive: str
    filename: str  # the stanza's Filename, below the archive: pool/main/...
    name: str
    version: str
    architecture: str
    size: int
    sha256: str

    @property
    def file(self) -> str:
        """Its path below debs/<target>/."""
        return f"{self.archive}/{self.filename}"

    def manifest_entry(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "file": self.file,
            "sha256": self.sha256,
            "size": self.size,
        }


@dataclass(frozen=True)
class TargetDebs:
    """What the step laid out for one target."""

    target: layout.NodeTarget
    sources: tuple[SuiteSnapshot, ...]
    closure: dict[str, tuple[DebFile, ...]]  # engine -> its .debs, the base packages included
    standard_status_sha256: str

    @property
    def debs(self) -> tuple[DebFile, ...]:
        """Every .deb of every engine once, by path."""
        return tuple(
            sorted(
                {deb.file: deb for debs in self.closure.values() for deb in debs}.values(),
                key=lambda deb: deb.file,
            )
        )

    @property
    def bytes(self) -> int:
        return sum(deb.size for deb in self.debs)

    def requires(self) -> dict[str, list[str]]:
        wanted = {layout.BASE_REQUIREMENT: list(layout.NODE_BASE_PACKAGES)}
        return wanted | {
            engine: list(layout.engine_packages(self.target, engine)) for engine in self.closure
        }

    def manifest_entry(self) -> dict[str, Any]:
        """The target's entry of the manifest's `targets` (docs/formats.md)."""
        target = self.target
        return {
            "name": target.name,
            "codename": target.codename,
            "os_version_id": target.os_version_id,
            "python": target.python,
            "debs_dir": layout.debs_dir(target),
            "sources": [source.manifest_entry() for source in self.sources],
            "requires": self.requires(),
            "closure": {
                engine: [deb.manifest_entry() for deb in debs]
                for engine, debs in self.closure.items()
            },
            "bytes": self.bytes,
        }


# --- the options ------------------------------------------------------------------------------------


def selected_engines(names: Iterable[str]) -> tuple[str, ...]:
    """The named engines in ENGINE_PACKAGES order; ConfigError for an unknown one or none."""
    wanted = list(names)
    unknown = [name for name in wanted if name not in layout.ENGINE_PACKAGES]
    if unknown or not wanted:
        msg = f"--engines {','.join(wanted)!r}: choose from {', '.join(layout.ENGINE_PACKAGES)}"
        raise ConfigError(msg)
    return tuple(engine for engine in layout.ENGINE_PACKAGES if engine in wanted)


def check_mirror(url: str) -> None:
    """ConfigError unless `url` is an http(s) or file URL of a mirror's root."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in MIRROR_SCHEMES or (parts.scheme != "file" and not parts.netloc):
        msg = (
            f"--debian-mirror {url!r}: give the mirror's root as http://host (as {DEFAULT_MIRROR})"
        )
        raise ConfigError(msg)
    if parts.query or parts.fragment:
        msg = f"--debian-mirror {url!r}: a mirror URL has no query or fragment"
        raise ConfigError(msg)


def _cache(cache_dir: Path) -> Path:
    return cache_dir.absolute() / CACHE_FOLDER


def _standard_folder(cache_dir: Path, target: layout.NodeTarget) -> Path:
    """Where the standard installation's status is kept: by release and by how it was made."""
    text = "\n".join(
        [target.codename, layout.DEBIAN_ARCH, STANDARD_VARIANT, *STANDARD_INCLUDE]
        + [f"{s.archive} {s.suite} {layout.DEBIAN_COMPONENT}" for s in layout.debian_suites(target)]
    )
    key = hashlib.sha256(text.encode()).hexdigest()[:16]
    return _cache(cache_dir) / "standard" / f"{target.codename}-{key}"


def check_can_build(targets: Iterable[layout.NodeTarget], options: DebianOptions) -> None:
    """ConfigError now for what the step would miss: apt-get, gpgv, the keyring, mmdebstrap."""
    check_mirror(options.mirror)
    for tool in TOOLS:
        if shutil.which(tool) is None:
            msg = f"debs: {tool} not found; install it (apt-get install apt gpgv)"
            raise ConfigError(msg)
    problem = provenance_problem(options.keyring)
    if problem is not None:
        msg = f"debs: {problem}; Debian's metadata cannot be checked without it"
        raise ConfigError(msg)
    unmade = [
        t for t in targets if not (_standard_folder(options.cache_dir, t) / "status").is_file()
    ]
    if unmade and shutil.which("mmdebstrap") is None:
        msg = f"debs: mmdebstrap not found (apt-get install mmdebstrap); it makes the standard installation of {unmade[0].codename}"
        raise ConfigError(msg)


# --- fetching -----------------------------------------------------------------------------------------


def _network_error(url: str, exc: BaseException) -> ConfigError:
    if isinstance(exc, urllib.error.HTTPError):
        reason = f"HTTP {exc.code} {exc.reason}"
    elif isinstance(exc, urllib.error.URLError):
        reason = str(exc.reason)
    else:
        reason = str(exc) or type(exc).__name__
    msg = (
        f"debs: cannot fetch {url} ({reason}); check the network or --debian-mirror "
        "(a build whose cache holds everything needs no network)"
    )
    return ConfigError(msg)


@contextmanager
def _opened(url: str) -> Iterator[IO[bytes]]:
    """The answer to a GET of `url`; ConfigError when the mirror cannot give it."""
    try:
        answer = urllib.request.urlopen(url, timeout=FETCH_SECONDS)  # noqa: S310 (check_mirror allows http, https, file only)
    except (OSError, http.client.HTTPException) as exc:
        raise _network_error(url, exc) from exc
    with answer:
        yield answer


def _read(answer: IO[bytes], url: str) -> bytes:
    """The next chunk of an answer; ConfigError when the connection breaks."""
    try:
        return answer.read(CHUNK_BYTES)
    except (OSError, http.client.HTTPException) as exc:
        raise _network_error(url, exc) from exc


def fetch_bytes(url: str, limit: int) -> bytes:
    """A small file from the mirror, whole (InRelease)."""
    data = bytearray()
    with _opened(url) as answer:
        while chunk := _read(answer, url):
            data += chunk
            if len(data) > limit:
                msg = f"debs: {url} is over {limit} bytes; is --debian-mirror a Debian mirror?"
                raise ConfigError(msg)
    return bytes(data)


def fetch_file(url: str, path: Path, size: int, sha256: str) -> None:
    """Fetch `url` to `path` (whole or not at all), refusing anything but `size` bytes of `sha256`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    got = 0
    with atomic_output(path) as handle, _opened(url) as answer:
        while chunk := _read(answer, url):
            got += len(chunk)
            if got > size:
                break
            digest.update(chunk)
            handle.write(chunk)
        if got != size or digest.hexdigest() != sha256:
            msg = f"debs: {url} is not the file Debian's metadata lists (size or SHA-256 differs); the mirror may be mid-update, try again"
            raise ConfigError(msg)


def _mirror_url(mirror: str, path: str) -> str:
    return f"{mirror.rstrip('/')}/{urllib.parse.quote(path)}"


# --- metadata -----------------------------------------------------------------------------------------


def _metadata(cache_dir: Path) -> Path:
    """The cached copy of Debian's metadata: <archive>/dists/<suite>/..., a tree apt reads as file:."""
    return _cache(cache_dir) / "archive"


def _cached_suite(
    cache_dir: Path, suite: layout.DebianSuite, keyring: Path
) -> SuiteSnapshot | None:
    """The cached suite if its InRelease verifies and its Packages.xz matches it, else None."""
    inrelease = _metadata(cache_dir) / suite.inrelease
    packages = _metadata(cache_dir) / suite.packages_index
    if not inrelease.is_file() or not packages.is_file():
        return None
    data = inrelease.read_bytes()
    try:
        release = verify_inrelease(data, keyring, str(inrelease))
    except SignatureError:
        return None
    listed = release.files.get(layout.PACKAGES_INDEX)
    if (
        listed is None
        or packages.stat().st_size != listed.size
        or sha256_file(packages) != listed.sha256
    ):
        return None
    return SuiteSnapshot(suite, release, hashlib.sha256(data).hexdigest())


def _fetch_suite(into: Path, suite: layout.DebianSuite, options: DebianOptions) -> None:
    """Fetch a suite's InRelease, check it, then the Packages.xz it lists by its hash, into `into`."""
    url = _mirror_url(options.mirror, suite.inrelease)
    data = fetch_bytes(url, layout.MAX_INRELEASE_BYTES)
    try:
        release = verify_inrelease(data, options.keyring, url)
    except SignatureError as exc:
        msg = f"debs: {exc}; the mirror does not serve Debian's signed metadata"
        raise ConfigError(msg) from exc
    if release.codename != suite.suite:
        msg = f"debs: {url} is the InRelease of {release.codename!r}, not of {suite.suite}"
        raise ConfigError(msg)
    listed = release.files.get(layout.PACKAGES_INDEX)
    if listed is None:
        msg = f"debs: {url} lists no {layout.PACKAGES_INDEX}"
        raise ConfigError(msg)
    # By hash: the file this InRelease names, even if the mirror moves on meanwhile.
    folder = suite.packages_index.rsplit("/", 1)[0]
    by_hash = _mirror_url(options.mirror, f"{folder}/by-hash/SHA256/{listed.sha256}")
    packages = into / suite.packages_index
    try:
        fetch_file(by_hash, packages, listed.size, listed.sha256)
    except ConfigError:
        plain = _mirror_url(options.mirror, suite.packages_index)
        fetch_file(plain, packages, listed.size, listed.sha256)
    atomic_write_bytes(into / suite.inrelease, data)


def snapshot(
    target: layout.NodeTarget, options: DebianOptions, progress: Progress
) -> tuple[SuiteSnapshot, ...]:
    """The target's three suites, verified, from the cache or fetched (always on refresh).

    What is fetched goes to the cache only once every suite is fetched and checked, so a
    refresh that fails half-way leaves the cached snapshot as it was.
    """
    suites = layout.debian_suites(target)
    cache, keyring = options.cache_dir, options.keyring
    stale = [s for s in suites if options.refresh or _cached_suite(cache, s, keyring) is None]
    if stale:
        with scratch_dir(_cache(cache), ".fetch-") as staging:
            for suite in stale:
                progress(f"debs: fetching {suite.archive} {suite.suite} InRelease and Packages.xz")
                _fetch_suite(staging, suite, options)
            for suite in stale:
                for name in (suite.packages_index, suite.inrelease):
                    (_metadata(cache) / name).parent.mkdir(parents=True, exist_ok=True)
                    os.replace(staging / name, _metadata(cache) / name)
    found = []
    for suite in suites:
        cached = _cached_suite(cache, suite, keyring)
        if cached is None:
            msg = f"debs: the fetched metadata of {suite.suite} does not verify in the cache"
            raise ConfigError(msg)
        found.append(cached)
    dates = ", ".join(f"{s.suite.suite} {s.release.date}" for s in found)
    progress(f"debs: {target.name} metadata verified with gpgv: {dates}")
    return tuple(found)


# --- the standard installation ---------------------------------------------------------------------


def standard_status(target: layout.NodeTarget, options: DebianOptions, progress: Progress) -> Path:
    """The dpkg status of a standard installation of the target's release, made once (~80 s)."""
    folder = _standard_folder(options.cache_dir, target)
    status = folder / "status"
    if status.is_file():
        return status
    folder.mkdir(parents=True, exist_ok=True)
    progress(f"debs: mmdebstrap --variant={STANDARD_VARIANT} {target.codename} (once, about 80 s)")
    sources = [
        f"deb {options.mirror.rstrip('/')}/{s.archive} {s.suite} {layout.DEBIAN_COMPONENT}"
        for s in layout.debian_suites(target)
    ]
    with scratch_dir(folder, ".standard-") as scratch:
        out = scratch / "standard.tar"
        command = [
            "mmdebstrap",
            "--quiet",
            f"--variant={STANDARD_VARIANT}",
            f"--include={','.join(STANDARD_INCLUDE)}",
            f"--architectures={layout.DEBIAN_ARCH}",
            "--format=tar",
            target.codename,
            str(out),
            *sources,
        ]
        env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C.UTF-8"}
        tools.run(command, f"debs: mmdebstrap of a standard {target.codename} failed", env=env)
        atomic_write_bytes(status, status_of(out))
    return status


def status_of(tarball: Path) -> bytes:
    """./var/lib/dpkg/status of a root filesystem tar; ConfigError when it has none."""
    try:
        with tarfile.open(tarball, "r|*") as tar:
            for member in tar:
                if member.name.removeprefix("./") == STANDARD_STATUS and member.isfile():
                    extracted = tar.extractfile(member)
                    if extracted is not None:
                        return extracted.read()
    except (tarfile.TarError, EOFError) as exc:
        msg = f"debs: {tarball} is not a readable tar ({exc})"
        raise ConfigError(msg) from exc
    msg = f"debs: {tarball} holds no {STANDARD_STATUS}"
    raise ConfigError(msg)


# --- the closure -------------------------------------------------------------------------------------


class PrivateApt:
    """The host's apt-get in a configuration of its own, reading Debian repositories in `tree`.

    `tree` holds <archive>/dists/<suite>/... (the cache's copy, or a bundle's debs/<target>),
    read as `file:` sources signed-by `keyring`, with `status` as the installed packages.
    APT_CONFIG is read before /etc/apt/apt.conf.d and points Dir::Etc::Parts at an empty folder,
    so none of the host's apt configuration, sources, pins or state is read or changed.
    """

    def __init__(
        self,
        folder: Path,
        tree: Path,
        suites: Iterable[layout.DebianSuite],
        status: Path,
        keyring: Path,
    ) -> None:
        self.suites = tuple(suites)
        self.roots = {s.archive: f"file:{tree.absolute() / s.archive}/" for s in self.suites}
        empty = folder / "empty"
        for name in ("empty", "state", "lists/partial", "cache/archives/partial", "log"):
            (folder / name).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(status, folder / "state" / "status")
        (folder / "sources.list").write_text(
            "".join(
                f"deb [signed-by={keyring.absolute()}] "
                f"file:{urllib.parse.quote(str(tree.absolute() / s.archive))}/ "
                f"{s.suite} {layout.DEBIAN_COMPONENT}\n"
                for s in self.suites
            ),
            encoding="utf-8",
        )
        settings = {
            "Dir::Etc::Parts": empty,
            "Dir::Etc::main": "/dev/null",
            "Dir::Etc::SourceList": folder / "sources.list",
            "Dir::Etc::SourceParts": empty,
            "Dir::Etc::Preferences": "/dev/null",
            "Dir::Etc::PreferencesParts": empty,
            "Dir::Etc::Trusted": "/dev/null",
            "Dir::Etc::TrustedParts": empty,
            "Dir::State": folder / "state",
            "Dir::State::status": folder / "state" / "status",
            "Dir::State::Lists": folder / "lists",
            "Dir::State::extended_states": folder / "state" / "extended_states",
            "Dir::Cache": folder / "cache",
            "Dir::Log": folder / "log",
            "APT::Architecture": layout.DEBIAN_ARCH,
            "APT::Architectures": layout.DEBIAN_ARCH,
            "Acquire::Languages": "none",
            "Acquire::Check-Valid-Until": "false",  # security's InRelease expires in days
            "Acquire::By-Hash": "no",
            "APT::Sandbox::User": "root",  # the cache may be private to the builder
            "Debug::NoLocking": "true",  # every folder it writes is this one's
        }
        config = "".join(f'{name} "{value}";\n' for name, value in settings.items())
        (folder / "apt.conf").write_text(config, encoding="utf-8")
        self.env = {
            "APT_CONFIG": str(folder / "apt.conf"),
            "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
            "LC_ALL": "C.UTF-8",
        }
        self._updated = False

    def update(self) -> None:
        """apt-get update: apt reads and verifies every suite's InRelease and Packages.xz."""
        tools.run(["apt-get", "update", "-qq"], "debs: apt-get update failed", env=self.env)
        self._updated = True

    def print_uris(self, packages: Iterable[str]) -> list[tuple[str, str, int]]:
        """(archive, Filename, size) of each .deb that `apt-get install --no-install-recommends
        PACKAGES` would fetch."""
        if not self._updated:
            self.update()
        names = list(packages)
        output = tools.run(
            ["apt-get", "install", "--print-uris", "-qq", "--no-install-recommends", *names],
            f"debs: apt-get cannot install {' '.join(names)} on a standard installation",
            env=self.env,
        )
        found = []
        for line in output.splitlines():
            if not line.strip():
                continue
            match = _PRINT_URI.fullmatch(line.strip())
            if match is None:
                msg = f"debs: apt-get --print-uris said {line[:80]!r}, not a URI line"
                raise ConfigError(msg)
            uri = urllib.parse.unquote(match[1])
            archive = next((a for a, root in self.roots.items() if uri.startswith(root)), None)
            if archive is None:
                msg = f"debs: apt-get wants {uri}, which is in none of its sources"
                raise ConfigError(msg)
            found.append((archive, uri[len(self.roots[archive]) :], int(match[3])))
        return found


def _closure_path(
    cache_dir: Path,
    target: layout.NodeTarget,
    sources: Iterable[SuiteSnapshot],
    status: Path,
    packages: tuple[str, ...],
) -> Path:
    """The cached closure's file: keyed by everything apt's answer depends on."""
    key = json.dumps(
        {
            "format": CLOSURE_FORMAT,
            "target": target.name,
            "arch": layout.DEBIAN_ARCH,
            "sources": [s.inrelease_sha256 for s in sources],
            "status": sha256_file(status),
            "packages": packages,
        },
        sort_keys=True,
    )
    return _cache(cache_dir) / "closure" / f"{hashlib.sha256(key.encode()).hexdigest()}.json"


def _to_debs(
    wanted: list[tuple[str, str, int]], cache_dir: Path, sources: tuple[SuiteSnapshot, ...]
) -> tuple[DebFile, ...]:
    """apt's answer as .debs, with their Packages stanzas' size and SHA-256."""
    by_archive: dict[str, dict[str, int]] = {}
    for archive, filename, size in wanted:
        by_archive.setdefault(archive, {})[filename] = size
    found: dict[tuple[str, str], BinaryPackage] = {}
    for source in sources:
        archive = source.suite.archive
        filenames = by_archive.get(archive, {})
        if not filenames:
            continue
        index = _metadata(cache_dir) / source.suite.packages_index
        try:
            stanzas = find_packages(
                packages_of(index.read_bytes(), str(index)), filenames, str(index)
            )
        except Deb822Error as exc:
            msg = f"debs: {exc}"
            raise ConfigError(msg) from exc
        for filename, package in stanzas.items():
            found.setdefault((archive, filename), package)
    debs = []
    for archive, filenames in by_archive.items():
        for filename, size in filenames.items():
            stanza = found.get((archive, filename))
            if stanza is None or stanza.size != size:
                msg = f"debs: {archive}/{filename}, which apt-get wants, is in no cached Packages stanza of that size"
                raise ConfigError(msg)
            debs.append(
                DebFile(
                    archive,
                    filename,
                    stanza.name,
                    stanza.version,
                    stanza.architecture,
                    stanza.size,
                    stanza.sha256,
                )
            )
    return tuple(sorted(debs, key=lambda deb: (deb.name, deb.file)))


def resolve(
    target: layout.NodeTarget,
    engines: Iterable[str],
    sources: tuple[SuiteSnapshot, ...],
    status: Path,
    options: DebianOptions,
) -> dict[str, tuple[DebFile, ...]]:
    """Each engine's closure beyond the standard installation, from the cache or from apt-get."""
    closure: dict[str, tuple[DebFile, ...]] = {}
    apt: PrivateApt | None = None
    with scratch_dir(_cache(options.cache_dir), ".apt-") as scratch:
        for engine in engines:
            packages = (*layout.NODE_BASE_PACKAGES, *layout.engine_packages(target, engine))
            cached = _closure_path(options.cache_dir, target, sources, status, packages)
            if cached.is_file():
                closure[engine] = tuple(
                    DebFile(**entry) for entry in json.loads(cached.read_text(encoding="utf-8"))
                )
                continue
            if apt is None:
                tree = _metadata(options.cache_dir)
                apt = PrivateApt(scratch, tree, (s.suite for s in sources), status, options.keyring)
            debs = _to_debs(apt.print_uris(packages), options.cache_dir, sources)
            cached.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(
                cached, (json.dumps([asdict(deb) for deb in debs], indent=1) + "\n").encode()
            )
            closure[engine] = debs
    return closure


# --- the .debs ---------------------------------------------------------------------------------------


def _cached_deb(cache_dir: Path, deb: DebFile, mirror: str) -> bool:
    """Whether the cache holds `deb` (checked by size and SHA-256); fetch it if not. True if it did."""
    path = _cache(cache_dir) / "debs" / f"{deb.sha256}.deb"
    if path.is_file() and path.stat().st_size == deb.size and sha256_file(path) == deb.sha256:
        return True
    fetch_file(_mirror_url(mirror, deb.file), path, deb.size, deb.sha256)
    return False


def fetch_debs(debs: Iterable[DebFile], options: DebianOptions) -> int:
    """Every .deb in the cache; returns how many had to be fetched."""
    unique = sorted({deb.sha256: deb for deb in debs}.values())
    with ThreadPoolExecutor(FETCH_THREADS) as pool:
        had = list(
            pool.map(lambda deb: _cached_deb(options.cache_dir, deb, options.mirror), unique)
        )
    return had.count(False)


def lay_out(found: TargetDebs, cache_dir: Path, bundle_root: Path) -> None:
    """debs/<target>/: each suite's InRelease and Packages.xz and each .deb, as the cache holds them."""
    folder = bundle_root / layout.debs_dir(found.target)
    copies = [(_metadata(cache_dir) / s.suite.inrelease, s.suite.inrelease) for s in found.sources]
    copies += [
        (_metadata(cache_dir) / s.suite.packages_index, s.suite.packages_index)
        for s in found.sources
    ]
    copies += [(_cache(cache_dir) / "debs" / f"{deb.sha256}.deb", deb.file) for deb in found.debs]
    for source, relative in copies:
        (folder / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, folder / relative)


def collect(
    targets: Iterable[layout.NodeTarget],
    engines: Iterable[str],
    options: DebianOptions,
    bundle_root: Path,
    progress: Progress,
) -> list[TargetDebs]:
    """The debs step for every target: metadata, standard status, closures, .debs, debs/<target>/."""
    chosen = tuple(engines)
    results = []
    for target in targets:
        sources = snapshot(target, options, progress)
        status = standard_status(target, options, progress)
        closure = resolve(target, chosen, sources, status, options)
        found = TargetDebs(target, sources, closure, sha256_file(status))
        fetched = fetch_debs(found.debs, options)
        lay_out(found, options.cache_dir, bundle_root)
        sizes = ", ".join(
            f"{engine} {len(debs)} debs {sum(d.size for d in debs) / 1e6:.1f} MB"
            for engine, debs in closure.items()
        )
        progress(
            f"debs: {target.name}: {sizes}; {layout.debs_dir(target)} {len(found.debs)} debs "
            f"{found.bytes / 1e6:.1f} MB ({fetched} fetched)"
        )
        results.append(found)
    return results
