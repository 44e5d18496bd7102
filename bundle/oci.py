"""Write container image layers and a `docker save`-style archive, byte for byte reproducibly.

Why not `docker build`: an engine stamps the build time into the image config and the file times
into each layer, so two builds never match. Here every layer is a tar written in path order with
every time set to SOURCE_DATE_EPOCH and owners by number, and the config's times come from
SOURCE_DATE_EPOCH too. Same inputs => same layer digests => same image ID => same archive.
The engine (bundle/engine.py) then loads and tries the image through its API.

The archive is the format both `docker load` and `podman load` accept (docker-archive):

    manifest.json          [{"Config": "<id>.json", "RepoTags": [...], "Layers": ["<diff>/layer.tar", ...]}]
    <id>.json              the image config; <id> is its SHA-256, which engines show as the image ID
    <diff>/layer.tar       each layer, uncompressed; <diff> is its SHA-256 (the config's diff_id)
    repositories           {"<name>": {"<tag>": "<last diff>"}}
"""

from __future__ import annotations

import hashlib
import io
import json
import stat
import tarfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO, Literal

from appliance.errors import ConfigError
from appliance.fsio import CHUNK_BYTES, atomic_output

EntryKind = Literal["dir", "file", "symlink"]


@dataclass(frozen=True)
class Entry:
    """One path in a layer. `data` is the bytes or the file they come from; `link` a symlink's target."""

    name: str
    kind: EntryKind
    mode: int
    uid: int = 0
    gid: int = 0
    data: bytes | Path | None = None
    link: str = ""

    def size(self) -> int:
        if self.kind != "file":
            return 0
        if isinstance(self.data, Path):
            return self.data.stat().st_size
        return len(self.data or b"")


def clean_name(name: str) -> str:
    """A layer path as engines expect it: relative, no './' prefix, no trailing slash."""
    clean = name.removeprefix("./").strip("/")
    if not clean or clean.startswith("../") or "/../" in f"/{clean}/":
        msg = f"unsafe path {name!r} for an image layer"
        raise ConfigError(msg)
    return clean


def directory(name: str, mode: int = 0o755, uid: int = 0, gid: int = 0) -> Entry:
    return Entry(clean_name(name), "dir", mode, uid, gid)


def file(name: str, data: bytes | Path, mode: int = 0o644) -> Entry:
    return Entry(clean_name(name), "file", mode, data=data)


def tree(source: Path, prefix: str) -> Iterator[Entry]:
    """Every folder, file and symlink below `source`, placed under `prefix` in the layer."""
    for path in sorted(source.rglob("*")):
        name = f"{prefix}/{path.relative_to(source).as_posix()}"
        st = path.lstat()
        if stat.S_ISLNK(st.st_mode):
            yield Entry(clean_name(name), "symlink", 0o777, link=str(path.readlink()))
        elif stat.S_ISDIR(st.st_mode):
            yield directory(name)
        elif stat.S_ISREG(st.st_mode):
            yield file(name, path, 0o755 if st.st_mode & 0o111 else 0o644)
        else:
            msg = f"{path} is neither a file, a folder nor a symlink"
            raise ConfigError(msg)


def parents(entries: Iterable[Entry]) -> list[Entry]:
    """The entries plus any parent folder they lack (root-owned, 0755), so engines never guess."""
    by_name = {entry.name: entry for entry in entries}
    for name in list(by_name):
        parts = name.split("/")[:-1]
        for depth in range(1, len(parts) + 1):
            parent = "/".join(parts[:depth])
            by_name.setdefault(parent, directory(parent))
    return list(by_name.values())


def _header(entry: Entry, source_date_epoch: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(entry.name)
    info.mtime = source_date_epoch
    info.mode = entry.mode
    info.uid, info.gid = entry.uid, entry.gid
    info.uname = info.gname = ""
    if entry.kind == "dir":
        info.type = tarfile.DIRTYPE
    elif entry.kind == "symlink":
        info.type = tarfile.SYMTYPE
        info.linkname = entry.link
    else:
        info.type = tarfile.REGTYPE
        info.size = entry.size()
    return info


@dataclass(frozen=True)
class Layer:
    """A written layer: its file, SHA-256 (the diff_id), size, and the entries it holds."""

    path: Path
    digest: str
    size: int
    files: int


class _HashingWriter:
    """A write-only file that hashes and counts what passes through it to `out`."""

    def __init__(self, out: BinaryIO) -> None:
        self.out = out
        self.hash = hashlib.sha256()
        self.size = 0

    def tell(self) -> int:
        return self.size

    def write(self, data: bytes) -> int:
        view = memoryview(data)
        self.hash.update(view)
        self.out.write(view)
        self.size += len(view)
        return len(view)


def write_layer(entries: Iterable[Entry], out: Path, source_date_epoch: int) -> Layer:
    """Write `entries` as an uncompressed tar in path order; the same entries give the same bytes."""
    ordered = sorted(parents(entries), key=lambda entry: entry.name)
    names = [entry.name for entry in ordered]
    if len(set(names)) != len(names):
        msg = f"layer {out.name} names a path twice"
        raise ConfigError(msg)
    with atomic_output(out, 0o644) as handle:
        sink = _HashingWriter(handle)
        with tarfile.open(fileobj=sink, mode="w", format=tarfile.GNU_FORMAT) as tar:  # type: ignore[call-overload]
            for entry in ordered:
                info = _header(entry, source_date_epoch)
                if entry.kind != "file":
                    tar.addfile(info)
                elif isinstance(entry.data, Path):
                    with entry.data.open("rb") as source:
                        tar.addfile(info, source)
                else:
                    tar.addfile(info, io.BytesIO(entry.data or b""))
    return Layer(out, sink.hash.hexdigest(), sink.size, sum(e.kind == "file" for e in ordered))


def iso_time(source_date_epoch: int) -> str:
    """SOURCE_DATE_EPOCH as the RFC 3339 UTC time image configs and OCI labels use."""
    return datetime.fromtimestamp(source_date_epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def canonical_json(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


@dataclass(frozen=True)
class ImageArchive:
    """A written image archive: the file, its SHA-256 and size, the image ID and the layers."""

    path: Path
    sha256: str
    size: int
    image_id: str
    repo_tag: str
    layers: tuple[Layer, ...]

    @property
    def uncompressed_bytes(self) -> int:
        return sum(layer.size for layer in self.layers)


def write_image_archive(
    out: Path,
    layers: list[Layer],
    config: dict[str, Any],
    repo_tag: str,
    source_date_epoch: int,
) -> ImageArchive:
    """Write a docker-archive holding `layers` under `config`, tagged `repo_tag` (name:tag)."""
    config = dict(config)
    config["rootfs"] = {"type": "layers", "diff_ids": [f"sha256:{x.digest}" for x in layers]}
    config_bytes = canonical_json(config)
    image_id = hashlib.sha256(config_bytes).hexdigest()
    name, _, tag = repo_tag.rpartition(":")
    manifest = [
        {
            "Config": f"{image_id}.json",
            "RepoTags": [repo_tag],
            "Layers": [f"{layer.digest}/layer.tar" for layer in layers],
        }
    ]
    small = {
        f"{image_id}.json": config_bytes,
        "manifest.json": canonical_json(manifest),
        "repositories": canonical_json({name: {tag: layers[-1].digest}}),
    }
    with (
        atomic_output(out, 0o644) as handle,
        tarfile.open(fileobj=handle, mode="w", format=tarfile.GNU_FORMAT) as tar,
    ):
        for layer in layers:
            folder = Entry(layer.digest, "dir", 0o755)
            tar.addfile(_header(folder, source_date_epoch))
            info = _header(
                Entry(f"{layer.digest}/layer.tar", "file", 0o644, data=layer.path),
                source_date_epoch,
            )
            with layer.path.open("rb") as source:
                tar.addfile(info, source)
        for member, data in small.items():
            info = _header(Entry(member, "file", 0o644, data=data), source_date_epoch)
            tar.addfile(info, io.BytesIO(data))
    digest = hashlib.sha256()
    with out.open("rb") as written:
        while chunk := written.read(CHUNK_BYTES):
            digest.update(chunk)
    return ImageArchive(
        out, digest.hexdigest(), out.stat().st_size, f"sha256:{image_id}", repo_tag, tuple(layers)
    )
