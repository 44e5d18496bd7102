"""Fixed-window rate limiting shared by every worker process through one small mmap'ed file.

The file is an array of slots, each (window number: u64, count: u64), little-endian. A key (client
address plus route class) picks its slot by a stable hash, so every process agrees on it; two keys
that land in the same slot share one budget, which can only refuse more, never allow more.

A read-modify-write of a slot holds an fcntl lock on the slot's 16 bytes, so processes exclude each
other, and a thread lock, because fcntl locks belong to a process and do not exclude its threads.
Open the limiter in each worker after the fork, not in the parent.

Two system calls a request would be a good part of what a fast answer costs, so a worker takes
a key's requests from its slot a batch at a time (`batch_size`: 1 for limits under 256 a window,
so small limits count exactly; at most 64) and counts the batch down in memory. A worker can
therefore hold requests it does not use before its window ends: the key is then refused up to
workers x batch requests early, never allowed more than the limit.
"""

from __future__ import annotations

import fcntl
import hashlib
import mmap
import os
import struct
import threading
import time
from pathlib import Path
from types import TracebackType

SLOT = struct.Struct("<QQ")
BATCH_MAX = 64
BATCH_SHARE = 256  # a batch is at most this fraction of the limit
HELD_KEYS_MAX = 4096  # batches held in memory; dropping them only refuses sooner
SLOT_BYTES = SLOT.size
FILE_MODE = 0o600

# fcntl locks are per (process, file), and closing any descriptor of a file drops all of the
# process's locks on it, so every limiter of this process on the same file shares one thread lock.
_FILE_LOCKS: dict[tuple[int, int], threading.Lock] = {}
_FILE_LOCKS_GUARD = threading.Lock()


def file_thread_lock(fd: int) -> threading.Lock:
    """The one thread lock this process uses for the file open as `fd`."""
    info = os.fstat(fd)
    with _FILE_LOCKS_GUARD:
        return _FILE_LOCKS.setdefault((info.st_dev, info.st_ino), threading.Lock())


def slot_index(key: str, slots: int) -> int:
    """The slot of `key`: the same in every process (Python's own hash() is salted per process)."""
    digest = hashlib.blake2b(key.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "little") % slots


def size_slot_file(fd: int, size: int) -> None:
    """Give a new, short or torn slot file `size` zeroed bytes; leave a full-sized one as it is."""
    fcntl.lockf(fd, fcntl.LOCK_EX)
    try:
        if os.fstat(fd).st_size < size:
            # Zeroes are written rather than the file truncated to 0 first: a process that mapped
            # it would get SIGBUS when touching a page past the end of the file.
            os.ftruncate(fd, size)
            os.pwrite(fd, bytes(size), 0)
    finally:
        fcntl.lockf(fd, fcntl.LOCK_UN)


class SharedRateLimiter:
    """Fixed-window request counters shared by all workers through one small mmap'ed file."""

    def __init__(self, path: Path, limit: int, window_seconds: float, slots: int = 4096) -> None:
        if limit > 0 and not window_seconds > 0:
            msg = f"the rate-limit window must be positive, not {window_seconds} seconds"
            raise ValueError(msg)
        if slots < 1:
            msg = f"the rate limiter needs at least one slot, not {slots}"
            raise ValueError(msg)
        self.path = path
        self.limit = limit
        self.window_seconds = window_seconds
        self.slots = slots
        self._map: mmap.mmap | None = None
        self.batch_size = max(1, min(BATCH_MAX, limit // BATCH_SHARE))
        self._held: dict[str, list[int]] = {}  # key -> [window, requests left of its batch]
        self._held_lock = threading.Lock()
        if limit > 0:
            self._open()

    def _open(self) -> None:
        """Open the slot file, creating or repairing it, and map it into memory."""
        size = self.slots * SLOT_BYTES
        flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
        self._fd = os.open(self.path, flags, FILE_MODE)
        self._thread_lock = file_thread_lock(self._fd)
        with self._thread_lock:
            try:
                size_slot_file(self._fd, size)
                self._map = mmap.mmap(self._fd, size)
            except BaseException:
                os.close(self._fd)
                raise

    def slot_of(self, key: str) -> int:
        """The slot that counts the requests of `key`."""
        return slot_index(key, self.slots)

    def hit(self, key: str, now: float | None = None) -> tuple[bool, float]:
        """Count one request of `key`; return (allowed, seconds until the window ends if refused)."""
        if self.limit <= 0:
            return True, 0.0
        slots = self._map
        if slots is None:
            msg = f"the rate limiter on {self.path} is closed"
            raise ValueError(msg)
        with self._held_lock:
            held = self._held.get(key)
            if held is not None and held[1] > 0:
                moment = time.time() if now is None else now
                if held[0] == int(moment // self.window_seconds):
                    held[1] -= 1
                    return True, 0.0
        return self._take_batch(key, now, slots)

    def _take_batch(self, key: str, now: float | None, slots: mmap.mmap) -> tuple[bool, float]:
        """Take up to batch_size requests of `key` from its shared slot; use the first."""
        offset = self.slot_of(key) * SLOT_BYTES
        with self._thread_lock:
            fcntl.lockf(self._fd, fcntl.LOCK_EX, SLOT_BYTES, offset, os.SEEK_SET)
            try:
                # The clock is read under the lock so that windows only move forward in the file.
                moment = time.time() if now is None else now
                window = int(moment // self.window_seconds)
                stored_window, count = SLOT.unpack_from(slots, offset)
                if stored_window != window:
                    count = 0
                granted = min(self.batch_size, self.limit - count)
                if granted > 0:
                    SLOT.pack_into(slots, offset, window, count + granted)
            finally:
                fcntl.lockf(self._fd, fcntl.LOCK_UN, SLOT_BYTES, offset, os.SEEK_SET)
        if granted <= 0:
            return False, max(0.0, (window + 1) * self.window_seconds - moment)
        if granted > 1:
            with self._held_lock:
                if len(self._held) >= HELD_KEYS_MAX:
                    self._held.clear()
                self._held[key] = [window, granted - 1]
        return True, 0.0

    def close(self) -> None:
        """Unmap and close the slot file; closing twice is fine."""
        if self._map is None:
            return
        with self._thread_lock:
            self._map.close()
            self._map = None
            os.close(self._fd)

    def __enter__(self) -> SharedRateLimiter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
