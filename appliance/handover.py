"""Leaving a shared port without dropping a connection: the stop of a server during a switch.

An upgrade's switch (ansible/roles/appliance_server/tasks/switch.yml) stops a server while
another listens on the same port. Granian stops a worker by shutting each of its connections
down gracefully, and hyper closes at once a connection that has not sent a byte yet: a client
that connected a moment before the stop, and was about to send its request, would see its
connection closed without an answer.

So a server that shares its port leaves it before it stops. Each Granian worker has its own
listening socket in the port's group (SO_REUSEPORT); on `LEAVE_SIGNAL` a worker closes its
listener (its fd now names a placeholder), which takes it out of the group: the kernel gives
new connections to the other server and moves those still queued at this one to it
(`net.ipv4.tcp_migrate_req`). Once every worker has left, the connections they have already
accepted get `DRAIN_SECONDS` to send their requests, then the server stops as before. A server
alone on its port stops at once: there is no one to leave the connections to.

This leans on Granian's internals (pinned in requirements/node.lock; tests/unit/test_handover.py
and tests/integration/test_port_handover.py fail if they change): `MPServer.shutdown` stops the
workers through `_stop_workers`; on Linux each worker binds its own listener, after it has
imported the app (so after `leave_on_signal`: a worker is only signalled once it listens, since
the signal's default action would end it).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from types import FrameType

from granian.server.mp import MPServer

LEAVE_SIGNAL = signal.SIGUSR1  # Granian's workers stop on SIGINT/SIGTERM and reload on SIGHUP
DRAIN_SECONDS = 0.5  # a request follows its connection within a round trip (with TLS, three)
LEAVE_SECONDS = 2.0  # for the workers to leave (a signal handler runs between two bytecodes)
LISTEN = "0A"  # the TCP state LISTEN in /proc/net/tcp
PROC_NET = (Path("/proc/net/tcp"), Path("/proc/net/tcp6"))


def listeners_on(port: int, tables: Iterable[Path] = PROC_NET) -> dict[int, str]:
    """The sockets that listen on TCP `port` in this network namespace: inode -> local address.

    The address is as /proc/net/tcp(6) writes it (hex, with the port); sockets share a port's
    group, and so its connections, only at the same address."""
    listening: dict[int, str] = {}
    for table in tables:
        try:
            lines = table.read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) < 10 or fields[3] != LISTEN or ":" not in fields[1]:
                continue
            with contextlib.suppress(ValueError):
                if int(fields[1].rsplit(":", 1)[1], 16) == port:
                    listening[int(fields[9])] = f"{table.name} {fields[1]}"
    return listening


def socket_fds(pid: int | str) -> dict[int, int]:
    """The sockets process `pid` has open ('self' for this one): file descriptor -> inode."""
    sockets: dict[int, int] = {}
    with contextlib.suppress(OSError):
        for entry in (Path("/proc") / str(pid) / "fd").iterdir():
            with contextlib.suppress(OSError, ValueError):
                target = os.readlink(entry)
                if target.startswith("socket:["):
                    sockets[int(entry.name)] = int(target[len("socket:[") : -1])
    return sockets


def socket_inodes(pid: int | str) -> set[int]:
    """The inodes of the sockets process `pid` has open ('self' for this one)."""
    return set(socket_fds(pid).values())


def listening_fds() -> list[int]:
    """This process's file descriptors of listening TCP sockets."""
    found: list[int] = []
    for fd in socket_fds("self"):
        try:
            with socket.socket(fileno=os.dup(fd)) as probe:
                if probe.family in (socket.AF_INET, socket.AF_INET6) and probe.getsockopt(
                    socket.SOL_SOCKET, socket.SO_ACCEPTCONN
                ):
                    found.append(fd)
        except OSError:  # closed meanwhile
            continue
    return found


def placeholder() -> socket.socket:
    """A listener no client knows of: its accept never has a connection to give (EAGAIN).

    IPv4 loopback whatever the listener's family: it is only an fd to wait on, and every node
    has 127.0.0.1 (not always ::1)."""
    holder = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    holder.setblocking(False)
    holder.bind(("127.0.0.1", 0))
    holder.listen(1)
    return holder


def leave_the_port(_signum: int = 0, _frame: FrameType | None = None) -> None:
    """In a worker: close its listeners, each fd in place, so that their ports' groups lose them.

    The worker's accept loop keeps its file descriptor, which now names a placeholder listener:
    the loop waits on it (no error to spin on, no fd freed for reuse) until the worker stops.
    Closing the last descriptor of a listener takes it out of its port's group, and the kernel
    moves the connections queued there to another listener of the group. A signal handler: it
    raises nothing (a listener it cannot replace stays, and the stop is as it was before)."""
    listeners = listening_fds()  # before the placeholder is made: it is not one to close
    with contextlib.suppress(OSError), placeholder() as holder:
        for fd in listeners:
            with contextlib.suppress(OSError):
                os.dup2(holder.fileno(), fd, inheritable=False)


def leave_on_signal() -> None:
    """In a worker, at start: leave the port when the server's main process asks.

    Only a process's main thread may set a signal handler; elsewhere (the app built inside a
    test) there is no Granian main process to ask, and nothing is set."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(LEAVE_SIGNAL, leave_the_port)


class HandoverServer(MPServer):
    """Granian's server of worker processes, which leave a shared port before they stop."""

    on_leave: Callable[[float, int], None] | None = None  # (drain seconds, workers that stayed)

    def _stop_workers(self) -> None:
        if leaving := self._workers_to_leave():
            for pid in leaving:
                with contextlib.suppress(OSError):
                    os.kill(pid, LEAVE_SIGNAL)
            stayed = self._wait_until_left(leaving)
            if self.on_leave is not None:
                self.on_leave(DRAIN_SECONDS, stayed)
            time.sleep(DRAIN_SECONDS)
        super()._stop_workers()  # type: ignore[no-untyped-call]  # Granian: no annotations

    def _workers_to_leave(self) -> dict[int, set[int]]:
        """The workers' pids and their listeners on the port, if another server listens there
        too (at one of their addresses), else none.

        A worker listens only once it has loaded the app, which sets its LEAVE_SIGNAL handler: a
        worker still starting is not asked (the signal would end it)."""
        listening = listeners_on(self.bind_port)
        workers: dict[int, set[int]] = {}
        for worker in self.wrks:
            pid = worker.inner.pid
            if (
                worker.inner.is_alive()
                and pid
                and (inodes := socket_inodes(pid) & listening.keys())
            ):
                workers[pid] = inodes
        ours = set().union(*workers.values())
        addresses = {listening[inode] for inode in ours}
        others = {inode for inode, address in listening.items() if address in addresses} - ours
        return workers if others else {}

    def _wait_until_left(self, leaving: dict[int, set[int]]) -> int:
        """Until the workers' listeners are gone from the port (at most LEAVE_SECONDS); how many
        workers still listen then (0: all left)."""
        deadline = time.monotonic() + LEAVE_SECONDS
        while True:
            listening = listeners_on(self.bind_port).keys()
            stayed = sum(1 for inodes in leaving.values() if inodes & listening)
            if not stayed or time.monotonic() >= deadline:
                return stayed
            time.sleep(0.01)
