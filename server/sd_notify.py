"""Readiness systemd can see: the sd_notify protocol, from the standard library.

systemd (or Podman, with `--sdnotify=container`) names a datagram socket in NOTIFY_SOCKET;
a service that says `READY=1` there is ready in systemd's eyes (Type=notify), and `STOPPING=1`
as it begins to stop. Each worker says READY=1 once it has its data version (or knows there is
none) and STOPPING=1 when its shutdown begins: the first to be ready makes the unit active, so
`systemctl start` returns when the server answers, and `systemctl status` agrees with the
health gate. Without NOTIFY_SOCKET (a server run by hand, under Docker) nothing is sent.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping

READY = "READY=1"
STOPPING = "STOPPING=1"


def notify(*fields: str, env: Mapping[str, str] | None = None) -> bool:
    """Send `fields` (KEY=VALUE lines) to the service manager; False when none listens.

    A socket that cannot be reached is no failure of the server: the message is a courtesy to
    the unit, and the health gate stays the judge. An abstract socket is written with `@`.
    """
    address = (os.environ if env is None else env).get("NOTIFY_SOCKET", "")
    if not address or not address.startswith(("/", "@")):
        return False
    target = "\0" + address[1:] if address.startswith("@") else address
    message = "\n".join(fields).encode("utf-8")
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sender:
            sender.connect(target)
            sender.sendall(message)
    except OSError:
        return False
    return True
