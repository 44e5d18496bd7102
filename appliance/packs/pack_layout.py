"""The result pack format as constants: builder, verifier and importer all read them from here.

A pack is an uncompressed POSIX tar whose first two members are the manifest and its SSH
signature, followed by one Parquet file per table. See docs/formats.md.
"""

PACK_SUFFIX = ".pack"
MANIFEST_NAME = "pack.json"
SIGNATURE_NAME = "pack.json.sig"
TABLES_DIR = "tables"
TABLE_SUFFIX = ".parquet"

FORMAT_NAME = "appliance-result-pack"
FORMAT_VERSION = 1
SIGNATURE_NAMESPACE = "appliance-result-pack"

METADATA_COLUMNS = ("model_version", "generated_at", "source", "dataset_id")
MANIFEST_FIELDS = (
    "format",
    "format_version",
    "pack_id",
    "dataset_id",
    "model_version",
    "source",
    "generated_at",
    "created_by",
    "schema_registry_version",
    "tables",
)
TABLE_ENTRY_FIELDS = ("path", "rows", "bytes", "sha256", "schema")

MAX_MANIFEST_BYTES = 1 << 20
MAX_SIGNATURE_BYTES = 16 << 10
MAX_TABLES = 64


def table_member(name: str) -> str:
    """Return the tar member path of table `name`."""
    return f"{TABLES_DIR}/{name}{TABLE_SUFFIX}"
