"""`python -m appliance.healthcheck [PATH [RUN]]`: exit 0 when the local server answers PATH with 200.

The server image's HEALTHCHECK. It asks http://127.0.0.1:$APPLIANCE_PORT/health/startup (the
worker finished starting) by default, as the installer's health gate does: /health/ready also
needs imported data, which a fresh node does not have yet. With APPLIANCE_TLS_CERT set it asks
over HTTPS, and the server must present that very certificate (it is the only one trusted; the
address is loopback, which the certificate need not name).

With RUN, the answer must also come from the server run of that name (the `run` of
/health/startup's body): while an upgrade has two servers share the port, the kernel gives each
new connection to either, so up to RUN_TRIES fresh connections are tried before giving up.
Standard library only, so it starts fast and adds nothing to the image.
"""

from __future__ import annotations

import json
import os
import ssl
import sys
import urllib.error
import urllib.request

DEFAULT_PATH = "/health/startup"
TIMEOUT_SECONDS = 3.0
RUN_TRIES = 16  # with two listeners, the chance that none reaches the one asked is 1 in 65,536


def pinned_context(cert: str) -> ssl.SSLContext:
    """A TLS context that trusts exactly `cert` (a leaf is its own anchor), on any address."""
    context = ssl.create_default_context(cafile=cert)
    context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
    context.check_hostname = False
    return context


def probe(
    port: int,
    path: str = DEFAULT_PATH,
    timeout: float = TIMEOUT_SECONDS,
    tls_cert: str = "",
    run: str = "",
) -> tuple[bool, str]:
    """(healthy, one-line reason) for GET http(s)://127.0.0.1:<port><path> (from run `run`)."""
    url = f"http{'s' if tls_cert else ''}://127.0.0.1:{port}{path}"
    for _ in range(RUN_TRIES - 1 if run else 0):
        healthy, reason, answered_by = _ask(url, timeout, tls_cert)
        if not healthy or answered_by == run:
            return healthy, reason
    healthy, reason, answered_by = _ask(url, timeout, tls_cert)
    if healthy and run and answered_by != run:
        return False, f"{url}: answered by run {answered_by!r}, not {run!r}"
    return healthy, reason


def _ask(url: str, timeout: float, tls_cert: str) -> tuple[bool, str, str]:
    """(status is 200, one-line reason, the answering run's name or '') of one GET on a new connection."""
    try:
        context = pinned_context(tls_cert) if tls_cert else None
        with urllib.request.urlopen(url, timeout=timeout, context=context) as answer:  # noqa: S310 (loopback)
            return answer.status == 200, f"{url}: {answer.status}", _run_of(answer.read())
    except urllib.error.HTTPError as exc:
        return False, f"{url}: {exc.code}", ""
    except (urllib.error.URLError, OSError) as exc:
        return False, f"{url}: {getattr(exc, 'reason', exc)}", ""


def _run_of(body: bytes) -> str:
    """The `run` named by a JSON body, or '' (another path, or a version older than run names)."""
    try:
        parsed = json.loads(body)
    except ValueError:
        return ""
    return str(parsed.get("run", "")) if isinstance(parsed, dict) else ""


def main(argv: list[str]) -> int:
    path = argv[1] if len(argv) > 1 else DEFAULT_PATH
    run = argv[2] if len(argv) > 2 else ""
    port = int(os.environ.get("APPLIANCE_PORT", "8080"))
    tls_cert = os.environ.get("APPLIANCE_TLS_CERT", "").strip()
    healthy, reason = probe(port, path, tls_cert=tls_cert, run=run)
    print(reason)  # noqa: T201 (engines keep the healthcheck's output in the container's log)
    return 0 if healthy else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
