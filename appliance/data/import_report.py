"""The import report (`versions/<vid>/import.json`): what a version is, where it came from, who imported it.

One typed record, written by the importer and read through the store by the CLI, the server and
recovery. Its JSON form is in docs/formats.md ("import.json"); the field order below is the
file's.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from typing import Any

from appliance.errors import StoreError


@dataclass(frozen=True)
class SignerInfo:
    """Who signed the pack: the allowed_signers principal and the key's SHA256 fingerprint."""

    principal: str
    fingerprint: str


@dataclass(frozen=True)
class ImportReport:
    """One published version's import report."""

    version: str
    previous: str | None
    pack_file: str
    pack_id: str
    dataset_id: str
    model_version: str
    source: str
    generated_at: str
    created_by: str
    schema_registry_version: int
    manifest_sha256: str
    signer: SignerInfo
    rows: dict[str, int]
    imported_at: str
    imported_by: str
    forced_older: bool

    # What `appliance versions --json` shows of a version (stable: no clock-dependent field).
    SUMMARY_FIELDS = (
        "pack_id",
        "dataset_id",
        "model_version",
        "source",
        "generated_at",
        "imported_at",
        "imported_by",
        "signer",
        "rows",
    )
    # What the `import` event of the audit trail carries, after its `version`.
    HISTORY_FIELDS = (
        "previous",
        "pack_id",
        "dataset_id",
        "model_version",
        "source",
        "generated_at",
        "signer",
        "pack_file",
        "manifest_sha256",
        "rows",
        "forced_older",
    )

    def as_json(self) -> dict[str, Any]:
        """The report as import.json holds it."""
        return asdict(self)

    def to_bytes(self) -> bytes:
        """import.json's bytes."""
        return (json.dumps(self.as_json(), indent=2) + "\n").encode()

    def summary(self) -> dict[str, Any]:
        """The fields `appliance versions --json` shows."""
        whole = self.as_json()
        return {key: whole[key] for key in self.SUMMARY_FIELDS}

    def history_fields(self) -> dict[str, Any]:
        """The fields of the import's audit-trail event."""
        whole = self.as_json()
        return {key: whole[key] for key in self.HISTORY_FIELDS}

    @classmethod
    def from_bytes(cls, data: bytes, where: str) -> ImportReport:
        """Parse import.json; StoreError naming `where` if it is not a complete report."""
        try:
            raw = json.loads(data)
            signer = SignerInfo(**raw["signer"])
            values = {f.name: raw[f.name] for f in fields(cls) if f.name != "signer"}
            report = cls(signer=signer, **values)
        except (ValueError, KeyError, TypeError) as exc:
            msg = f"{where} is not a complete import report ({type(exc).__name__}: {exc})"
            raise StoreError(msg) from exc
        return report
