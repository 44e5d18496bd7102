"""The real server for tests: `appliance serve` (Granian, several workers) on a loopback port."""

from __future__ import annotations

import os
import signal
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tests.conftest import BIN

ADMIN_TOKEN = "admin-token-for-tests-0123456789"
VIEWER_TOKEN = "viewer-token-for-tests-0123456789"
READY_TIMEOUT = 30.0


def free_port() -> int:
    """A TCP port nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass
class LiveServer:
    """A running `appliance serve`; its stderr (JSON log lines) is collected in `log_lines`."""

    data_dir: Path
    port: int
    workers: int
    process: subprocess.Popen[str]
    log_lines: list[str] = field(default_factory=list)
    tls_cert: Path | None = None  # with --tls-cert: HTTPS, trusting exactly that certificate

    @property
    def base(self) -> str:
        scheme = "https" if self.tls_cert else "http"
        return f"{scheme}://{'localhost' if self.tls_cert else '127.0.0.1'}:{self.port}"

    def url(self, path: str) -> str:
        return self.base + path

    def client(self, **kwargs: object) -> httpx.Client:
        """A client on this server (keep-alive: one connection, so one worker)."""
        verify: object = ssl.create_default_context(cafile=self.tls_cert) if self.tls_cert else True
        return httpx.Client(base_url=self.base, timeout=30, verify=verify, **kwargs)  # type: ignore[arg-type]

    def get(self, path: str, **kwargs: object) -> httpx.Response:
        """One request on a fresh connection (so requests spread over the workers)."""
        with self.client() as client:
            return client.get(path, **kwargs)  # type: ignore[arg-type]

    def post(self, path: str, **kwargs: object) -> httpx.Response:
        with self.client() as client:
            return client.post(path, **kwargs)  # type: ignore[arg-type]

    def admin(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {ADMIN_TOKEN}"}

    def worker_pids(self, attempts: int = 200) -> set[int]:
        """The pids of the workers, seen through /health on fresh connections."""
        seen: set[int] = set()
        for _ in range(attempts):
            seen.add(self.get("/health").json()["worker"])
            if len(seen) >= self.workers:
                break
        return seen

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


def wait_until_served(server: LiveServer, vid: str) -> None:
    """Until every worker serves `vid` (each looks at `current` every 0.25 s)."""
    deadline = time.monotonic() + 10
    while any(server.get("/api/v1/data/current").json()["version"] != vid for _ in range(8)):
        assert time.monotonic() < deadline, f"the workers did not all switch to {vid}"
        time.sleep(0.1)


@contextmanager
def live_server(
    data_dir: Path,
    signers: Path,
    *,
    workers: int = 2,
    env: dict[str, str] | None = None,
    port: int | None = None,
    args: tuple[str, ...] = (),
) -> Iterator[LiveServer]:
    """Start `appliance serve` (on a free port unless given), wait until it answers, stop after."""
    port = port or free_port()
    environment = (
        os.environ
        | {
            "APPLIANCE_ADMIN_TOKEN": ADMIN_TOKEN,
            "APPLIANCE_RATE_LIMIT": "0",
            "APPLIANCE_ADMIN_RATE_LIMIT": "0",
            "APPLIANCE_IMPORT_MEMORY": "1GB",
            # Tests find each request's own log line; the default budget is test_read_log's.
            "APPLIANCE_LOG_READS": "1000000",
        }
        | (env or {})
    )
    argv = [str(BIN / "appliance"), "serve", "--data-dir", str(data_dir), "--signers", str(signers)]
    argv += ["--host", "127.0.0.1", "--port", str(port), "--workers", str(workers), *args]
    process = subprocess.Popen(
        argv, env=environment, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True
    )
    tls_cert = Path(args[args.index("--tls-cert") + 1]) if "--tls-cert" in args else None
    server = LiveServer(data_dir, port, workers, process, tls_cert=tls_cert)
    reader = threading.Thread(target=_collect, args=(process, server.log_lines), daemon=True)
    reader.start()
    try:
        _wait_ready(server)
        yield server
    finally:
        server.stop()
        reader.join(timeout=5)


def _collect(process: subprocess.Popen[str], lines: list[str]) -> None:
    assert process.stderr is not None
    for line in process.stderr:
        lines.append(line.rstrip("\n"))


def _wait_ready(server: LiveServer) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise AssertionError("server exited:\n" + "\n".join(server.log_lines[-30:]))
        try:
            if server.get("/health/startup").status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    raise AssertionError("server not started in time:\n" + "\n".join(server.log_lines[-30:]))
