"""The response cache: private directory, bytes only, bounded in memory and on disk."""

from __future__ import annotations

import os
from pathlib import Path

import diskcache

from server.cache import ResponseCache


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
