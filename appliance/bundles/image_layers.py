"""The layers of an image archive (docker-archive, as bundle/oci.py writes it), walked in place.

`image_layers` reads an archive's manifest.json and configs into its images and their layers.
`layer_members` walks one layer's members, each a safe relative path. `SiteTree` keeps a copy of
the regular files below one folder of the image (its site-packages) as the layers stack them: an
upper layer's file replaces a lower one's, and a whiteout (`.wh.<name>`, or `.wh..wh..opq` for a
folder's whole contents) deletes what the layers below put there, as a container engine does.
Nothing is extracted but that copy; the layers are read where they lie in the bundle.
"""

from __future__ import annotations

import json
import shutil
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from appliance.bundles.bundle_reader import (
    Blob,
    check_trailer,
    next_member,
    open_tar,
    read_small,
    tar_files,
)
from appliance.errors import BundleRejected
from appliance.fsio import CHUNK_BYTES

IMAGE_MANIFEST = "manifest.json"
MAX_JSON_BYTES = 8 << 20  # an image's manifest.json and config are read whole into memory
WHITEOUT_PREFIX = ".wh."
OPAQUE_WHITEOUT = ".wh..wh..opq"


@dataclass(frozen=True)
class Layer:
    """A layer to read: its member in the image archive, its bytes and its diff_id."""

    member: str
    blob: Blob
    diff_id: str


@dataclass(frozen=True)
class Image:
    """One image of an archive: its first tag ('' when untagged) and its layers, lowest first."""

    name: str
    layers: tuple[Layer, ...]


def image_layers(file: str, blob: Blob) -> list[Image]:
    """Each image of the docker-archive `file` (held in `blob`), from its manifest.json and configs."""
    members = dict(tar_files(blob, file))
    if IMAGE_MANIFEST not in members:
        raise BundleRejected("bad-image", f"{file} has no {IMAGE_MANIFEST}")
    entries = _json_member(file, members, IMAGE_MANIFEST)
    if not isinstance(entries, list) or not entries:
        raise BundleRejected("bad-image", f"{file}: {IMAGE_MANIFEST} must be a non-empty list")
    images = []
    for index, entry in enumerate(entries):
        where = f"{file}: {IMAGE_MANIFEST}[{index}]"
        layers = entry.get("Layers") if isinstance(entry, dict) else None
        if not isinstance(layers, list) or not all(isinstance(x, str) for x in layers):
            raise BundleRejected("bad-image", f"{where} must be an object with a Layers list")
        tags = entry.get("RepoTags") or []
        name = tags[0] if isinstance(tags, list) and tags and isinstance(tags[0], str) else ""
        config = entry.get("Config")
        if not isinstance(config, str) or config not in members:
            raise BundleRejected("bad-image", f"{where}: Config {config!r} is not in the image")
        image_config = _json_member(file, members, config)
        rootfs = image_config.get("rootfs") if isinstance(image_config, dict) else None
        diff_ids = rootfs.get("diff_ids") if isinstance(rootfs, dict) else None
        if not isinstance(diff_ids, list) or len(diff_ids) != len(layers):
            diff_ids = [f"sha256:{x.split('/')[0]}" for x in layers]
        missing = [x for x in layers if x not in members]
        if missing:
            raise BundleRejected("bad-image", f"{where}: layer {missing[0]!r} is not in the image")
        found = (Layer(x, members[x], str(d)) for x, d in zip(layers, diff_ids, strict=True))
        images.append(Image(name, tuple(found)))
    return images


def _json_member(file: str, members: dict[str, Blob], name: str) -> Any:
    where = f"{file}: {name}"
    try:
        return json.loads(read_small(members[name], MAX_JSON_BYTES, where))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BundleRejected("bad-image", f"{where} is not JSON ({exc})") from exc


@dataclass(frozen=True)
class LayerMember:
    """One member of a layer, by its path in the image (no './', no trailing '/')."""

    name: str
    info: tarfile.TarInfo
    tar: tarfile.TarFile
    where: str

    @property
    def parts(self) -> list[str]:
        return self.name.split("/")

    def read(self) -> bytes:
        """The member's bytes (call only for a small regular file)."""
        try:
            stream = self.tar.extractfile(self.info)
            return stream.read() if stream else b""
        except tarfile.TarError as exc:
            raise BundleRejected("truncated", f"{self.where} is truncated ({exc})") from exc

    def copy_to(self, target: Path) -> None:
        """Write the member's bytes to the file `target`."""
        try:
            stream = self.tar.extractfile(self.info)
            if stream is None:
                return
            with stream, target.open("wb") as out:
                shutil.copyfileobj(stream, out, CHUNK_BYTES)
        except tarfile.TarError as exc:
            raise BundleRejected("truncated", f"{self.where} is truncated ({exc})") from exc


def layer_path(member: tarfile.TarInfo, where: str) -> str:
    """A layer member's path without './' or a trailing '/'; refuse one that could climb out."""
    name = member.name.removeprefix("./").rstrip("/")
    if name.startswith("/") or ".." in name.split("/") or "\0" in name:
        msg = f"{where}: member {member.name!r} is not a safe relative path"
        raise BundleRejected("unsafe-member", msg)
    return name if name != "." else ""


def layer_members(layer: Layer, where: str) -> Iterator[LayerMember]:
    """Every member of a layer but its root folder, in order; the layer must end cleanly."""
    with layer.blob.open() as stream, open_tar(stream, where) as tar:
        while (member := next_member(tar, where)) is not None:
            name = layer_path(member, where)
            if name:
                yield LayerMember(name, member, tar, where)
        check_trailer(stream, tar.offset, where)


@dataclass
class SiteTree:
    """The regular files below `folder` of an image, copied under `root` as the layers stack them."""

    root: Path
    folder: str
    origin: dict[str, int] = field(default_factory=dict)  # copied path -> index of its layer

    def take(self, member: LayerMember, layer: int) -> None:
        """Apply one layer member: a whiteout deletes, a regular file replaces; others are ignored."""
        if not member.name.startswith(f"{self.folder}/"):
            return
        if member.parts[-1].startswith(WHITEOUT_PREFIX):
            self._apply_whiteout(member.name)
        elif member.info.isreg():
            self._copy(member)
            self.origin[member.name] = layer

    def _copy(self, member: LayerMember) -> None:
        parts = member.parts
        for depth in range(1, len(parts)):
            parent = self.root.joinpath(*parts[:depth])
            if parent.exists() and not parent.is_dir():
                parent.unlink()
        target = self.root / member.name
        target.parent.mkdir(parents=True, exist_ok=True)
        _remove(target)
        member.copy_to(target)

    def _apply_whiteout(self, name: str) -> None:
        folder, _, base = name.rpartition("/")
        if base == OPAQUE_WHITEOUT:
            gone = folder
            if (self.root / folder).is_dir():
                shutil.rmtree(self.root / folder)
        else:
            gone = f"{folder}/{base[len(WHITEOUT_PREFIX) :]}"
            _remove(self.root / gone)
        for path in [p for p in self.origin if p == gone or p.startswith(f"{gone}/")]:
            del self.origin[path]


def _remove(target: Path) -> None:
    if target.is_dir():
        shutil.rmtree(target)
    else:
        target.unlink(missing_ok=True)
