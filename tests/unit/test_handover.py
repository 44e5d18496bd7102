"""The listeners a server sees beside its own, and a worker's leave (server/handover.py)."""

from __future__ import annotations

import socket
import subprocess
import sys
import textwrap
from pathlib import Path

from server.handover import listeners_on, socket_inodes

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
    assert listeners_on(0x20FB, tables) == {1001, 1002, 1005}  # not the connection, not 8080
    assert listeners_on(8080, tables) == {1004}
    assert listeners_on(1, tables) == set()


def test_this_kernel_lists_a_listener_under_the_inode_its_process_holds() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        listening = listeners_on(port)
        assert len(listening) == 1
        assert listening <= socket_inodes("self")


LEAVER = textwrap.dedent(
    """
    import socket, sys
    from server.handover import leave_the_port, listeners_on
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
