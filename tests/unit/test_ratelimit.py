"""SharedRateLimiter: exact counts per window, across threads and across worker processes."""

from __future__ import annotations

import errno
import multiprocessing
import stat
import threading
from collections.abc import Iterator
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Barrier
from pathlib import Path

import pytest

from server.ratelimit import SLOT, SLOT_BYTES, SharedRateLimiter

# A long window and a fixed clock: a concurrency test never straddles two windows.
LONG_WINDOW = 3600.0
FIXED_NOW = 7200.0 + 100.0
KEY = "10.0.0.7 query"


@pytest.fixture
def slot_file(tmp_path: Path) -> Path:
    return tmp_path / "ratelimit.slots"


@pytest.fixture
def limiter(slot_file: Path) -> Iterator[SharedRateLimiter]:
    with SharedRateLimiter(slot_file, limit=3, window_seconds=60.0, slots=64) as limiter:
        yield limiter


def keys_in_distinct_slots(limiter: SharedRateLimiter, count: int) -> list[str]:
    """`count` client keys that land in different slots of `limiter`."""
    chosen: dict[int, str] = {}
    number = 0
    while len(chosen) < count:
        chosen.setdefault(limiter.slot_of(f"10.0.0.{number} query"), f"10.0.0.{number} query")
        number += 1
    return list(chosen.values())


def allowed_count(limiter: SharedRateLimiter, key: str, hits: int, now: float) -> int:
    """How many of `hits` requests of `key` at `now` the limiter lets through."""
    return sum(limiter.hit(key, now=now)[0] for _ in range(hits))


def test_allows_exactly_the_limit_then_refuses_until_the_window_ends(
    limiter: SharedRateLimiter,
) -> None:
    now = 120.0 + 10.0
    assert [limiter.hit(KEY, now=now) for _ in range(3)] == [(True, 0.0)] * 3
    allowed, retry_after = limiter.hit(KEY, now=now)
    assert not allowed
    assert retry_after == pytest.approx(50.0)
    allowed, retry_after = limiter.hit(KEY, now=179.5)
    assert not allowed
    assert retry_after == pytest.approx(0.5)


def test_a_new_window_starts_a_new_count(limiter: SharedRateLimiter) -> None:
    assert allowed_count(limiter, KEY, 5, now=130.0) == 3
    assert allowed_count(limiter, KEY, 5, now=180.0) == 3
    assert allowed_count(limiter, KEY, 5, now=240.0 + 59.9) == 3


def test_different_keys_count_separately(limiter: SharedRateLimiter) -> None:
    first, second = keys_in_distinct_slots(limiter, 2)
    assert allowed_count(limiter, first, 5, now=130.0) == 3
    assert allowed_count(limiter, second, 5, now=130.0) == 3


def test_keys_sharing_a_slot_share_one_budget(slot_file: Path) -> None:
    with SharedRateLimiter(slot_file, limit=3, window_seconds=60.0, slots=2) as limiter:
        first = "10.0.0.1 query"
        second = next(
            f"10.0.1.{n} query"
            for n in range(100)
            if limiter.slot_of(f"10.0.1.{n} query") == limiter.slot_of(first)
        )
        allowed = allowed_count(limiter, first, 2, now=130.0)
        allowed += allowed_count(limiter, second, 5, now=130.0)
    assert allowed == 3


def test_the_clock_is_used_when_no_time_is_given(slot_file: Path) -> None:
    with SharedRateLimiter(slot_file, limit=1, window_seconds=1e9) as limiter:
        assert limiter.hit(KEY) == (True, 0.0)
        allowed, retry_after = limiter.hit(KEY)
    assert not allowed
    assert 0 < retry_after <= 1e9


def test_a_new_file_has_owner_only_access_and_one_slot_per_16_bytes(slot_file: Path) -> None:
    with SharedRateLimiter(slot_file, limit=1, window_seconds=1.0, slots=128):
        info = slot_file.stat()
    assert stat.S_IMODE(info.st_mode) == 0o600
    assert info.st_size == 128 * SLOT_BYTES


@pytest.mark.parametrize("content", [b"", b"torn", b"\x07" * (SLOT_BYTES * 64 - 1)])
def test_a_short_file_is_zeroed_to_full_size(slot_file: Path, content: bytes) -> None:
    slot_file.write_bytes(content)
    with SharedRateLimiter(slot_file, limit=2, window_seconds=60.0, slots=64) as limiter:
        assert allowed_count(limiter, KEY, 4, now=130.0) == 2
    assert slot_file.stat().st_size == 64 * SLOT_BYTES


def test_a_full_size_file_of_garbage_counts_from_zero(slot_file: Path) -> None:
    slot_file.write_bytes(b"\xff" * (SLOT_BYTES * 64))
    with SharedRateLimiter(slot_file, limit=2, window_seconds=60.0, slots=64) as limiter:
        assert allowed_count(limiter, KEY, 4, now=130.0) == 2


def test_a_symlink_in_place_of_the_file_is_refused(slot_file: Path, tmp_path: Path) -> None:
    slot_file.symlink_to(tmp_path / "elsewhere")
    with pytest.raises(OSError) as refused:
        SharedRateLimiter(slot_file, limit=1, window_seconds=1.0)
    assert refused.value.errno == errno.ELOOP
    assert not (tmp_path / "elsewhere").exists()


def test_no_limit_allows_everything_without_a_file(slot_file: Path) -> None:
    limiter = SharedRateLimiter(slot_file, limit=0, window_seconds=0.0)
    assert allowed_count(limiter, KEY, 1000, now=130.0) == 1000
    limiter.close()
    assert not slot_file.exists()


def test_a_closed_limiter_refuses_to_count(slot_file: Path) -> None:
    limiter = SharedRateLimiter(slot_file, limit=1, window_seconds=1.0)
    limiter.close()
    limiter.close()
    with pytest.raises(ValueError, match="closed"):
        limiter.hit(KEY)


@pytest.mark.parametrize(("window", "slots"), [(0.0, 16), (-1.0, 16), (float("nan"), 16), (1, 0)])
def test_bad_settings_are_refused(slot_file: Path, window: float, slots: int) -> None:
    with pytest.raises(ValueError, match=r"window|slot"):
        SharedRateLimiter(slot_file, limit=5, window_seconds=window, slots=slots)


def test_threads_sharing_limiters_get_exactly_the_limit(slot_file: Path) -> None:
    # Two limiters on one file in one process, as their fcntl locks do not exclude each other.
    # A limit under 256 a window is taken one request at a time: exact.
    first = SharedRateLimiter(slot_file, limit=200, window_seconds=LONG_WINDOW)
    second = SharedRateLimiter(slot_file, limit=200, window_seconds=LONG_WINDOW)
    assert first.batch_size == 1
    limiters = [first] * 4 + [second] * 4
    start = threading.Barrier(len(limiters))
    allowed: list[int] = []

    def hammer(limiter: SharedRateLimiter) -> None:
        start.wait()
        allowed.append(allowed_count(limiter, KEY, 100, now=FIXED_NOW))

    threads = [threading.Thread(target=hammer, args=(limiter,)) for limiter in limiters]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    first.close()
    second.close()
    assert sum(allowed) == 200


def test_a_large_limit_is_taken_a_batch_at_a_time(slot_file: Path) -> None:
    limiter = SharedRateLimiter(slot_file, limit=100_000, window_seconds=LONG_WINDOW)
    assert limiter.batch_size == 64
    assert allowed_count(limiter, KEY, 10, now=FIXED_NOW) == 10
    window, count = SLOT.unpack_from(slot_file.read_bytes(), limiter.slot_of(KEY) * SLOT.size)
    assert (window, count) == (int(FIXED_NOW // LONG_WINDOW), 64), "one batch taken for ten"
    assert allowed_count(limiter, KEY, 60, now=FIXED_NOW) == 60
    window, count = SLOT.unpack_from(slot_file.read_bytes(), limiter.slot_of(KEY) * SLOT.size)
    assert count == 128
    nxt = FIXED_NOW + LONG_WINDOW
    assert limiter.hit(KEY, now=nxt) == (True, 0.0), "a held batch is not used in a later window"
    window, count = SLOT.unpack_from(slot_file.read_bytes(), limiter.slot_of(KEY) * SLOT.size)
    assert (window, count) == (int(nxt // LONG_WINDOW), 64)
    limiter.close()


def hammer_from_a_process(path: Path, start: Barrier, results: Queue[int]) -> None:
    """Open the shared file together with the other processes, then send 500 requests of KEY."""
    start.wait()
    with SharedRateLimiter(path, limit=1000, window_seconds=LONG_WINDOW) as limiter:
        start.wait()
        results.put(allowed_count(limiter, KEY, 500, now=FIXED_NOW))


def test_worker_processes_together_never_get_more_than_the_limit(slot_file: Path) -> None:
    # limit 1000 is taken 3 requests at a time: a process may stop holding 2 it never used.
    context = multiprocessing.get_context("spawn")
    start = context.Barrier(4)
    results: Queue[int] = context.Queue()
    workers = [
        context.Process(target=hammer_from_a_process, args=(slot_file, start, results))
        for _ in range(4)
    ]
    for worker in workers:
        worker.start()
    allowed = [results.get(timeout=120) for _ in workers]
    for worker in workers:
        worker.join(timeout=60)
    assert [worker.exitcode for worker in workers] == [0] * 4
    batch = SharedRateLimiter(slot_file, limit=1000, window_seconds=LONG_WINDOW).batch_size
    assert batch == 3
    assert 1000 - len(workers) * (batch - 1) <= sum(allowed) <= 1000
    assert stat.S_IMODE(slot_file.stat().st_mode) == 0o600
