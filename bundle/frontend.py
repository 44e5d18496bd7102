"""The prebuilt dashboard: server/frontend/dist, built by Vite and committed (see docs/building.md).

The bundle ships the committed build inside the project's wheel. This step checks that it is
whole (index.html and every asset it names) before anything is packed, and can rebuild it
first with npm when asked. CI's `make frontend-check` proves the committed build matches its sources.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from appliance.errors import ConfigError
from appliance.progress import Progress
from bundle import tools

FRONTEND_DIR = Path("server/frontend")
DIST_DIR = FRONTEND_DIR / "dist"
_ASSET = re.compile(r'(?:src|href)="(?:\./|/)?(assets/[^"]+)"')


def check_can_rebuild() -> None:
    """ConfigError if this machine has no npm to rebuild the dashboard with."""
    if shutil.which("npm") is None:
        msg = "frontend: npm not found; install Node.js or build without --rebuild-frontend"
        raise ConfigError(msg)


def rebuild(root: Path, progress: Progress) -> None:
    """`npm ci && npm run build` in the frontend folder (needs Node and the npm registry)."""
    check_can_rebuild()
    for command in (["npm", "ci", "--no-audit", "--no-fund"], ["npm", "run", "build"]):
        progress(f"frontend: {' '.join(command)}")
        tools.run(command, f"frontend: {' '.join(command)} failed", cwd=root / FRONTEND_DIR)


def check_dist(root: Path, progress: Progress) -> int:
    """The built dashboard's size in bytes; ConfigError if index.html or an asset it names is missing."""
    dist = root / DIST_DIR
    index = dist / "index.html"
    if not index.is_file():
        msg = f"frontend: {index} is missing; run `make frontend` first"
        raise ConfigError(msg)
    assets = _ASSET.findall(index.read_text(encoding="utf-8"))
    missing = [name for name in assets if not (dist / name).is_file()]
    if not assets or missing:
        msg = f"frontend: {index} names missing assets: {', '.join(missing) or 'none found'}"
        raise ConfigError(msg)
    size = sum(p.stat().st_size for p in dist.rglob("*") if p.is_file())
    progress(f"frontend: {len(assets)} assets, {size / 1e3:.1f} kB in {DIST_DIR}")
    return size
