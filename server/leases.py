"""Leases on something a worker keeps open (a version's database, a comparison's table).

Requests lease it while they read; retiring it closes it now if no request holds it, else when
the last lease ends. Subclasses say how to close.
"""

from __future__ import annotations

import threading


class Leased:
    """Counts the leases on an open resource and closes it once retired and idle."""

    def __init__(self) -> None:
        self._leases = 0
        self._retired = False
        self._lock = threading.Lock()

    def acquire(self) -> None:
        """Start a lease: it stays open until the matching release."""
        with self._lock:
            self._leases += 1

    def release(self) -> None:
        """End a lease; close it if it was retired and this was the last lease."""
        with self._lock:
            self._leases -= 1
            close = self._retired and self._leases == 0
        if close:
            self._close()

    def retire(self) -> None:
        """Close now if no request holds it, else after the last lease."""
        with self._lock:
            self._retired = True
            close = self._leases == 0
        if close:
            self._close()

    def _close(self) -> None:
        raise NotImplementedError
