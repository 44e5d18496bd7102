"""Try the built image in a real container engine through its Docker-compatible API.

The `docker` package talks to Docker Engine or to Podman's Docker-compatible socket. The image
archive is loaded as `docker load` would, its ID must equal the one the build computed, and a
container runs it the way the node will: non-root, read-only root filesystem, /tmp as tmpfs,
every capability dropped, no new privileges, no network. The healthcheck of the image must pass
inside it. Anything else is a failed build, with the container's last log lines.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from appliance.errors import ConfigError
from appliance.progress import Progress
from bundle import layout
from bundle.oci import ImageArchive

SOCKETS = ("/run/podman/podman.sock", "/var/run/docker.sock")
HEALTHY_WITHIN_SECONDS = 60.0
POLL_SECONDS = 0.5
# Debian's Podman on the development and CI machines needs these (its default limits exceed the
# machines' hard limits); harmless elsewhere.
ULIMITS = (("nofile", 1024), ("nproc", 1000))


@dataclass(frozen=True)
class EngineCheck:
    """What the engine said about the image."""

    engine: str
    image_id: str
    healthy_after_seconds: float
    user: str


def engine_url() -> str:
    """DOCKER_HOST if set, else the first engine socket that exists."""
    if os.environ.get("DOCKER_HOST"):
        return os.environ["DOCKER_HOST"]
    for socket in SOCKETS:
        if Path(socket).exists():
            return f"unix://{socket}"
    msg = (
        "no container engine API found (set DOCKER_HOST, or start one: "
        "make engine, or podman system service --time=0 unix:///run/podman/podman.sock); "
        "or build with --skip-engine-check"
    )
    raise ConfigError(msg)


def _docker() -> Any:
    """The `docker` package; ConfigError naming the fix when this Python lacks it."""
    try:
        import docker
    except ModuleNotFoundError as exc:
        msg = (
            f"engine: the {exc.name} package is not installed for {sys.executable}; "
            "run make (the dev environment has it) and use .venv/bin/python, "
            "or build with --skip-engine-check"
        )
        raise ConfigError(msg) from exc
    return docker


def _said(exc: Exception) -> str:
    """What the engine said, on one line (its messages may carry the server's own newlines)."""
    return " ".join(str(exc).split())


def _client(url: str) -> tuple[Any, str]:
    """A client of the engine at `url` and the engine's name and version, once it has answered."""
    docker = _docker()
    try:
        client = docker.DockerClient(base_url=url, timeout=120)
        version = client.version()
    except docker.errors.DockerException as exc:
        msg = (
            f"container engine at {url} does not answer: {_said(exc)}; start one (make engine), "
            "set DOCKER_HOST, or build with --skip-engine-check"
        )
        raise ConfigError(msg) from exc
    return (
        client,
        f"{version.get('Components', [{}])[0].get('Name', 'engine')} {version.get('Version', '?')}",
    )


def reachable_engine() -> str:
    """The engine the check will use, as "<name> <version> at <url>"; ConfigError if there is none.

    Asked before the build's slow steps, so that a missing engine stops the build at once.
    """
    _docker()
    url = engine_url()
    _, engine = _client(url)
    return f"{engine} at {url}"


def _run_options(docker: Any) -> dict[str, Any]:
    return {
        "detach": True,
        "read_only": True,
        "tmpfs": {"/tmp": "rw,nosuid,nodev,size=128m,mode=1777"},  # noqa: S108 (inside the container)
        "cap_drop": ["ALL"],
        "security_opt": ["no-new-privileges"],
        "network_mode": "none",
        "environment": {"APPLIANCE_WORKERS": "1"},
        "ulimits": [
            docker.types.Ulimit(name=name, soft=value, hard=value) for name, value in ULIMITS
        ],
    }


def _healthy(container: Any, deadline: float) -> bool:
    test = [layout.IMAGE_PYTHON, "-m", "appliance.healthcheck"]
    while time.monotonic() < deadline:
        container.reload()
        if container.status not in ("created", "running"):
            return False
        if container.status == "running" and container.exec_run(test).exit_code == 0:
            return True
        time.sleep(POLL_SECONDS)
    return False


def check_image(archive: ImageArchive, progress: Progress, url: str | None = None) -> EngineCheck:
    """Load `archive` into the engine, run it hardened, and wait for its healthcheck to pass."""
    docker = _docker()
    url = url or engine_url()
    client, engine = _client(url)
    progress(f"engine: loading {archive.path.name} into {engine} at {url}")
    try:
        with archive.path.open("rb") as data:
            client.images.load(data)
        image = client.images.get(archive.repo_tag)
    except docker.errors.DockerException as exc:
        msg = f"engine: {engine} did not load {archive.path.name}: {_said(exc)}"
        raise ConfigError(msg) from exc
    if image.id != archive.image_id:
        msg = f"engine: loaded image ID {image.id} differs from the built {archive.image_id}"
        raise ConfigError(msg)
    user = image.attrs.get("Config", {}).get("User", "")
    if user in ("", "0", "root") or user.startswith(("0:", "root:")):
        msg = f"engine: the image runs as {user or 'root'}; it must run as a non-root user"
        raise ConfigError(msg)
    started = time.monotonic()
    try:
        container = client.containers.run(archive.repo_tag, **_run_options(docker))
    except docker.errors.DockerException as exc:
        msg = f"engine: {engine} could not run {archive.repo_tag}: {_said(exc)}"
        raise ConfigError(msg) from exc
    try:
        healthy = _healthy(container, started + HEALTHY_WITHIN_SECONDS)
        elapsed = time.monotonic() - started
        if not healthy:
            log = container.logs(tail=5).decode("utf-8", "replace").strip().splitlines()
            last = log[-1] if log else "no output"
            msg = f"engine: the image did not become healthy within {HEALTHY_WITHIN_SECONDS:.0f}s: {last}"
            raise ConfigError(msg)
    except docker.errors.DockerException as exc:
        msg = f"engine: checking {archive.repo_tag} failed: {_said(exc)}"
        raise ConfigError(msg) from exc
    finally:
        try:
            container.remove(force=True, v=True)
        except docker.errors.DockerException as exc:
            # Said, not raised: an error of the check itself matters more than the leftover.
            progress(f"engine: could not remove container {container.short_id}: {_said(exc)}")
    progress(f"engine: healthy after {elapsed:.1f}s, read-only root, user {user}, no network")
    return EngineCheck(engine, image.id, elapsed, user)
