"""Each version folder's own checksums (SHA256SUMS), written at publish, checked to find bit rot.

The file is in `sha256sum -c` format, so an admin can check a version with stock tools too:
`cd versions/v0001 && sha256sum -c SHA256SUMS`.

Hashing a version takes seconds per GB, and a worker checks the version before it first serves
it: at 10x field scale every worker start would hash gigabytes. So a successful check (or the
publish that wrote the sums) leaves a stamp: each file's size, mtime, ctime and inode as they
were when their SHA-256 matched. A later start whose files still have those facts serves without
hashing again; a file replaced, rewritten, truncated or chmod'ed changes them and is hashed.
What a stamp cannot see is a byte rotting in place; every served answer has its own CRC-32
(appliance/data/answers.py), DuckDB checks each block it reads, and `appliance versions
--verify` hashes everything on demand.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from appliance.data.store_layout import VERSION_CHECKSUMS
from appliance.fsio import SHA256_HEX, atomic_write_bytes, sha256_file

_LINE = re.compile(rf"({SHA256_HEX})  ([A-Za-z0-9._-]+)")
STAMP_FORMAT = 1


@dataclass(frozen=True)
class VersionCheck:
    """What checking one version folder found."""

    vid: str
    files: int
    problems: list[str]
    sealed: bool = True

    @property
    def ok(self) -> bool:
        """Whether every file matches its recorded SHA-256 and nothing is missing or extra."""
        return not self.problems

    def describe(self) -> str:
        """One line for people."""
        if not self.sealed:
            return f"{self.vid}: no {VERSION_CHECKSUMS} (published before versions were sealed); not checked"
        if self.ok:
            return f"{self.vid}: ok ({self.files} files match {VERSION_CHECKSUMS})"
        return f"{self.vid}: DAMAGED: {'; '.join(self.problems)}"


def write_checksums(folder: Path) -> None:
    """Record the SHA-256 of every file in `folder` (flat) in its SHA256SUMS, atomically."""
    lines = [
        f"{sha256_file(path)}  {path.name}\n"
        for path in sorted(folder.iterdir())
        if path.is_file() and path.name != VERSION_CHECKSUMS and not path.name.startswith(".")
    ]
    atomic_write_bytes(folder / VERSION_CHECKSUMS, "".join(lines).encode("ascii"), mode=0o444)


def read_checksums(folder: Path) -> dict[str, str] | None:
    """name -> SHA-256 from the folder's SHA256SUMS; None if it has none; ValueError if malformed."""
    try:
        text = (folder / VERSION_CHECKSUMS).read_text(encoding="ascii")
    except FileNotFoundError:
        return None
    except UnicodeDecodeError as exc:
        msg = f"{VERSION_CHECKSUMS} is not ASCII text"
        raise ValueError(msg) from exc
    sums: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        match = _LINE.fullmatch(line)
        if match is None or match[2] in sums:
            msg = f"{VERSION_CHECKSUMS} line {number} is malformed"
            raise ValueError(msg)
        sums[match[2]] = match[1]
    return sums


def check_version(vid: str, folder: Path, names: tuple[str, ...] | None = None) -> VersionCheck:
    """Check the files of a version folder (only `names` if given) against its SHA256SUMS."""
    try:
        sums = read_checksums(folder)
    except (ValueError, OSError) as exc:
        return VersionCheck(vid, 0, [str(exc)])
    if sums is None:
        return VersionCheck(vid, 0, [], sealed=False)
    problems = []
    wanted = names if names is not None else tuple(sums)
    for name in wanted:
        expected = sums.get(name)
        if expected is None:
            problems.append(f"{name} is not listed in {VERSION_CHECKSUMS}")
            continue
        try:
            actual = sha256_file(folder / name)
        except FileNotFoundError:
            problems.append(f"{name} is missing")
            continue
        except OSError as exc:
            problems.append(f"{name} cannot be read ({exc.strerror})")
            continue
        if actual != expected:
            problems.append(f"{name} does not match its SHA-256")
    if names is None:
        present = {p.name for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")}
        extra = sorted(present - set(sums) - {VERSION_CHECKSUMS})
        problems += [f"{name} is not listed in {VERSION_CHECKSUMS}" for name in extra]
    return VersionCheck(vid, len(wanted), problems)


def file_facts(folder: Path) -> dict[str, list[int]]:
    """Size, mtime, ctime and inode of each file of a version folder: what a stamp holds."""
    facts = {}
    for path in sorted(folder.iterdir()):
        if path.is_file() and not path.name.startswith("."):
            info = path.stat()
            facts[path.name] = [info.st_size, info.st_mtime_ns, info.st_ctime_ns, info.st_ino]
    return facts


def write_check_stamp(stamp: Path, folder: Path) -> None:
    """Record that `folder`'s files, as they are now, matched their SHA256SUMS (OSError if not written)."""
    stamp.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    document = {"format": STAMP_FORMAT, "files": file_facts(folder)}
    atomic_write_bytes(stamp, json.dumps(document, sort_keys=True).encode("ascii"), mode=0o600)


def stamp_holds(stamp: Path, folder: Path) -> bool:
    """Whether `stamp` names `folder`'s files exactly as they are (so hashing them again finds nothing new)."""
    try:
        document = json.loads(stamp.read_bytes())
        return (
            isinstance(document, dict)
            and document.get("format") == STAMP_FORMAT
            and document.get("files") == file_facts(folder)
        )
    except (OSError, ValueError):
        return False
