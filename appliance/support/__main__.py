"""`python3 -m appliance.support OUT.tar.gz`: the support bundle without the appliance's environment.

What `install.sh --support-bundle DIR` runs from the bundle's appliance wheel (standard library
only) on a node whose install failed; `appliance support-bundle` is the same on an installed
node. Prints the archive's path and each section it could not gather; exit 0 when the archive
was written, 2 for a bad argument, 4 when the node could not write it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from appliance.support.support_bundle import BundleOptions, NodePaths, write_support_bundle


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python3 -m appliance.support", description=__doc__.splitlines()[0]
    )
    parser.add_argument("out", type=Path, help="the archive to write (.tar.gz); must not exist")
    parser.add_argument(
        "--since", default=BundleOptions.since, help="journal window (journalctl --since)"
    )
    parser.add_argument(
        "--lines", type=int, default=BundleOptions.lines, help="lines of each trail and log"
    )
    args = parser.parse_args(argv)
    out: Path = args.out
    if args.lines < 1:
        parser.error("--lines must be 1 or more")
    if not out.parent.is_dir():
        print(f"support bundle: error: {out.parent}: no such folder", file=sys.stderr)  # noqa: T201 (a command)
        return 2
    try:
        bundle = write_support_bundle(
            out, NodePaths.from_env(), BundleOptions(since=args.since, lines=args.lines)
        )
    except FileExistsError:
        print(f"support bundle: error: {out} already exists: give a new file", file=sys.stderr)  # noqa: T201
        return 2
    except OSError as exc:
        print(f"support bundle: error: cannot write {out}: {exc.strerror or exc}", file=sys.stderr)  # noqa: T201
        return 4
    for note in bundle.notes:
        print(f"support bundle: not gathered: {note}", file=sys.stderr)  # noqa: T201
    print(out)  # noqa: T201
    return 0


if __name__ == "__main__":
    sys.exit(main())
