"""The response cache: private directory, bytes only (pickle unreachable), bounded in memory and on disk."""

from __future__ import annotations

import os
import pickle
import sqlite3
import time
from pathlib import Path

import diskcache
import pytest
from diskcache.core import MODE_BINARY, MODE_PICKLE, MODE_TEXT

from server.cache import BytesOnlyDisk, ResponseCache, UnsafeCacheRow


def test_the_cache_directory_is_private_even_if_it_existed(tmp_path: Path) -> None:
    folder = tmp_path / "cache"
    folder.mkdir(mode=0o755)
    cache = ResponseCache(folder, size_limit=1 << 20)
    assert folder.stat().st_mode & 0o777 == 0o700
    cache.close()


def test_bodies_round_trip_across_instances_sharing_the_directory(tmp_path: Path) -> None:
    writer = ResponseCache(tmp_path / "c", size_limit=1 << 20)
    reader = ResponseCache(tmp_path / "c", size_limit=1 << 20)  # another worker
    writer.set("v0001|k", b'{"a":1}')
    assert reader.get("v0001|k") == b'{"a":1}'
    assert reader.get("v0002|k") is None
    writer.close()
    reader.close()


def test_a_non_bytes_value_planted_in_the_cache_is_never_returned(tmp_path: Path) -> None:
    planted = diskcache.Cache(str(tmp_path / "c"))
    planted.set("v0001|k", {"a": "pickled object"})  # what a pickle-based cache would hold
    planted.close()
    cache = ResponseCache(tmp_path / "c", size_limit=1 << 20)
    assert cache.get("v0001|k") is None
    cache.close()


def test_the_disk_cache_stays_near_its_size_cap(tmp_path: Path) -> None:
    cap = 2 << 20
    cache = ResponseCache(tmp_path / "c", size_limit=cap, memory_bytes=1024)
    body = os.urandom(64 << 10)
    for number in range(200):  # 12.5 MiB written into a 2 MiB cache
        cache.set(f"v0001|{number}", body)
    volume = diskcache.Cache(str(tmp_path / "c")).volume()
    cache.close()
    assert volume < cap * 2


def test_the_memory_layer_evicts_the_least_recently_used(tmp_path: Path) -> None:
    cache = ResponseCache(tmp_path / "c", size_limit=1 << 20, memory_bytes=800)
    for key in ("a", "b", "c"):
        cache.set(key, b"x" * 100)
    cache.get("a")  # a is now the most recently used
    for key in ("d", "e", "f", "g", "h", "i"):
        cache.set(key, b"x" * 100)
    memory = cache._memory  # the layer under test
    assert "a" in memory and "b" not in memory
    assert sum(len(v) for v in memory.values()) <= 800
    cache.close()


# --- CVE-2025-69872: rows planted in the cache's SQLite file -------------------------------------


class CreatesMarker:
    """An object whose unpickling creates the file `marker`: what an attacker would plant."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return open, (str(self.marker), "w")


def plant_row(folder: Path, key: str, mode: int, value: bytes | None, filename: str | None) -> None:
    """Write a row into the cache's SQLite file directly, as someone with write access could."""
    now = time.time()
    with sqlite3.connect(folder / "cache.db") as db:
        db.execute(
            "INSERT OR REPLACE INTO Cache (key, raw, store_time, expire_time, access_time,"
            " access_count, tag, size, mode, filename, value)"
            " VALUES (?, 1, ?, NULL, ?, 0, NULL, 0, ?, ?, ?)",
            (key, now, now, mode, filename, value),
        )
    db.close()


@pytest.fixture
def cache_folder(tmp_path: Path) -> Path:
    """A cache folder with its SQLite file created, holding one good answer."""
    folder = tmp_path / "c"
    cache = ResponseCache(folder, size_limit=1 << 20)
    cache.set("v0001|good", b'{"a":1}')
    cache.close()
    return folder


def test_a_planted_pickle_row_is_unpickled_by_plain_diskcache(
    cache_folder: Path, tmp_path: Path
) -> None:
    marker = tmp_path / "marker"
    plant_row(cache_folder, "v0001|k", MODE_PICKLE, pickle.dumps(CreatesMarker(marker)), None)
    plain = diskcache.Cache(str(cache_folder))
    plain.get("v0001|k")
    plain.close()
    assert marker.exists()  # the attack this module's Disk closes


@pytest.mark.parametrize("in_file", [False, True], ids=["in-row", "in-value-file"])
def test_a_planted_pickle_row_is_a_miss_and_never_unpickled(
    cache_folder: Path, tmp_path: Path, in_file: bool
) -> None:
    marker = tmp_path / "marker"
    payload = pickle.dumps(CreatesMarker(marker))
    if in_file:
        name = "ab/cd/" + "0" * 28 + ".val"
        (cache_folder / name).parent.mkdir(parents=True)
        (cache_folder / name).write_bytes(payload)
        plant_row(cache_folder, "v0001|k", MODE_PICKLE, None, name)
    else:
        plant_row(cache_folder, "v0001|k", MODE_PICKLE, payload, None)
    cache = ResponseCache(cache_folder, size_limit=1 << 20)
    assert cache.get("v0001|k") is None
    assert cache.get("v0001|good") == b'{"a":1}'
    cache.set("v0001|k", b"fresh")  # the answer computed after the miss replaces the row
    assert ResponseCache(cache_folder, size_limit=1 << 20).get("v0001|k") == b"fresh"
    cache.close()
    assert not marker.exists()


def test_a_planted_row_naming_a_file_outside_the_cache_is_neither_read_nor_removed(
    cache_folder: Path, tmp_path: Path
) -> None:
    victim = tmp_path / "admin.token"
    victim.write_text("secret\n")
    plant_row(cache_folder, "v0001|k", MODE_BINARY, None, "../admin.token")
    cache = ResponseCache(cache_folder, size_limit=1 << 20)
    assert cache.get("v0001|k") is None
    cache._disk.clear()  # deleting rows removes their value files: never this one
    cache.close()
    assert victim.read_text() == "secret\n"


def test_the_disk_refuses_to_store_or_read_back_anything_but_text_keys_and_bytes(
    tmp_path: Path,
) -> None:
    disk = BytesOnlyDisk(str(tmp_path))
    marker = tmp_path / "marker"
    with pytest.raises(TypeError):
        disk.put(("a", "tuple"))  # plain diskcache would pickle this key
    with pytest.raises(TypeError):
        disk.store({"a": 1}, read=False)  # plain diskcache would pickle this value
    with pytest.raises(TypeError):
        disk.store("text", read=False)
    with pytest.raises(UnsafeCacheRow):
        disk.get(pickle.dumps(CreatesMarker(marker)), raw=False)
    with pytest.raises(UnsafeCacheRow):
        disk.fetch(MODE_TEXT, "ab/cd/" + "0" * 28 + ".val", None, read=False)
    assert not marker.exists()
