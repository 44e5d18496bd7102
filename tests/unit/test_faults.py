"""Faults of the node told from faults of the input, by the kind of error first, then its text."""

from __future__ import annotations

import errno

import duckdb
import pytest

from appliance.faults import fault_reason, node_fault


def test_a_pack_cannot_pass_its_bad_data_off_as_a_full_disk() -> None:
    con = duckdb.connect()
    with pytest.raises(duckdb.Error) as caught:
        con.execute("SELECT CAST('No space left on device' AS INTEGER)")
    assert "No space left on device" in str(caught.value)
    assert fault_reason(caught.value) is None
    assert node_fault(caught.value, "building dim_item") is None


@pytest.mark.parametrize(
    ("exc", "reason"),
    [
        (OSError(errno.ENOSPC, "No space left on device"), "disk-full"),
        (OSError(errno.EROFS, "Read-only file system"), "read-only"),
        (OSError(errno.EIO, "Input/output error"), "io-error"),
        (OSError(errno.ELOOP, "Too many levels"), "os-error"),
        (MemoryError(), "out-of-memory"),
        (duckdb.OutOfMemoryException("Out of Memory Error: failed to allocate"), "out-of-memory"),
        (duckdb.IOException("IO Error: No space left on device"), "disk-full"),
        (duckdb.TransactionException("Failed to commit: No space left on device"), "disk-full"),
    ],
)
def test_faults_of_the_node_are_named(exc: BaseException, reason: str) -> None:
    assert fault_reason(exc) == reason


def test_duckdbs_own_memory_limit_asks_for_more_memory() -> None:
    fault = node_fault(duckdb.OutOfMemoryException("Out of Memory Error"), "building x")
    assert fault is not None and "raise --import-memory" in str(fault)
    assert "free memory on the node" in str(node_fault(MemoryError(), "building x"))
