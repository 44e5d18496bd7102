"""The sd_notify messages, received on a real datagram socket as systemd (or Podman) would."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from server import sd_notify


@pytest.fixture
def listener(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    path = tmp_path / "notify"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        sock.settimeout(2)
        yield sock, str(path)


def test_ready_and_status_reach_the_socket_named_by_notify_socket(
    listener: tuple[socket.socket, str],
) -> None:
    sock, path = listener
    assert sd_notify.notify(sd_notify.READY, "STATUS=serving v0001", env={"NOTIFY_SOCKET": path})
    assert sock.recv(4096) == b"READY=1\nSTATUS=serving v0001"


def test_an_abstract_socket_is_written_with_an_at_sign() -> None:
    name = f"appliance-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(2)
        assert sd_notify.notify(sd_notify.STOPPING, env={"NOTIFY_SOCKET": f"@{name}"})
        assert sock.recv(4096) == b"STOPPING=1"


@pytest.mark.parametrize("value", ["", "relative/path", "/nonexistent/notify"])
def test_no_socket_or_one_that_cannot_be_reached_sends_nothing_and_raises_nothing(
    value: str,
) -> None:
    assert sd_notify.notify(sd_notify.READY, env={"NOTIFY_SOCKET": value}) is False
    assert sd_notify.notify(sd_notify.READY, env={}) is False
