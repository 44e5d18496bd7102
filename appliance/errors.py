"""Named errors raised by the library; the CLIs turn them into one-line messages and exit codes."""


class ApplianceError(Exception):
    """Base class of every error the library raises on purpose."""

    exit_code = 1


class ConfigError(ApplianceError):
    """A setting, flag or input file is missing or malformed."""

    exit_code = 2


class KeyFileError(ApplianceError):
    """A signing key or an allowed_signers file cannot be read or parsed."""

    exit_code = 2


class SignatureError(ApplianceError):
    """A signature is malformed, made by an untrusted key, or does not match the data."""

    exit_code = 3


class Rejected(ApplianceError):
    """Something signed was refused; `reason` is a short machine-readable code, the message says why."""

    exit_code = 3

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class PackRejected(Rejected):
    """A result pack was refused; `details` carries its pack_id and dataset_id once known."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(reason, message)
        self.details: dict[str, str] = {}


class BundleRejected(Rejected):
    """A bundle was refused."""


class SchemaError(ApplianceError):
    """A table does not match the schema registry."""

    exit_code = 3


class UnreadableParquet(SchemaError):
    """A table file is not Parquet, or its footer cannot be read."""


class StoreError(ApplianceError):
    """The data store is missing, locked, or asked for something it does not hold."""

    exit_code = 4


class NodeFault(StoreError):
    """The node failed, not the input: disk full, out of memory, read-only disk, I/O error.

    `reason` is a short machine-readable code (disk-full, out-of-memory, read-only, io-error).
    Nothing is refused: the same input may succeed once the node is fixed.
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class UnknownVersion(StoreError):
    """A version asked for by id is not in the store; `reason`: no-such-version or version-removed."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class VersionDamaged(StoreError):
    """A published version's files no longer match the checksums recorded when it was published."""
