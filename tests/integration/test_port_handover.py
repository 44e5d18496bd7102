"""A server stopped beside another on its port (an upgrade's switch) drops no connection.

The clients here pause between connecting and sending their request, as a client across a
network (a round trip) or behind TLS (its handshake) does. Without the leave (appliance/handover.py),
the connections the stopped server had accepted and not yet read from are closed unanswered:
about one per client at each stop.
"""

from __future__ import annotations

import json
import signal
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from appliance.access.site_tls import make_self_signed
from tests.conftest import Signer
from tests.integration.live_server import LiveServer, live_server

MIGRATE_REQ = Path("/proc/sys/net/ipv4/tcp_migrate_req")
CLIENTS = 16  # each reaches either server: that none reaches the old one is a 1 in 65,536 chance
PAUSE_SECONDS = 0.05  # between connect and request: a LAN round trip and a TLS handshake, widened
LEAVE_LINE = "left the shared port"


@pytest.fixture
def migrating_kernel() -> Iterator[None]:
    """net.ipv4.tcp_migrate_req = 1, as the installer sets it (for the network namespace the
    tests run in, the host's if that is where they run), and the value before put back."""
    before = MIGRATE_REQ.read_text().strip()
    if before != "1":
        try:
            MIGRATE_REQ.write_text("1\n")
        except OSError as exc:  # not root, or a read-only /proc/sys
            pytest.skip(f"net.ipv4.tcp_migrate_req is {before} and cannot be set here: {exc}")
    yield
    if before != "1":
        MIGRATE_REQ.write_text(f"{before}\n")


@dataclass
class Clients:
    """Threads asking /health/startup on fresh connections, each pausing before its request."""

    port: int
    tls: ssl.SSLContext | None
    answers: list[tuple[float, str]] = field(default_factory=list)  # (when answered, run name)
    failures: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def ask(self) -> None:
        while not self.stop.is_set():
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=10) as plain:
                    time.sleep(PAUSE_SECONDS)
                    client = (
                        self.tls.wrap_socket(plain, server_hostname="localhost")
                        if self.tls
                        else plain
                    )
                    client.sendall(
                        b"GET /health/startup HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
                    )
                    answer = b""
                    while chunk := client.recv(65536):
                        answer += chunk
            except OSError as exc:
                self.failures.append(f"{exc!r}")
                continue
            head, _, body = answer.partition(b"\r\n\r\n")
            if not head.startswith(b"HTTP/1.1 200"):
                self.failures.append(f"answer {answer[:80]!r}")
                continue
            self.answers.append((time.monotonic(), json.loads(body)["run"]))


def serving(server: LiveServer, run_name: str) -> None:
    """Until the server with that run name answers on the shared port."""
    deadline = time.monotonic() + 30
    while run_name not in {server.get("/health/startup").json()["run"] for _ in range(16)}:
        assert time.monotonic() < deadline, "\n".join(server.log_lines[-20:])


@pytest.mark.usefixtures("migrating_kernel")
@pytest.mark.parametrize("scheme", ["http", "https"])
def test_a_server_stopped_beside_another_answers_every_connection_it_accepted(
    tmp_path: Path, signer: Signer, scheme: str
) -> None:
    """With HTTPS, the handshakes under way at the stop finish too."""
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    shared = {"APPLIANCE_SHARE_PORT": "1"}
    args: tuple[str, ...] = ()
    tls = None
    if scheme == "https":
        site = make_self_signed(tmp_path / "tls.crt", tmp_path / "tls.key", ["localhost"], [])
        args = ("--tls-cert", str(site.cert), "--tls-key", str(site.key))
        tls = ssl.create_default_context(cafile=site.cert)
    with live_server(data_dir, signer.allowed_signers, args=args,
                     env=shared | {"APPLIANCE_RUN_NAME": "old"}) as old:  # fmt: skip
        with live_server(data_dir, signer.allowed_signers, port=old.port, args=args,
                         env=shared | {"APPLIANCE_RUN_NAME": "new"}) as new:  # fmt: skip
            serving(new, "new")
            clients = Clients(old.port, tls)
            threads = [threading.Thread(target=clients.ask) for _ in range(CLIENTS)]
            for thread in threads:
                thread.start()
            time.sleep(1)
            stopped_at = time.monotonic()
            old.process.send_signal(signal.SIGTERM)
            old.process.wait(timeout=20)
            time.sleep(1)
            clients.stop.set()
            for thread in threads:
                thread.join(timeout=20)
            assert new.process.poll() is None
        alone = "\n".join(new.log_lines)
    assert clients.failures == [], clients.failures[:5]
    runs = {run for _, run in clients.answers}
    assert runs == {"old", "new"}, runs
    # The old server answered connections it had accepted before its stop: those it would drop.
    assert any(run == "old" and at > stopped_at for at, run in clients.answers)
    assert old.process.returncode == 0
    assert any(LEAVE_LINE in line for line in old.log_lines), old.log_lines[-10:]
    assert LEAVE_LINE not in alone  # stopped alone on its port: nothing to leave, no wait
