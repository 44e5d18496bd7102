"""A real server tells its service manager when it is ready and when it stops (sd_notify).

The test listens where NOTIFY_SOCKET names, as systemd does for a Type=notify unit (and Podman
with --sdnotify=container, for the container's processes): READY=1 comes once a worker has its
data version, with a STATUS naming it; STOPPING=1 as the server stops.
"""

from __future__ import annotations

import socket
import time
from pathlib import Path

from tests.conftest import Signer, import_into
from tests.integration.live_server import live_server


def messages(sock: socket.socket, until: float) -> list[bytes]:
    got: list[bytes] = []
    while time.monotonic() < until:
        try:
            got.append(sock.recv(4096))
        except TimeoutError:
            break
    return got


def test_each_worker_says_ready_with_its_version_and_stopping_at_the_end(
    tmp_path: Path, good_pack: Path, signer: Signer
) -> None:
    import_into(tmp_path / "data", good_pack, signer)
    path = tmp_path / "notify"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        sock.settimeout(1)
        with live_server(
            tmp_path / "data", signer.allowed_signers, workers=2, env={"NOTIFY_SOCKET": str(path)}
        ):
            ready = messages(sock, time.monotonic() + 5)
        stopping = messages(sock, time.monotonic() + 5)
    assert ready.count(b"READY=1\nSTATUS=started with v0001") == 2, ready  # one per worker
    assert b"STOPPING=1\nSTATUS=stopping" in stopping, stopping


def test_a_store_with_nothing_imported_is_ready_and_says_so(tmp_path: Path, signer: Signer) -> None:
    (tmp_path / "data").mkdir()
    path = tmp_path / "notify"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        sock.settimeout(1)
        with live_server(
            tmp_path / "data", signer.allowed_signers, workers=1, env={"NOTIFY_SOCKET": str(path)}
        ):
            ready = messages(sock, time.monotonic() + 5)
    assert b"READY=1\nSTATUS=started with no data imported yet" in ready, ready
