"""The listeners a server sees beside its own, and a worker's leave (appliance/handover.py)."""

from __future__ import annotations

import socket
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import pytest
from granian.server.mp import MPServer

from appliance import handover
from appliance.handover import HandoverServer, listeners_on, socket_inodes

TCP = """\
  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:20FB 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1001 1 0 100 0 0 10 0
   1: 00000000:20FB 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1002 1 0 100 0 0 10 0
   2: 0100007F:20FB 0100007F:D431 01 00000000:00000000 00:00000000 00000000     0        0 1003 1 0 20 4 30 10 -1
   3: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1004 1 0 100 0 0 10 0
   4: truncated
"""
TCP6 = """\
  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000000000000:20FB 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1005 1 0 100 0 0 10 0
"""


def test_the_listeners_on_a_port_are_its_listening_sockets_of_both_families(
    tmp_path: Path,
) -> None:
    (tmp_path / "tcp").write_text(TCP)
    (tmp_path / "tcp6").write_text(TCP6)
    tables = (tmp_path / "tcp", tmp_path / "tcp6", tmp_path / "missing")
    assert listeners_on(0x20FB, tables) == {  # not the connection, not port 8080
        1001: "tcp 0100007F:20FB",
        1002: "tcp 00000000:20FB",
        1005: "tcp6 00000000000000000000000000000000:20FB",
    }
    assert listeners_on(8080, tables) == {1004: "tcp 0100007F:1F90"}
    assert listeners_on(1, tables) == {}


def test_this_kernel_lists_a_listener_under_the_inode_its_process_holds() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        listening = listeners_on(port)
        assert len(listening) == 1
        assert listening.keys() <= socket_inodes("self")


LEAVER = textwrap.dedent(
    """
    import socket, sys
    from appliance.handover import leave_the_port, listeners_on
    first, second = (socket.socket() for _ in range(2))
    for listener in (first, second):
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        listener.bind(("127.0.0.1", int(sys.argv[1])))
        listener.listen()
    before = len(listeners_on(int(sys.argv[1])))
    leave_the_port()
    after = len(listeners_on(int(sys.argv[1])))
    first.setblocking(False)
    try:
        first.accept()
        accepted = "a connection"
    except BlockingIOError:
        accepted = "EAGAIN"
    print(before, after, accepted)
    """
)


def test_a_worker_leaving_closes_its_listeners_and_its_fds_wait_on_a_placeholder() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    done = subprocess.run(
        [sys.executable, "-c", LEAVER, str(port)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    # Both left the port's group; the fd the accept loop holds still accepts, and has nothing.
    assert done.stdout.split() == ["2", "0", "EAGAIN"]


PORT = 8443
ADDRESS = "tcp 00000000:20FB"


def worker(pid: int, alive: bool = True) -> SimpleNamespace:
    """A stand-in for Granian's worker handle: its process's pid and liveness."""
    return SimpleNamespace(inner=SimpleNamespace(pid=pid, is_alive=lambda: alive))


@pytest.mark.parametrize(
    ("listening", "sockets", "asked"),
    [
        # Alone on the port: no one to leave the connections to, the stop is as before.
        ({11: ADDRESS, 12: ADDRESS}, {1: {11, 90}, 2: {12}}, []),
        # Another server at the same address: the workers that listen are asked to leave.
        ({11: ADDRESS, 12: ADDRESS, 21: ADDRESS}, {1: {11, 90}, 2: {12}}, [1, 2]),
        # ... but not one still starting (no listener yet, and so no handler for the signal).
        ({11: ADDRESS, 21: ADDRESS}, {1: {11}, 2: {90}}, [1]),
        # Another listener of the port at another address is another group: nothing to leave to.
        ({11: ADDRESS, 31: "tcp 0100007F:20FB", 32: "tcp6 0...0:20FB"}, {1: {11}}, []),
    ],
)
def test_a_server_leaves_its_port_only_for_another_server_in_its_group(
    monkeypatch: pytest.MonkeyPatch,
    listening: dict[int, str],
    sockets: dict[int, set[int]],
    asked: list[int],
) -> None:
    monkeypatch.setattr(handover, "listeners_on", lambda port: listening if port == PORT else {})
    monkeypatch.setattr(handover, "socket_inodes", lambda pid: sockets[pid])
    server = SimpleNamespace(
        bind_port=PORT, wrks=[worker(pid) for pid in sockets] + [worker(7, alive=False)]
    )
    assert sorted(HandoverServer._workers_to_leave(server)) == asked  # type: ignore[arg-type]


def test_granian_still_stops_its_workers_through_the_method_the_leave_overrides() -> None:
    """MPServer.shutdown calls _stop_workers (Granian 2.8): an upgrade that renames it would
    stop the servers without their leave, and this says so before the e2e does."""
    assert "_stop_workers" in MPServer.shutdown.__code__.co_names
    assert "_stop_workers" in HandoverServer.__dict__
