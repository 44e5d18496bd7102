"""Clients inside a simulated node while its server is switched: how many requests failed, how long
one waited at most. Shared by the e2e upgrade tests and benchmarks/bench_install.py."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from tests.e2e.simnode import Node

POLLER = Path(__file__).with_name("poller.py")
POLLERS = 3  # concurrent clients, each a request every 50 ms on a new connection
STOP_FILE = "/tmp/poll.stop"


def start_polling(node: Node, url: str, pollers: int = POLLERS) -> None:
    """Start `pollers` copies of tests/e2e/poller.py inside the node, asking `url`."""
    node.sh(f"cat > /tmp/poller.py <<'EOF'\n{POLLER.read_text()}EOF", check=True)
    node.sh(f"rm -f {STOP_FILE} /tmp/poll-*.json", check=True)
    for number in range(pollers):
        node.sh(
            f"setsid -f python3 /tmp/poller.py {url} /tmp/poll-{number}.json {STOP_FILE}",
            check=True,
        )
    time.sleep(1)


def stop_polling(node: Node, pollers: int = POLLERS) -> dict[str, Any]:
    """Stop the pollers; their reports summed (requests, failures, longest wait) and each one."""
    time.sleep(1)
    node.sh(f"touch {STOP_FILE}", check=True)
    files = [f"/tmp/poll-{number}.json" for number in range(pollers)]
    deadline = time.monotonic() + 20
    while node.sh(f"ls {' '.join(files)}").returncode != 0 and time.monotonic() < deadline:
        time.sleep(0.2)
    reports = [json.loads(node.sh(f"cat {file}", check=True).stdout) for file in files]
    return {
        "requests": sum(report["requests"] for report in reports),
        "failures": sum(report["failures"] for report in reports),
        "longest_wait_seconds": max(report["longest_wait_seconds"] for report in reports),
        "reports": reports,
    }
