"""The export caps, shared by every worker: one export at a time per client address, a few per node.

Each cap is a lock file in the run's exports folder (appliance/data/run_layout.py), held with
`flock` for as long as the export streams. flock belongs to the open file, so two exports in
one worker exclude each other as two in different workers do, and a worker that dies lets go
of its locks with its files: no count can be left wrong by a crash.

A client address picks one of CLIENT_LOCKS lock files by a stable hash, so the folder never
grows past CLIENT_LOCKS + slots files; two addresses that share a file share its one export at
a time, which can only refuse more, never allow more.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
from pathlib import Path
from types import TracebackType

CLIENT_LOCKS = 1024
FILE_MODE = 0o600
RETRY_SECONDS = 5  # what a refused client is told to wait (Retry-After)


class ExportRefused(Exception):
    """The caps refuse an export now: `per_client` (this address has one running) or the node's."""

    def __init__(self, *, per_client: bool, message: str) -> None:
        super().__init__(message)
        self.per_client = per_client


def client_lock_name(client: str) -> str:
    """The lock file of a client address (the same in every worker: Python's hash() is salted)."""
    digest = hashlib.blake2b(client.encode("utf-8"), digest_size=8).digest()
    return f"client-{int.from_bytes(digest, 'little') % CLIENT_LOCKS:04d}.lock"


def _try_lock(path: Path) -> int | None:
    """`path` opened and exclusively flocked (its descriptor), or None if another holds it.

    OSError if the lock file cannot be made (a full or read-only disk): a fault of the node.
    """
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, FILE_MODE)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    except BaseException:
        os.close(fd)
        raise
    return fd


class SlotClaim:
    """The locks one running export holds; release them (or leave the `with`) when it ends."""

    def __init__(self, descriptors: list[int]) -> None:
        self._descriptors = descriptors

    def release(self) -> None:
        """Let go of the locks; releasing twice is fine."""
        while self._descriptors:
            os.close(self._descriptors.pop())

    def __enter__(self) -> SlotClaim:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.release()


class ExportSlots:
    """The caps on running exports for one server run (every worker opens its own)."""

    def __init__(self, folder: Path, slots: int) -> None:
        self.folder = folder
        self.slots = slots

    def claim(self, client: str) -> SlotClaim:
        """Take the client's lock and a node slot, or raise ExportRefused (OSError: the node's fault)."""
        self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        mine = _try_lock(self.folder / client_lock_name(client))
        if mine is None:
            msg = "an export from this address is still running: wait for it to end"
            raise ExportRefused(per_client=True, message=msg)
        try:
            for number in range(self.slots):
                slot = _try_lock(self.folder / f"slot-{number}.lock")
                if slot is not None:
                    return SlotClaim([mine, slot])
        except BaseException:
            os.close(mine)
            raise
        os.close(mine)
        msg = (
            f"the node is streaming its {self.slots} exports at once "
            "(APPLIANCE_EXPORT_SLOTS); try again in a moment"
        )
        raise ExportRefused(per_client=False, message=msg)
