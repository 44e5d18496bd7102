"""Telling a fault of the node (disk full, out of memory, read-only disk) from a fault of the input.

DuckDB reports a full disk as a FATAL or transaction error whose text carries the operating
system's message, not as an OSError, so both kinds are classified here by errno and by text.
"""

from __future__ import annotations

import errno

from appliance.errors import NodeFault

_ERRNO_REASONS = {
    errno.ENOSPC: "disk-full",
    errno.EDQUOT: "disk-full",
    errno.ENOMEM: "out-of-memory",
    errno.EROFS: "read-only",
    errno.EACCES: "permission",
    errno.EPERM: "permission",
    errno.EIO: "io-error",
}
# Lower-case fragments of the messages the C library and DuckDB use for the same faults.
_TEXT_REASONS = (
    ("no space left on device", "disk-full"),
    ("disk quota exceeded", "disk-full"),
    ("out of memory", "out-of-memory"),
    ("cannot allocate memory", "out-of-memory"),
    ("failed to allocate", "out-of-memory"),
    ("read-only file system", "read-only"),
    ("permission denied", "permission"),
    ("input/output error", "io-error"),
)
# DuckDB's exception classes (by name: this module does not import DuckDB) for faults of its
# files, memory and transactions, as opposed to faults of the data it reads.
_NODE_ERROR_KINDS = (
    "IOException",
    "FatalException",
    "TransactionException",
    "OutOfMemoryException",
)
_HINTS = {
    "disk-full": "free disk space",
    "out-of-memory": "free memory on the node, or lower --import-memory",
    "read-only": "the file system is mounted read-only; remount it read-write",
    "permission": "run as the user that owns the data dir",
    "io-error": "the disk reports I/O errors; check it (dmesg, smartctl)",
    "os-error": "check the node (disk, memory, permissions)",
}


_DUCKDB_LIMIT_HINT = (
    "raise --import-memory (APPLIANCE_IMPORT_MEMORY) if the node has that much memory free"
)


def fault_reason(exc: BaseException) -> str | None:
    """The node-fault reason code of `exc`, or None if it is not a fault of the node.

    Every OSError and MemoryError is one; a DuckDB error is one when it is of a kind DuckDB raises
    for its own files, memory or transactions and its text says which fault it is.
    """
    if isinstance(exc, MemoryError):
        return "out-of-memory"
    if isinstance(exc, OSError):
        return _ERRNO_REASONS.get(exc.errno or 0, "os-error")
    kind = type(exc).__name__
    if kind == "OutOfMemoryException":
        return "out-of-memory"
    # Only the kinds of error DuckDB raises for its own resources: the text of any other kind
    # may quote the pack's own data ("No space left on device" in a string column).
    if kind not in _NODE_ERROR_KINDS:
        return None
    text = str(exc).lower()
    for fragment, reason in _TEXT_REASONS:
        if fragment in text:
            return reason
    return None


def os_fault(exc: OSError | MemoryError, doing: str) -> NodeFault:
    """The NodeFault of an error of the operating system (every one is a fault of the node)."""
    return _fault(exc, fault_reason(exc) or "os-error", doing)


def node_fault(exc: BaseException, doing: str) -> NodeFault | None:
    """A NodeFault saying what failed while `doing` and what to do, or None if not a node fault."""
    reason = fault_reason(exc)
    return None if reason is None else _fault(exc, reason, doing)


def _fault(exc: BaseException, reason: str, doing: str) -> NodeFault:
    hint = _HINTS[reason]
    if reason == "out-of-memory" and not isinstance(exc, MemoryError | OSError):
        hint = _DUCKDB_LIMIT_HINT  # DuckDB reached its own memory limit, not the node's
    return NodeFault(reason, f"{doing} failed on this node ({describe(exc)}); {hint}")


def describe(exc: BaseException) -> str:
    """What went wrong, on one line: the system's message and the file it concerns."""
    detail = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
    detail = detail.splitlines()[0] if detail else type(exc).__name__
    where = f": {exc.filename}" if isinstance(exc, OSError) and exc.filename else ""
    return f"{detail}{where}"
