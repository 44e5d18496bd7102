"""Bundle build times and the server image's size, MB by MB, against a naive image in the same run.

Builds the bundle twice with build_bundle.py: once with an empty cache (downloads every wheel
and makes the base rootfs with mmdebstrap) and once with that cache warm, then opens the server
image and sorts every byte of its layers into groups. The peer is what a plain build would ship:
Debian's minbase root filesystem with python3 (mmdebstrap, as docs/performance.md measures it)
plus every wheel of the node lock installed as pip installs them. Prints Markdown tables.

    python benchmarks/bench_bundle.py [--workdir .bench/bundle] [--key KEY]

Needs mmdebstrap, the network to Debian and PyPI for the cold build, and a container engine
(as `make bundle` does; `--skip-engine-check` is passed through with --no-engine).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from appliance.trust.sshsig import generate_key  # noqa: E402
from bundle import layout  # noqa: E402

MB = 1_000_000
VERSION = "0.0.0-bench"
STEPS = re.compile(r"^steps\s+(.*)$", re.MULTILINE)
SITE = layout.IMAGE_SITE_PACKAGES + "/"

# (group, path prefix) in the order they are tried; the first match wins.
GROUPS = (
    ("DuckDB (engine, one .so)", f"{SITE}_duckdb"),
    ("DuckDB (Python package)", f"{SITE}duckdb"),
    ("Granian (Rust server)", f"{SITE}granian"),
    ("cryptography (Ed25519, Rust + OpenSSL)", f"{SITE}cryptography"),
    ("Litestar", f"{SITE}litestar"),
    ("PyYAML (OpenAPI YAML)", f"{SITE}yaml"),
    ("PyYAML (OpenAPI YAML)", f"{SITE}_yaml"),
    ("other Python packages", f"{SITE}"),
    ("CPython interpreter (/usr/bin/python3.11)", "usr/bin/python3.11"),
    ("Python standard library: extension modules", "usr/lib/python3.11/lib-dynload"),
    ("Python standard library: .py sources", "usr/lib/python3.11"),
    ("OpenSSL (libcrypto, libssl) for hashlib and ssl", "usr/lib/x86_64-linux-gnu/libcrypto"),
    ("OpenSSL (libcrypto, libssl) for hashlib and ssl", "usr/lib/x86_64-linux-gnu/libssl"),
    ("C++ runtime (libstdc++) for DuckDB", "usr/lib/x86_64-linux-gnu/libstdc++"),
    ("glibc", "lib/x86_64-linux-gnu/lib"),
    ("glibc", "usr/lib/x86_64-linux-gnu/libc"),
    ("glibc", "lib64"),
    ("other shared libraries (sqlite, lzma, bz2, ffi, expat, zlib...)", "usr/lib/x86_64-linux-gnu"),
    ("other shared libraries (sqlite, lzma, bz2, ffi, expat, zlib...)", "lib/x86_64-linux-gnu"),
    ("copyright files", "usr/share/doc"),
)


def run(command: list[str], env: dict[str, str] | None = None) -> str:
    result = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    if result.returncode != 0:
        sys.exit(
            f"error: {' '.join(command[:3])} failed: {result.stderr.strip().splitlines()[-1:]}"
        )
    return result.stdout + result.stderr


def build(key: Path, out: Path, cache: Path, extra: list[str]) -> tuple[Path, dict[str, float]]:
    env = {**os.environ, "SOURCE_DATE_EPOCH": os.environ.get("SOURCE_DATE_EPOCH", "1763769600")}
    command = [
        sys.executable,
        str(REPO / "build_bundle.py"),
        "--version",
        VERSION,
        "--key",
        str(key),
    ]
    output = run([*command, "--out", str(out), "--cache-dir", str(cache), *extra], env)
    match = STEPS.search(output)
    steps = {}
    if match:
        for part in match[1].split(", "):
            name, seconds = part.rsplit(" ", 1)
            steps[name] = float(seconds.removesuffix("s"))
    return out / layout.archive_name(VERSION), steps


def image_groups(bundle: Path) -> tuple[dict[str, int], dict[str, int], int]:
    """Bytes per group (file contents), bytes per layer (tar size), and tar overhead."""
    groups: dict[str, int] = defaultdict(int)
    layers: dict[str, int] = {}
    content = 0
    top = layout.top_dir(VERSION)
    with tarfile.open(bundle) as outer:
        image_file = outer.extractfile(f"{top}/{layout.SERVER_IMAGE_FILE}")
        assert image_file is not None
        with tarfile.open(fileobj=image_file) as image:
            manifest = json.load(image.extractfile("manifest.json"))  # type: ignore[arg-type]
            config = json.load(image.extractfile(manifest[0]["Config"]))  # type: ignore[arg-type]
            names = [entry["created_by"].split(": ")[1] for entry in config["history"]]
            for name, layer in zip(names, manifest[0]["Layers"], strict=True):
                member = image.getmember(layer)
                layers[name] = member.size
                handle = image.extractfile(member)
                assert handle is not None
                with tarfile.open(fileobj=handle, mode="r|") as files:
                    for entry in files:
                        if not entry.isfile():
                            continue
                        content += entry.size
                        group = next(
                            (g for g, prefix in GROUPS if entry.name.startswith(prefix)),
                            "other files",
                        )
                        groups[group] += entry.size
    return dict(groups), layers, sum(layers.values()) - content


def naive_image(workdir: Path, cache: Path) -> tuple[int, int]:
    """(rootfs bytes, site-packages bytes) of minbase + python3 + every node-lock wheel."""
    rootfs = workdir / "naive-rootfs.tar"
    if not rootfs.exists():
        run(
            [
                "mmdebstrap",
                "--quiet",
                "--variant=minbase",
                "--include=python3",
                "--format=tar",
                "bookworm",
                str(rootfs),
            ]
        )
    with tarfile.open(rootfs) as tar:
        base = sum(m.size for m in tar if m.isfile())
    site = workdir / "naive-site"
    shutil.rmtree(site, ignore_errors=True)
    wheels = workdir / "naive-wheels"
    run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--quiet",
            "--no-deps",
            "--require-hashes",
            "--only-binary=:all:",
            "--cache-dir",
            str(cache / "pip"),
            "-d",
            str(wheels),
            "-r",
            str(REPO / "requirements/node.lock"),
        ]
    )
    run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-index",
            "--target",
            str(site),
            *map(str, sorted(wheels.glob("*.whl"))),
        ]
    )
    packages = sum(p.stat().st_size for p in site.rglob("*") if p.is_file())
    return base, packages


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=REPO / ".bench" / "bundle")
    parser.add_argument("--no-engine", action="store_true", help="pass --skip-engine-check")
    args = parser.parse_args()
    workdir: Path = args.workdir.resolve()
    shutil.rmtree(workdir / "cold-cache", ignore_errors=True)
    workdir.mkdir(parents=True, exist_ok=True)
    key = workdir / "bench.key"
    if not key.exists():
        generate_key(key, "bench@localhost")
    extra = ["--skip-engine-check"] if args.no_engine else []
    cold_bundle, cold = build(key, workdir / "cold", workdir / "cold-cache", extra)
    warm_bundle, warm = build(key, workdir / "warm", workdir / "cold-cache", extra)
    groups, layers, overhead = image_groups(warm_bundle)
    total = sum(layers.values())
    naive_base, naive_packages = naive_image(workdir, workdir / "cold-cache")

    print("### Build time (seconds)\n")
    print("| step | cold cache | warm cache |")
    print("|---|---:|---:|")
    for step in cold:
        print(f"| {step} | {cold[step]:.1f} | {warm.get(step, 0):.1f} |")
    print(f"| **total** | **{sum(cold.values()):.1f}** | **{sum(warm.values()):.1f}** |\n")
    print(
        f"bundle: {warm_bundle.stat().st_size / MB:.1f} MB; same bytes cold and warm: "
        f"{cold_bundle.read_bytes() == warm_bundle.read_bytes()}\n"
    )
    print("### Server image: where every MB goes (uncompressed)\n")
    print("| part | MB |")
    print("|---|---:|")
    for group, size in sorted(groups.items(), key=lambda item: -item[1]):
        print(f"| {group} | {size / MB:.1f} |")
    print(f"| tar headers and padding | {overhead / MB:.1f} |")
    print(
        f"| **image (layers: {', '.join(f'{n} {s / MB:.1f}' for n, s in layers.items())})** | **{total / MB:.1f}** |\n"
    )
    print("### Against a naive image, same run\n")
    print("| image | base root filesystem MB | Python packages MB | total MB |")
    print("|---|---:|---:|---:|")
    ours_base = layers.get("base layer", 0)
    print(
        f"| ours (pruned Debian runtime, server's wheels only) | {ours_base / MB:.1f} | {(total - ours_base) / MB:.1f} | {total / MB:.1f} |"
    )
    print(
        f"| naive (minbase + python3, every node-lock wheel) | {naive_base / MB:.1f} | {naive_packages / MB:.1f} | {(naive_base + naive_packages) / MB:.1f} |"
    )


if __name__ == "__main__":
    main()
