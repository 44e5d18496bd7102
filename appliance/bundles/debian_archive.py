"""Debian's signed archive metadata, as apt walks it, for the .debs a bundle carries in debs/.

The chain of trust is Debian's own: a key of Debian's keyring signs `dists/<suite>/InRelease`
(cleartext-signed deb822); its SHA256 field gives the digest and size of
`main/binary-amd64/Packages.xz`; each Packages stanza gives a .deb's size and SHA256 by its
`Filename`. `verify_debian_packages` walks that chain for every target of a bundle's manifest
(bundle_layout.py names the files, docs/formats.md the manifest's `targets`) with the real gpgv,
and refuses whatever under debs/ the chain does not reach. The builder (bundle/debs.py) reads
Debian's metadata with the same functions.

Stdlib only, and nothing is unpacked: InRelease goes to gpgv on its standard input, Packages.xz
is decompressed in memory within a limit, each .deb is hashed where it lies.
"""

from __future__ import annotations

import hashlib
import lzma
import re
import shutil
import subprocess
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from appliance.bundles import bundle_layout as layout
from appliance.bundles.bundle_checksums import check_relative_path
from appliance.bundles.bundle_reader import Bundle, read_bundle, read_small
from appliance.errors import BundleRejected, ConfigError, SignatureError
from appliance.fsio import CHUNK_BYTES, SHA256_HEX
from appliance.progress import Progress, quiet

GPGV = "gpgv"
GPGV_SECONDS = 60
_SHA256 = re.compile(SHA256_HEX)
# deb822 field names: printable ASCII without ':' and not starting with '#' or '-'.
_FIELD = re.compile(r"([!\"$-,.-9;-~][!-9;-~]*):(.*)")
_PARAGRAPH_BREAK = re.compile(r"\n(?:[ \t]*\n)+")
_PACKAGE_NAME = re.compile(r"[a-z0-9][a-z0-9+.-]+")
_VERSION = re.compile(r"[0-9A-Za-z.+~:-]+")
_SIZE = re.compile(r"[0-9]{1,15}")
_SHOWN_NAMES = 5
_FILENAME_LINE = re.compile(rb"^Filename:[ \t]*(\S+)[ \t]*$", re.MULTILINE)

BEGIN_SIGNED = "-----BEGIN PGP SIGNED MESSAGE-----"
BEGIN_SIGNATURE = "-----BEGIN PGP SIGNATURE-----"
END_SIGNATURE = "-----END PGP SIGNATURE-----"


class Deb822Error(ValueError):
    """Debian metadata that does not parse: the message says where and what."""


# --- deb822 ---------------------------------------------------------------------------------------


def _paragraph(text: str, where: str) -> dict[str, str]:
    """One deb822 paragraph: field -> value, continuation lines joined with newlines."""
    fields: dict[str, str] = {}
    name = ""
    for line in text.split("\n"):
        if line[:1] in (" ", "\t"):
            if not name or not line.strip():
                msg = f"{where}: a continuation line {line[:40]!r} belongs to no field"
                raise Deb822Error(msg)
            fields[name] += "\n" + line.strip()
            continue
        match = _FIELD.fullmatch(line)
        if match is None:
            msg = f"{where}: {line[:40]!r} is not a 'Field: value' line"
            raise Deb822Error(msg)
        name = match.group(1)
        if name in fields:
            msg = f"{where}: field {name} appears twice"
            raise Deb822Error(msg)
        fields[name] = match.group(2).strip()
    return fields


def _paragraph_texts(text: str) -> list[str]:
    """The paragraphs of a deb822 text, split at blank lines."""
    return [part for part in _PARAGRAPH_BREAK.split(text.strip("\n")) if part]


def parse_deb822(text: str, where: str = "deb822") -> list[dict[str, str]]:
    """Every paragraph of a deb822 text (an InRelease body, a Packages file); Deb822Error if one is bad."""
    return [
        _paragraph(part, f"{where} paragraph {number}")
        for number, part in enumerate(_paragraph_texts(text), start=1)
    ]


# --- InRelease --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class IndexFile:
    """An index file as InRelease's SHA256 field lists it."""

    sha256: str
    size: int


@dataclass(frozen=True)
class Release:
    """A suite's InRelease, once its signature is good: its fields and the index files it lists."""

    codename: str
    suite: str
    date: str
    files: dict[str, IndexFile]
    signers: tuple[str, ...] = ()  # fingerprints of the keys that made a good signature


def cleartext_body(data: bytes, where: str = "InRelease") -> str:
    """The text of a cleartext-signed message (RFC 4880, 7), dash-escapes removed.

    Strict, as apt is: the message starts the file, carries one signature, and nothing follows
    it, so the text read here is the only text gpgv could have checked.
    """
    lines = _utf8(data, where).split("\n")
    if lines[0].rstrip("\r") != BEGIN_SIGNED:
        msg = f"{where} does not start with {BEGIN_SIGNED}"
        raise Deb822Error(msg)
    try:
        blank = lines.index("", 1)
        begin = lines.index(BEGIN_SIGNATURE, blank)
        end = lines.index(END_SIGNATURE, begin)
    except ValueError as exc:
        msg = f"{where} is not a whole cleartext-signed message (it is cut short or garbled)"
        raise Deb822Error(msg) from exc
    if any(not line.startswith("Hash: ") for line in lines[1:blank]):
        msg = f"{where}: the armor headers may only name the hash"
        raise Deb822Error(msg)
    if any(line.strip() for line in lines[end + 1 :]):
        msg = f"{where}: text follows the signature"
        raise Deb822Error(msg)
    body = []
    for line in lines[blank + 1 : begin]:
        if line.startswith("- "):
            body.append(line[2:])
        elif line.startswith("-"):
            msg = f"{where}: a line {line[:40]!r} starts with an unescaped dash"
            raise Deb822Error(msg)
        else:
            body.append(line)
    return "".join(f"{line}\n" for line in body)


def parse_release(text: str, where: str = "InRelease", signers: Iterable[str] = ()) -> Release:
    """A Release file's fields; Deb822Error unless it names its codename, date and SHA256 files."""
    paragraphs = parse_deb822(text, where)
    if len(paragraphs) != 1:
        msg = f"{where} holds {len(paragraphs)} paragraphs, not 1"
        raise Deb822Error(msg)
    [fields] = paragraphs
    missing = [name for name in ("Codename", "Date", "SHA256") if not fields.get(name)]
    if missing:
        msg = f"{where} has no {', '.join(missing)}"
        raise Deb822Error(msg)
    files: dict[str, IndexFile] = {}
    for line in fields["SHA256"].split("\n"):
        if not line:
            continue
        parts = line.split()
        if len(parts) != 3 or not _SHA256.fullmatch(parts[0]) or not _SIZE.fullmatch(parts[1]):
            msg = f"{where}: SHA256 line {line[:60]!r} is not '<sha256> <size> <path>'"
            raise Deb822Error(msg)
        files[parts[2]] = IndexFile(parts[0], int(parts[1]))
    return Release(
        codename=fields["Codename"],
        suite=fields.get("Suite", ""),
        date=fields["Date"],
        files=files,
        signers=tuple(signers),
    )


def provenance_problem(keyring: Path) -> str | None:
    """Why InRelease cannot be checked here (no gpgv, no keyring), or None when it can."""
    if shutil.which(GPGV) is None:
        return "gpgv is not installed (apt-get install gpgv)"
    if not keyring.is_file():
        return f"no keyring at {keyring} (apt-get install debian-archive-keyring)"
    return None


def _gpgv(data: bytes, keyring: Path, where: str) -> tuple[bytes, list[list[str]]]:
    """gpgv's output (the signed text) and its status lines, each split into words."""
    command = [GPGV, "--keyring", str(keyring.absolute()), "--status-fd", "2", "--output", "-", "-"]
    try:
        result = subprocess.run(
            command, input=data, capture_output=True, timeout=GPGV_SECONDS, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        msg = f"{where}: cannot run gpgv ({exc})"
        raise ConfigError(msg) from exc
    status = [
        line.split()[1:]
        for line in result.stderr.decode("utf-8", "replace").splitlines()
        if line.startswith("[GNUPG:] ")
    ]
    return result.stdout, status


def verify_inrelease(data: bytes, keyring: Path, where: str = "InRelease") -> Release:
    """InRelease checked with gpgv against `keyring`, then read; SignatureError if it is not Debian's.

    Good means what apt takes as good: at least one good signature by a key of the keyring
    (Debian signs with two or three keys; one the keyring lacks is no fault) and no bad one.
    """
    try:
        body = cleartext_body(data, where)
    except Deb822Error as exc:
        raise SignatureError(str(exc)) from exc
    signed, status = _gpgv(data, keyring, where)
    bad = [words[1] for words in status if words[:1] == ["BADSIG"] and len(words) > 1]
    if bad:
        msg = f"{where}: bad signature by key {bad[0]} (the file was changed after signing)"
        raise SignatureError(msg)
    good = [words for words in status if words[:1] == ["GOODSIG"]]
    valid = [words[-1] for words in status if words[:1] == ["VALIDSIG"] and len(words) > 1]
    if not good or not valid:
        said = " ".join(status[-1]) if status else "no signature found"
        msg = f"{where}: no good signature by a key in {keyring} (gpgv: {said})"
        raise SignatureError(msg)
    if signed != body.encode("utf-8"):
        msg = f"{where}: the text gpgv checked is not the text the file shows"
        raise SignatureError(msg)
    try:
        return parse_release(body, where, signers=sorted(set(valid)))
    except Deb822Error as exc:
        raise SignatureError(str(exc)) from exc


# --- Packages ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BinaryPackage:
    """A Packages stanza's facts about one .deb."""

    name: str
    version: str
    architecture: str
    filename: str  # relative to the archive's root: pool/main/...
    size: int
    sha256: str


def binary_package(fields: Mapping[str, str], where: str) -> BinaryPackage:
    """The .deb a Packages stanza describes; Deb822Error when a field is missing or unsafe."""
    missing = [
        name
        for name in ("Package", "Version", "Architecture", "Filename", "Size", "SHA256")
        if not fields.get(name)
    ]
    if missing:
        msg = f"{where} has no {', '.join(missing)}"
        raise Deb822Error(msg)
    name, version, filename = fields["Package"], fields["Version"], fields["Filename"]
    if not _PACKAGE_NAME.fullmatch(name) or not _VERSION.fullmatch(version):
        msg = f"{where}: {name!r} {version!r} is not a Debian package name and version"
        raise Deb822Error(msg)
    try:
        check_relative_path(filename)
    except ValueError as exc:
        msg = f"{where}: Filename {exc}"
        raise Deb822Error(msg) from exc
    if not filename.endswith(layout.DEB_SUFFIX):
        msg = f"{where}: Filename {filename!r} is not a .deb"
        raise Deb822Error(msg)
    if not _SIZE.fullmatch(fields["Size"]) or not _SHA256.fullmatch(fields["SHA256"]):
        msg = f"{where}: Size or SHA256 is malformed"
        raise Deb822Error(msg)
    return BinaryPackage(
        name, version, fields["Architecture"], filename, int(fields["Size"]), fields["SHA256"]
    )


def _utf8(data: bytes, where: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        msg = f"{where} is not UTF-8 text ({exc.reason} at byte {exc.start})"
        raise Deb822Error(msg) from exc


def find_packages(
    packages: bytes, filenames: Iterable[str], where: str
) -> dict[str, BinaryPackage]:
    """The stanzas of a Packages file whose Filename is wanted, each parsed strictly, by Filename.

    Only those stanzas are read (a Packages file has tens of thousands); a wanted Filename
    listed twice is refused: one file has one size and one digest.
    """
    wanted = {filename.encode("utf-8") for filename in filenames}
    found: dict[str, BinaryPackage] = {}
    for match in _FILENAME_LINE.finditer(packages):
        if match[1] not in wanted:
            continue
        before = packages.rfind(b"\n\n", 0, match.start())
        start = 0 if before < 0 else before + 2
        end = packages.find(b"\n\n", match.end())
        here = f"{where} byte {start}"
        paragraph = _utf8(packages[start : None if end < 0 else end], here).strip("\n")
        package = binary_package(_paragraph(paragraph, here), here)
        if package.filename in found:
            msg = f"{where} lists {package.filename} twice"
            raise Deb822Error(msg)
        found[package.filename] = package
    return found


def decompress_xz(data: bytes, limit: int, where: str) -> bytes:
    """One whole xz stream, decompressed to at most `limit` bytes; Deb822Error otherwise."""
    decompressor = lzma.LZMADecompressor(format=lzma.FORMAT_XZ)
    try:
        out = decompressor.decompress(data, max_length=limit + 1)
    except lzma.LZMAError as exc:
        msg = f"{where} is not xz data ({exc})"
        raise Deb822Error(msg) from exc
    if len(out) > limit:
        msg = f"{where} decompresses to more than {limit} bytes"
        raise Deb822Error(msg)
    if not decompressor.eof:
        msg = f"{where} is cut short (the xz stream does not end)"
        raise Deb822Error(msg)
    if decompressor.unused_data:
        msg = f"{where}: data follows the xz stream"
        raise Deb822Error(msg)
    return out


def packages_of(data: bytes, where: str) -> bytes:
    """A Packages.xz file, decompressed (within MAX_PACKAGES_BYTES)."""
    return decompress_xz(data, layout.MAX_PACKAGES_BYTES, where)


# --- a bundle's debs/ -------------------------------------------------------------------------------


@dataclass(frozen=True)
class SourceReport:
    """One suite whose InRelease verified: where it is, when Debian signed it, with which keys."""

    archive: str
    suite: str
    date: str
    signers: tuple[str, ...]


@dataclass(frozen=True)
class TargetReport:
    """One target's debs/ folder, checked."""

    name: str
    debs: int
    bytes: int
    sources: tuple[SourceReport, ...]


@dataclass(frozen=True)
class DebianReport:
    """What verify_debian_packages checked, and against which keyring."""

    keyring: str
    targets: tuple[TargetReport, ...] = field(default=())

    @property
    def debs(self) -> int:
        return sum(target.debs for target in self.targets)

    @property
    def bytes(self) -> int:
        return sum(target.bytes for target in self.targets)

    def as_json(self) -> dict[str, Any]:
        """The report as a JSON object (part of `appliance verify --json`)."""
        return {
            "keyring": self.keyring,
            "debs": self.debs,
            "bytes": self.bytes,
            "targets": [
                {
                    "name": target.name,
                    "debs": target.debs,
                    "bytes": target.bytes,
                    "sources": [
                        {
                            "archive": s.archive,
                            "suite": s.suite,
                            "date": s.date,
                            "signers": list(s.signers),
                        }
                        for s in target.sources
                    ],
                }
                for target in self.targets
            ],
        }


def _manifest_error(message: str) -> BundleRejected:
    return BundleRejected("bad-manifest", f"{layout.MANIFEST}: {message}")


def _object(value: Any, fields: tuple[str, ...], where: str) -> dict[str, Any]:
    """`value` as a JSON object having `fields`, else a bad-manifest refusal."""
    if not isinstance(value, dict) or not set(fields) <= set(value):
        raise _manifest_error(f"{where} must be an object with {', '.join(fields)}")
    return value


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _is_names(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(name, str) for name in value)


@dataclass(frozen=True)
class _Wanted:
    """A closure entry of the manifest, as the Packages stanza it names must read."""

    archive: str
    filename: str
    name: str
    version: str
    sha256: str
    size: int


def _closure_entry(entry: Any, archives: set[str], where: str) -> _Wanted:
    """A closure entry's fields, checked for type and for a safe path inside one archive."""
    entry = _object(entry, layout.CLOSURE_ENTRY_FIELDS, where)
    file, digest, size = entry["file"], entry["sha256"], entry["size"]
    if not all(isinstance(entry[key], str) for key in ("name", "version", "file", "sha256")):
        raise _manifest_error(f"{where}: name, version, file and sha256 must be strings")
    if not _SHA256.fullmatch(digest) or not _is_count(size):
        raise _manifest_error(f"{where}: sha256 or size is malformed")
    try:
        check_relative_path(file)
    except ValueError as exc:
        raise _manifest_error(f"{where}: file {exc}") from exc
    archive, _, filename = file.partition("/")
    if archive not in archives or not filename or not file.endswith(layout.DEB_SUFFIX):
        msg = f"{where}: file {file!r} is not a .deb below one of {', '.join(sorted(archives))}"
        raise _manifest_error(msg)
    return _Wanted(archive, filename, entry["name"], entry["version"], digest, size)


def _closures(entry: dict[str, Any], archives: set[str], where: str) -> dict[str, list[_Wanted]]:
    """The target's closure by engine, and its requires agreeing with it."""
    closure, requires = entry["closure"], entry["requires"]
    if not isinstance(closure, dict) or not closure:
        raise _manifest_error(f"{where}.closure must be an object with an engine or more")
    if not isinstance(requires, dict):
        raise _manifest_error(f"{where}.requires must be an object")
    if set(requires) != {layout.BASE_REQUIREMENT, *closure}:
        msg = f"{where}.requires must name {layout.BASE_REQUIREMENT} and the closure's engines"
        raise _manifest_error(msg)
    closures: dict[str, list[_Wanted]] = {}
    for engine, entries in closure.items():
        if engine not in layout.ENGINE_PACKAGES or not isinstance(entries, list):
            raise _manifest_error(f"{where}.closure.{engine}: not an engine with a list")
        here = f"{where}.closure.{engine}"
        wanted = [_closure_entry(e, archives, f"{here}[{i}]") for i, e in enumerate(entries)]
        names = [w.name for w in wanted]
        if len(set(names)) != len(names):
            raise _manifest_error(f"{here} names a package twice")
        needed = [requires[layout.BASE_REQUIREMENT], requires[engine]]
        if not all(_is_names(names_) for names_ in needed):
            raise _manifest_error(f"{where}.requires: each must be a list of package names")
        missing = sorted({n for names_ in needed for n in names_} - set(names))
        if missing:
            raise _manifest_error(f"{here} lacks what requires names: {', '.join(missing)}")
        closures[engine] = wanted
    return closures


def _read_hashed(bundle: Bundle, name: str, limit: int) -> tuple[bytes, str]:
    """A file of the bundle read whole (within `limit`) and its SHA-256."""
    data = read_small(bundle.files[name], limit, name)
    return data, hashlib.sha256(data).hexdigest()


def _stream_sha256(bundle: Bundle, name: str) -> str:
    """A large file's SHA-256, read in chunks."""
    digest = hashlib.sha256()
    read = 0
    with bundle.open(name) as stream:
        while chunk := stream.read(CHUNK_BYTES):
            digest.update(chunk)
            read += len(chunk)
    if read != bundle.files[name].size:
        raise BundleRejected("truncated", f"bundle is truncated inside {name}")
    return digest.hexdigest()


def _require(bundle: Bundle, name: str) -> None:
    if name not in bundle.files:
        raise BundleRejected("missing-file", f"{name} is missing")


class _TargetCheck:
    """The chain InRelease -> Packages.xz -> .deb walked for one target entry of the manifest."""

    def __init__(self, bundle: Bundle, keyring: Path, index: int, entry: Any) -> None:
        self.bundle = bundle
        self.keyring = keyring
        self.where = f"targets[{index}]"
        self.entry = _object(entry, layout.TARGET_ENTRY_FIELDS, self.where)
        self.reached: set[str] = set()

    def run(self) -> TargetReport:
        target = self._target()
        folder = layout.debs_dir(target)
        suites = self._sources(target)
        archives = {suite.archive for suite in suites}
        closures = _closures(self.entry, archives, self.where)
        wanted: dict[str, _Wanted] = {}
        for entries in closures.values():
            for item in entries:
                wanted.setdefault(f"{item.archive}/{item.filename}", item)
        listed: dict[str, BinaryPackage] = {}
        reports = []
        for index, suite in enumerate(suites):
            source = self.entry["sources"][index]
            release = self._release(folder, suite, source)
            names = [w.filename for w in wanted.values() if w.archive == suite.archive]
            for filename, package in self._packages(folder, suite, release, names).items():
                known = listed.setdefault(f"{suite.archive}/{filename}", package)
                if known != package:
                    msg = f"{folder}/{suite.archive}: two suites describe {filename} differently"
                    raise BundleRejected("debian-metadata", msg)
            reports.append(SourceReport(suite.archive, suite.suite, release.date, release.signers))
        for entries in closures.values():
            for item in entries:
                self._stanza_agrees(folder, item, listed.get(f"{item.archive}/{item.filename}"))
        total = sum(self._deb(folder, file, listed[file]) for file in wanted)
        if self.entry["bytes"] != total:
            msg = f"{self.where}.bytes {self.entry['bytes']!r} is not {total}, the sum of its .debs"
            raise _manifest_error(msg)
        return TargetReport(target.name, len(wanted), total, tuple(reports))

    def _target(self) -> layout.NodeTarget:
        entry = self.entry
        try:
            target = layout.node_target(entry["name"])
        except KeyError as exc:
            raise _manifest_error(f"{self.where}.name {entry['name']!r} is no node target") from exc
        expected = (target.codename, target.os_version_id, target.python, layout.debs_dir(target))
        if (entry["codename"], entry["os_version_id"], entry["python"], entry["debs_dir"]) != (
            expected
        ):
            msg = f"{self.where}: codename, os_version_id, python and debs_dir must be {expected}"
            raise _manifest_error(msg)
        return target

    def _sources(self, target: layout.NodeTarget) -> tuple[layout.DebianSuite, ...]:
        suites = layout.debian_suites(target)
        sources = self.entry["sources"]
        if not isinstance(sources, list) or len(sources) != len(suites):
            raise _manifest_error(f"{self.where}.sources must list the {len(suites)} suites")
        for index, (raw, suite) in enumerate(zip(sources, suites, strict=True)):
            here = f"{self.where}.sources[{index}]"
            source = _object(raw, layout.SOURCE_ENTRY_FIELDS, here)
            named = (source["archive"], source["suite"], source["component"])
            if named != (suite.archive, suite.suite, layout.DEBIAN_COMPONENT):
                msg = f"{here} must be {suite.archive} {suite.suite} {layout.DEBIAN_COMPONENT}"
                raise _manifest_error(msg)
            if not isinstance(source["inrelease_sha256"], str) or not isinstance(
                source["date"], str
            ):
                raise _manifest_error(f"{here}: date and inrelease_sha256 must be strings")
        return suites

    def _release(self, folder: str, suite: layout.DebianSuite, source: dict[str, Any]) -> Release:
        name = f"{folder}/{suite.inrelease}"
        _require(self.bundle, name)
        data, digest = _read_hashed(self.bundle, name, layout.MAX_INRELEASE_BYTES)
        if digest != source["inrelease_sha256"]:
            raise _manifest_error(f"{name} differs from its inrelease_sha256 in the manifest")
        try:
            release = verify_inrelease(data, self.keyring, name)
        except SignatureError as exc:
            raise BundleRejected("debian-signature", str(exc)) from exc
        if release.codename != suite.suite:
            msg = f"{name} is the InRelease of {release.codename!r}, not of {suite.suite}"
            raise BundleRejected("debian-metadata", msg)
        if release.date != source["date"]:
            raise _manifest_error(f"{name} is dated {release.date}, not {source['date']!r}")
        self.reached.add(name)
        return release

    def _packages(
        self, folder: str, suite: layout.DebianSuite, release: Release, filenames: list[str]
    ) -> dict[str, BinaryPackage]:
        name = f"{folder}/{suite.packages_index}"
        listed = release.files.get(layout.PACKAGES_INDEX)
        if listed is None:
            msg = f"{folder}/{suite.inrelease} lists no {layout.PACKAGES_INDEX}"
            raise BundleRejected("debian-metadata", msg)
        _require(self.bundle, name)
        data, digest = _read_hashed(self.bundle, name, layout.MAX_PACKAGES_XZ_BYTES)
        if len(data) != listed.size or digest != listed.sha256:
            msg = f"{name} is not the file its InRelease lists (size or SHA-256 differs)"
            raise BundleRejected("debian-metadata", msg)
        self.reached.add(name)
        if not filenames:
            return {}
        try:
            return find_packages(packages_of(data, name), filenames, name)
        except Deb822Error as exc:
            raise BundleRejected("debian-metadata", str(exc)) from exc

    def _stanza_agrees(self, folder: str, item: _Wanted, package: BinaryPackage | None) -> None:
        """A closure entry must say what its Packages stanza says (every engine's, each time)."""
        file = f"{item.archive}/{item.filename}"
        if package is None:
            msg = f"{folder}/{file} is in no Packages of its target's suites"
            raise BundleRejected("debian-package", msg)
        stated = (item.name, item.version, item.sha256, item.size)
        if stated != (package.name, package.version, package.sha256, package.size):
            msg = f"{self.where}.closure entry {file} disagrees with Debian's Packages stanza"
            raise _manifest_error(msg)

    def _deb(self, folder: str, file: str, package: BinaryPackage) -> int:
        """One .deb checked against its stanza; returns its size."""
        name = f"{folder}/{file}"
        _require(self.bundle, name)
        blob = self.bundle.files[name]
        if blob.size != package.size or _stream_sha256(self.bundle, name) != package.sha256:
            msg = f"{name} is not the .deb Debian's Packages lists (size or SHA-256 differs)"
            raise BundleRejected("debian-package", msg)
        self.reached.add(name)
        return package.size


def check_debian_packages(
    bundle: Bundle, manifest: Mapping[str, Any], keyring: Path, progress: Progress = quiet
) -> DebianReport:
    """Walk Debian's chain for every target of `manifest` in `bundle`; BundleRejected says where it breaks.

    Every file under debs/ must be reached: an InRelease that gpgv accepts with `keyring`, a
    Packages.xz it lists, or a .deb of the manifest's closure that its Packages lists.
    """
    entries = manifest.get("targets", [])
    if not isinstance(entries, list):
        raise _manifest_error("targets must be a list")
    reports: list[TargetReport] = []
    reached: set[str] = set()
    for index, entry in enumerate(entries):
        check = _TargetCheck(bundle, keyring, index, entry)
        report = check.run()
        if any(report.name == known.name for known in reports):
            raise _manifest_error(f"targets names {report.name} twice")
        reports.append(report)
        reached |= check.reached
        progress(f"debian packages: {report.name}, {report.debs} .debs reached from InRelease")
    unreached = sorted(
        name
        for name in bundle.files
        if name.startswith(f"{layout.DEBS_DIR}/") and name not in reached
    )
    if unreached:
        more = len(unreached) - _SHOWN_NAMES
        shown = ", ".join(unreached[:_SHOWN_NAMES]) + (f" and {more} more" if more > 0 else "")
        msg = f"under {layout.DEBS_DIR}/ but not reached from Debian's signed metadata: {shown}"
        raise BundleRejected("unlisted-file", msg)
    return DebianReport(str(keyring), tuple(reports))


def verify_debian_packages(
    bundle_dir: Path, manifest: Mapping[str, Any], keyring: Path, progress: Progress = quiet
) -> DebianReport:
    """check_debian_packages on the bundle (archive or unpacked folder) at `bundle_dir`."""
    return check_debian_packages(read_bundle(bundle_dir), manifest, keyring, progress)
