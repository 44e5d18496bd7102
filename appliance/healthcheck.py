"""`python -m appliance.healthcheck [PATH]`: exit 0 when the local server answers PATH with 200.

The server image's HEALTHCHECK. It asks http://127.0.0.1:$APPLIANCE_PORT/health/startup (the
worker finished starting) by default, as the installer's health gate does: /health/ready also
needs imported data, which a fresh node does not have yet. With APPLIANCE_TLS_CERT set it asks
over HTTPS, and the server must present that very certificate (it is the only one trusted; the
address is loopback, which the certificate need not name).
Standard library only, so it starts fast and adds nothing to the image.
"""

from __future__ import annotations

import os
import ssl
import sys
import urllib.error
import urllib.request

DEFAULT_PATH = "/health/startup"
TIMEOUT_SECONDS = 3.0


def pinned_context(cert: str) -> ssl.SSLContext:
    """A TLS context that trusts exactly `cert` (a leaf is its own anchor), on any address."""
    context = ssl.create_default_context(cafile=cert)
    context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
    context.check_hostname = False
    return context


def probe(
    port: int, path: str = DEFAULT_PATH, timeout: float = TIMEOUT_SECONDS, tls_cert: str = ""
) -> tuple[bool, str]:
    """(healthy, one-line reason) for GET http(s)://127.0.0.1:<port><path>."""
    url = f"http{'s' if tls_cert else ''}://127.0.0.1:{port}{path}"
    try:
        context = pinned_context(tls_cert) if tls_cert else None
        with urllib.request.urlopen(url, timeout=timeout, context=context) as answer:  # noqa: S310 (loopback)
            return answer.status == 200, f"{url}: {answer.status}"
    except urllib.error.HTTPError as exc:
        return False, f"{url}: {exc.code}"
    except (urllib.error.URLError, OSError) as exc:
        return False, f"{url}: {getattr(exc, 'reason', exc)}"


def main(argv: list[str]) -> int:
    path = argv[1] if len(argv) > 1 else DEFAULT_PATH
    port = int(os.environ.get("APPLIANCE_PORT", "8080"))
    healthy, reason = probe(port, path, tls_cert=os.environ.get("APPLIANCE_TLS_CERT", "").strip())
    print(reason)  # noqa: T201 (engines keep the healthcheck's output in the container's log)
    return 0 if healthy else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
