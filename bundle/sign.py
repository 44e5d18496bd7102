"""Sign SHA256SUMS with the release key, as `ssh-keygen -Y sign -n appliance-bundle` would."""

from __future__ import annotations

from pathlib import Path

from appliance.trust.sshsig import load_private_key, sign
from bundle import layout


def sign_checksums(checksums: bytes, key_file: Path) -> bytes:
    """The armored SSHSIG over `checksums`, made with the Ed25519 key in `key_file`."""
    return sign(checksums, load_private_key(key_file), layout.SIGNATURE_NAMESPACE)
