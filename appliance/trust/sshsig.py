"""OpenSSH signatures (SSHSIG): sign and verify the way `ssh-keygen -Y sign/verify` does.

The format is OpenSSH's PROTOCOL.sshsig; trust comes from an allowed_signers file as described
in the ALLOWED SIGNERS section of ssh-keygen(1). Only Ed25519 keys sign; verification also
accepts ECDSA (NIST curves) and RSA (rsa-sha2-256/512) signatures.

A revocation list goes with each allowed_signers file: `<file>.revoked` beside it, public key
lines as `ssh-keygen -Y verify -r` reads them. `load_allowed_signers` reads both, so that every
caller refuses a revoked key, even one an allowed_signers line still names.
"""

from __future__ import annotations

import base64
import hashlib
import re
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.hazmat.primitives.serialization import SSHPublicKeyTypes

from appliance.errors import KeyFileError, SignatureError
from appliance.fsio import atomic_write_bytes
from appliance.trust.trust_layout import KRL_MAGIC, revoked_path

SIGNATURE_HASH = "sha512"

SIGNATURE_MAGIC = b"SSHSIG"
SIGNATURE_VERSION = 1
ARMOR_BEGIN = "-----BEGIN SSH SIGNATURE-----"
ARMOR_END = "-----END SSH SIGNATURE-----"
ARMOR_WIDTH = 70

PRIVATE_KEY_BEGIN = "-----BEGIN OPENSSH PRIVATE KEY-----"
PRIVATE_KEY_MAGIC = b"openssh-key-v1\0"
SIGNING_KEY_TYPE = "ssh-ed25519"

MESSAGE_HASHES = ("sha256", "sha512")

# Key type -> signature algorithms accepted for it -> hash the signature algorithm uses
# (None for Ed25519, which hashes internally). SHA-1 "ssh-rsa" signatures are left out on purpose.
SIGNATURE_ALGORITHMS: dict[str, dict[str, type[hashes.HashAlgorithm] | None]] = {
    "ssh-ed25519": {"ssh-ed25519": None},
    "ecdsa-sha2-nistp256": {"ecdsa-sha2-nistp256": hashes.SHA256},
    "ecdsa-sha2-nistp384": {"ecdsa-sha2-nistp384": hashes.SHA384},
    "ecdsa-sha2-nistp521": {"ecdsa-sha2-nistp521": hashes.SHA512},
    "ssh-rsa": {"rsa-sha2-256": hashes.SHA256, "rsa-sha2-512": hashes.SHA512},
}

# allowed_signers option keywords (matched case-insensitively, as ssh-keygen does).
OPTION_CERT_AUTHORITY = "cert-authority"
OPTION_NAMESPACES = "namespaces"
OPTION_VALID_AFTER = "valid-after"
OPTION_VALID_BEFORE = "valid-before"
ALLOWED_SIGNER_OPTIONS = (
    OPTION_CERT_AUTHORITY,
    OPTION_NAMESPACES,
    OPTION_VALID_AFTER,
    OPTION_VALID_BEFORE,
)

_PRINCIPALS_FIELD = re.compile(r'\s*(?:"([^"]*)"|([^\s"]+))(?:\s+|$)')
_OPTIONS_FIELD = re.compile(r'(?:"(?:\\"|[^"])*"|[^\s"])+')
_OPTION = re.compile(r'([A-Za-z][A-Za-z-]*)(?:="((?:\\"|[^"])*)")?(?:,|$)')
_TIMESTAMP = re.compile(r"(\d{8})(\d{4}(?:\d{2})?)?(Z?)")
_SHOWN_CHARS = 64


@dataclass(frozen=True)
class SignerKey:
    """A public key as OpenSSH writes it: type, wire-format blob and comment."""

    key_type: str
    blob: bytes
    comment: str = ""

    @property
    def fingerprint(self) -> str:
        """The SHA256 fingerprint `ssh-keygen -l` prints for this key."""
        return fingerprint_of(self.blob)

    def openssh_line(self) -> str:
        """The key as one line of an OpenSSH .pub or allowed_signers file."""
        line = f"{self.key_type} {base64.b64encode(self.blob).decode('ascii')}"
        return f"{line} {self.comment}" if self.comment else line


@dataclass(frozen=True)
class AllowedSigner:
    """One line of an allowed_signers file: who may sign with a key, for which namespaces, when."""

    principals: tuple[str, ...]
    key: SignerKey
    namespaces: tuple[str, ...] | None  # None = any namespace
    valid_after: datetime | None = None
    valid_before: datetime | None = None

    def matches_principal(self, identity: str) -> bool:
        """Whether `identity` matches the principals pattern-list, as `ssh-keygen -I` does."""
        return _matches_pattern_list(identity, self.principals)

    def accepts_namespace(self, namespace: str) -> bool:
        """Whether this line allows signatures made for `namespace`."""
        return self.namespaces is None or _matches_pattern_list(namespace, self.namespaces)

    def is_valid_at(self, moment: datetime) -> bool:
        """Whether `moment` lies inside the line's valid-after/valid-before window."""
        if self.valid_after is not None and moment < self.valid_after:
            return False
        return self.valid_before is None or moment <= self.valid_before


@dataclass(frozen=True)
class RevokedKeys:
    """A revocation list: keys refused whatever an allowed_signers line says, and where it came from."""

    keys: tuple[SignerKey, ...] = ()
    source: str = ""

    def __contains__(self, blob: object) -> bool:
        return any(key.blob == blob for key in self.keys)


NO_REVOCATIONS = RevokedKeys()


class AllowedSigners(list[AllowedSigner]):
    """The lines of an allowed_signers file, with the revocation list that goes with it."""

    def __init__(
        self, signers: Sequence[AllowedSigner] = (), revoked: RevokedKeys = NO_REVOCATIONS
    ):
        super().__init__(signers)
        self.revoked = revoked


@dataclass(frozen=True)
class VerifiedSignature:
    """What a good signature tells: who signed, with which key, for which namespace."""

    principal: str
    fingerprint: str
    key_type: str
    namespace: str


@dataclass(frozen=True)
class _Envelope:
    """The fields of a decoded SSHSIG blob, still untrusted."""

    public_key: bytes
    key_type: bytes
    namespace: bytes
    hash_alg: bytes
    signature_algorithm: bytes
    signature: bytes


class _WireReader:
    """Reads SSH wire-format fields (RFC 4251) from bytes; ValueError on truncation."""

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._offset = 0

    def take(self, size: int) -> bytes:
        """Return the next `size` bytes."""
        end = self._offset + size
        if end > len(self._data):
            msg = f"truncated at byte {len(self._data)}, {end - len(self._data)} more expected"
            raise ValueError(msg)
        chunk = self._data[self._offset : end]
        self._offset = end
        return chunk

    def uint32(self) -> int:
        """Return the next big-endian uint32."""
        value: int = struct.unpack(">I", self.take(4))[0]
        return value

    def string(self) -> bytes:
        """Return the next length-prefixed string."""
        return self.take(self.uint32())

    def expect_end(self) -> None:
        """Refuse bytes left over after the last field."""
        left = len(self._data) - self._offset
        if left:
            msg = f"{left} unexpected trailing bytes"
            raise ValueError(msg)


def fingerprint_of(blob: bytes) -> str:
    """The SHA256 fingerprint of a public key blob, as `ssh-keygen -l` prints it."""
    digest = base64.b64encode(hashlib.sha256(blob).digest()).decode("ascii")
    return f"SHA256:{digest.rstrip('=')}"


def generate_key(path: Path, comment: str) -> SignerKey:
    """Write a new Ed25519 key to `path` (OpenSSH format, 0600) and `path.pub`; return it."""
    if "\n" in comment or "\r" in comment:
        msg = f"key comment {comment!r} must fit on one line"
        raise KeyFileError(msg)
    public_path = _public_path(path)
    for target in (path, public_path):
        if target.exists() or target.is_symlink():
            msg = f"refusing to overwrite existing key file {target}"
            raise KeyFileError(msg)
    private_key = Ed25519PrivateKey.generate()
    key = public_key_of(private_key, comment)
    private_pem = private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    )
    _write_key_file(path, private_pem, 0o600)
    try:
        _write_key_file(public_path, f"{key.openssh_line()}\n".encode(), 0o644)
    except KeyFileError:
        # Without its .pub the key could not be generated again under the same name.
        path.unlink(missing_ok=True)
        raise
    return key


def load_private_key(path: Path) -> Ed25519PrivateKey:
    """Read an unencrypted Ed25519 private key in OpenSSH format."""
    try:
        data = path.read_bytes()
    except FileNotFoundError as exc:
        msg = f"private key {path} does not exist"
        raise KeyFileError(msg) from exc
    except OSError as exc:
        msg = f"cannot read private key {path}: {exc.strerror or exc}"
        raise KeyFileError(msg) from exc
    try:
        cipher, key_type = _private_key_header(data)
    except ValueError as exc:
        msg = f"{path} is not an OpenSSH private key: {exc}"
        raise KeyFileError(msg) from exc
    if cipher != "none":
        msg = f"private key {path} is encrypted ({cipher}); an unencrypted key is needed"
        raise KeyFileError(msg)
    if key_type != SIGNING_KEY_TYPE:
        msg = f"private key {path} is a {key_type} key; only {SIGNING_KEY_TYPE} keys can sign"
        raise KeyFileError(msg)
    try:
        private_key = serialization.load_ssh_private_key(data, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        msg = f"private key {path} is malformed: {exc}"
        raise KeyFileError(msg) from exc
    if not isinstance(private_key, Ed25519PrivateKey):
        msg = f"private key {path} is not an {SIGNING_KEY_TYPE} key"
        raise KeyFileError(msg)
    return private_key


def public_key_of(private_key: Ed25519PrivateKey, comment: str = "") -> SignerKey:
    """The public half of an Ed25519 private key."""
    raw = private_key.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    blob = _ssh_string(SIGNING_KEY_TYPE.encode()) + _ssh_string(raw)
    return SignerKey(SIGNING_KEY_TYPE, blob, comment)


def parse_public_key(line: str) -> SignerKey:
    """Parse "type base64 [comment]", as in a .pub file or after an allowed_signers' options."""
    fields = line.strip().split(maxsplit=2)
    if len(fields) < 2:
        msg = "expected a public key as 'type base64 [comment]'"
        raise KeyFileError(msg)
    key_type, encoded = fields[0], fields[1]
    comment = fields[2] if len(fields) == 3 else ""
    try:
        blob = base64.b64decode(encoded, validate=True)
        _check_public_key_blob(key_type, blob)
    except ValueError as exc:
        msg = f"malformed {key_type} public key: {exc}"
        raise KeyFileError(msg) from exc
    return SignerKey(key_type, blob, comment)


def sign(message: bytes, private_key: Ed25519PrivateKey, namespace: str) -> bytes:
    """Sign `message` for `namespace`; return the armored signature `ssh-keygen -Y sign` would."""
    _check_namespace(namespace)
    key = public_key_of(private_key)
    namespace_raw = namespace.encode()
    hash_alg = SIGNATURE_HASH.encode()
    signed_data = _signed_data(namespace_raw, hash_alg, message)
    signature = _ssh_string(SIGNING_KEY_TYPE.encode()) + _ssh_string(private_key.sign(signed_data))
    blob = b"".join(
        (
            SIGNATURE_MAGIC,
            struct.pack(">I", SIGNATURE_VERSION),
            _ssh_string(key.blob),
            _ssh_string(namespace_raw),
            _ssh_string(b""),  # reserved
            _ssh_string(hash_alg),
            _ssh_string(signature),
        )
    )
    return _armor(blob)


def parse_allowed_signers(text: str, source: str = "allowed_signers") -> list[AllowedSigner]:
    """Parse an OpenSSH allowed_signers file; KeyFileError names the source and line."""
    signers = []
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        try:
            signers.append(_parse_allowed_signer(stripped))
        except KeyFileError as exc:
            msg = f"{source} line {number}: {exc}"
            raise KeyFileError(msg) from exc
    return signers


def load_allowed_signers(path: Path) -> AllowedSigners:
    """Read an allowed_signers file that lists at least one key, and its revocation list if any."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        msg = f"allowed signers file {path} does not exist"
        raise KeyFileError(msg) from exc
    except (OSError, UnicodeDecodeError) as exc:
        msg = f"cannot read allowed signers file {path}: {exc}"
        raise KeyFileError(msg) from exc
    signers = parse_allowed_signers(text, source=str(path))
    if not signers:
        msg = f"allowed signers file {path} lists no keys"
        raise KeyFileError(msg)
    return AllowedSigners(signers, load_revoked_keys(revoked_path(path)))


def parse_revoked_keys(text: str, source: str = "revoked_keys") -> RevokedKeys:
    """Parse a revocation list: one public key per line, '#' comments and blank lines allowed."""
    keys = []
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        try:
            keys.append(parse_public_key(stripped))
        except KeyFileError as exc:
            msg = f"{source} line {number}: {exc}"
            raise KeyFileError(msg) from exc
    return RevokedKeys(tuple(keys), source)


def load_revoked_keys(path: Path) -> RevokedKeys:
    """Read the revocation list at `path`; none revoked when there is no such file."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return RevokedKeys((), str(path))
    except OSError as exc:
        msg = f"cannot read revocation list {path}: {exc.strerror or exc}"
        raise KeyFileError(msg) from exc
    if data.startswith(KRL_MAGIC):
        # Refusing it beats reading it as empty: a KRL's keys would then all verify.
        msg = f"revocation list {path} is a binary KRL; write the revoked public keys one a line"
        raise KeyFileError(msg)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        msg = f"revocation list {path} is not UTF-8 text ({exc})"
        raise KeyFileError(msg) from exc
    return parse_revoked_keys(text, source=str(path))


def verify(
    message: bytes,
    armored: bytes,
    signers: Sequence[AllowedSigner],
    namespace: str,
    revoked: RevokedKeys | None = None,
) -> VerifiedSignature:
    """Check that `armored` signs `message` for `namespace` and was made by an allowed signer.

    A key in `revoked` (by default the revocation list `signers` was loaded with) is refused.
    """
    _check_namespace(namespace)
    if revoked is None:
        revoked = signers.revoked if isinstance(signers, AllowedSigners) else NO_REVOCATIONS
    envelope = _read_envelope(armored)
    if envelope.namespace != namespace.encode():
        msg = f"signed for namespace {_shown(envelope.namespace)}, expected {namespace!r}"
        raise SignatureError(msg)
    hash_type = _signature_hash(envelope)
    fingerprint = fingerprint_of(envelope.public_key)
    if envelope.public_key in revoked:
        msg = f"key {fingerprint} is revoked (listed in the revocation list {revoked.source})"
        raise SignatureError(msg)
    signer = _allowed_signer_for(envelope.public_key, signers, namespace, datetime.now(UTC))
    signed_data = _signed_data(envelope.namespace, envelope.hash_alg, message)
    if not _signature_matches(signer.key, envelope.signature, hash_type, signed_data):
        msg = f"signature does not match the data (signed by {fingerprint})"
        raise SignatureError(msg)
    return VerifiedSignature(signer.principals[0], fingerprint, signer.key.key_type, namespace)


def _public_path(path: Path) -> Path:
    """Where the public half of the private key at `path` lives, as ssh-keygen names it."""
    return path.with_name(f"{path.name}.pub")


def _write_key_file(path: Path, data: bytes, mode: int) -> None:
    """Write a key file whole or not at all; KeyFileError if it cannot be written."""
    try:
        atomic_write_bytes(path, data, mode)
    except OSError as exc:
        msg = f"cannot write key file {path}: {exc.strerror or exc}"
        raise KeyFileError(msg) from exc


def _private_key_header(data: bytes) -> tuple[str, str]:
    """Return the cipher name and key type from an OpenSSH private key's unencrypted header."""
    lines = data.decode("ascii").strip().splitlines()
    if not lines or lines[0].strip() != PRIVATE_KEY_BEGIN:
        msg = f"it does not start with {PRIVATE_KEY_BEGIN}"
        raise ValueError(msg)
    reader = _WireReader(base64.b64decode("".join(lines[1:-1]), validate=True))
    if reader.take(len(PRIVATE_KEY_MAGIC)) != PRIVATE_KEY_MAGIC:
        msg = "bad magic"
        raise ValueError(msg)
    cipher = reader.string().decode("ascii")
    reader.string()  # KDF name
    reader.string()  # KDF options
    if reader.uint32() != 1:
        msg = "expected exactly one key"
        raise ValueError(msg)
    key_type = _WireReader(reader.string()).string().decode("ascii")
    return cipher, key_type


def _check_public_key_blob(key_type: str, blob: bytes) -> None:
    """Refuse a blob that does not encode a `key_type` key; ValueError says why."""
    embedded = _WireReader(blob).string()
    if embedded != key_type.encode():
        msg = f"the key data says it is a {_shown(embedded)} key"
        raise ValueError(msg)
    if key_type in SIGNATURE_ALGORITHMS:
        _load_public_key(key_type, blob)


def _load_public_key(key_type: str, blob: bytes) -> SSHPublicKeyTypes:
    """Load a public key blob with `cryptography`; ValueError if it is malformed."""
    line = f"{key_type} {base64.b64encode(blob).decode('ascii')}".encode()
    try:
        return serialization.load_ssh_public_key(line)
    except UnsupportedAlgorithm as exc:
        raise ValueError(str(exc)) from exc


def _check_namespace(namespace: str) -> None:
    """Refuse an empty namespace, which ssh-keygen does not allow either."""
    if not namespace:
        msg = "the signature namespace must not be empty"
        raise ValueError(msg)


def _signed_data(namespace: bytes, hash_alg: bytes, message: bytes) -> bytes:
    """The bytes the key actually signs (PROTOCOL.sshsig): preamble plus the message's hash."""
    digest = hashlib.new(hash_alg.decode("ascii"), message).digest()
    return b"".join(
        (
            SIGNATURE_MAGIC,
            _ssh_string(namespace),
            _ssh_string(b""),  # reserved
            _ssh_string(hash_alg),
            _ssh_string(digest),
        )
    )


def _ssh_string(value: bytes) -> bytes:
    """Encode `value` as an SSH wire-format string."""
    return struct.pack(">I", len(value)) + value


def _armor(blob: bytes) -> bytes:
    """Wrap a signature blob in the armor ssh-keygen writes."""
    encoded = base64.b64encode(blob).decode("ascii")
    lines = [encoded[i : i + ARMOR_WIDTH] for i in range(0, len(encoded), ARMOR_WIDTH)]
    return "\n".join([ARMOR_BEGIN, *lines, ARMOR_END, ""]).encode("ascii")


def _read_envelope(armored: bytes) -> _Envelope:
    """Decode an armored signature; SignatureError if it is not a well-formed SSHSIG."""
    try:
        return _decode_envelope(_dearmor(armored))
    except ValueError as exc:
        msg = f"not an SSH signature: {exc}"
        raise SignatureError(msg) from exc


def _dearmor(armored: bytes) -> bytes:
    """Return the blob inside the BEGIN/END SSH SIGNATURE armor."""
    lines = [line.strip() for line in armored.decode("ascii").strip().splitlines()]
    if len(lines) < 3 or lines[0] != ARMOR_BEGIN or lines[-1] != ARMOR_END:
        msg = f"expected {ARMOR_BEGIN} ... {ARMOR_END}"
        raise ValueError(msg)
    return base64.b64decode("".join(lines[1:-1]), validate=True)


def _decode_envelope(blob: bytes) -> _Envelope:
    """Split a signature blob into its fields, refusing bad magic, versions and lengths."""
    reader = _WireReader(blob)
    if reader.take(len(SIGNATURE_MAGIC)) != SIGNATURE_MAGIC:
        msg = "bad magic"
        raise ValueError(msg)
    version = reader.uint32()
    if version != SIGNATURE_VERSION:
        msg = f"unsupported version {version}"
        raise ValueError(msg)
    public_key = reader.string()
    namespace = reader.string()
    reader.string()  # reserved: PROTOCOL.sshsig says to ignore it
    hash_alg = reader.string()
    signature = reader.string()
    reader.expect_end()
    signature_reader = _WireReader(signature)
    signature_algorithm = signature_reader.string()
    raw_signature = signature_reader.string()
    signature_reader.expect_end()
    return _Envelope(
        public_key=public_key,
        key_type=_WireReader(public_key).string(),
        namespace=namespace,
        hash_alg=hash_alg,
        signature_algorithm=signature_algorithm,
        signature=raw_signature,
    )


def _signature_hash(envelope: _Envelope) -> type[hashes.HashAlgorithm] | None:
    """Refuse hash, key and signature algorithms we cannot check; return the signature's hash."""
    if envelope.hash_alg.decode("ascii", "replace") not in MESSAGE_HASHES:
        msg = f"unsupported hash algorithm {_shown(envelope.hash_alg)}"
        raise SignatureError(msg)
    algorithms = SIGNATURE_ALGORITHMS.get(envelope.key_type.decode("ascii", "replace"))
    if algorithms is None:
        msg = f"unsupported key type {_shown(envelope.key_type)}"
        raise SignatureError(msg)
    algorithm = envelope.signature_algorithm.decode("ascii", "replace")
    if algorithm not in algorithms:
        msg = (
            f"unsupported signature algorithm {_shown(envelope.signature_algorithm)}"
            f" for a {_shown(envelope.key_type)} key"
        )
        raise SignatureError(msg)
    return algorithms[algorithm]


def _allowed_signer_for(
    blob: bytes, signers: Sequence[AllowedSigner], namespace: str, moment: datetime
) -> AllowedSigner:
    """The first allowed_signers line that trusts key `blob` for `namespace` at `moment`."""
    fingerprint = fingerprint_of(blob)
    listed = [signer for signer in signers if signer.key.blob == blob]
    if not listed:
        msg = f"key {fingerprint} is not an allowed signer"
        raise SignatureError(msg)
    for_namespace = [signer for signer in listed if signer.accepts_namespace(namespace)]
    if not for_namespace:
        msg = f"key {fingerprint} is not an allowed signer for namespace {namespace!r}"
        raise SignatureError(msg)
    for signer in for_namespace:
        if signer.is_valid_at(moment):
            return signer
    raise SignatureError(_outside_window(fingerprint, for_namespace, moment))


def _outside_window(fingerprint: str, lines: Sequence[AllowedSigner], moment: datetime) -> str:
    """Why no line trusts the key at `moment`: expired, or not valid yet, with the date."""
    now = f"{moment:%Y-%m-%dT%H:%M:%SZ}"
    expired = [s.valid_before for s in lines if s.valid_before and moment > s.valid_before]
    if len(expired) == len(lines):
        return (
            f"key {fingerprint} expired at {max(expired):%Y-%m-%dT%H:%M:%SZ}"
            f" (valid-before in its allowed_signers line; now {now})"
        )
    starts = [s.valid_after for s in lines if s.valid_after and moment < s.valid_after]
    if starts:
        return (
            f"key {fingerprint} is not valid before {min(starts):%Y-%m-%dT%H:%M:%SZ}"
            f" (valid-after in its allowed_signers line; now {now})"
        )
    return f"key {fingerprint} is not an allowed signer at {now} (outside its valid-after/valid-before window)"


def _signature_matches(
    key: SignerKey,
    signature: bytes,
    hash_type: type[hashes.HashAlgorithm] | None,
    signed_data: bytes,
) -> bool:
    """Whether `signature` over `signed_data` verifies with the trusted `key`."""
    try:
        public_key = _load_public_key(key.key_type, key.blob)
    except ValueError as exc:
        msg = f"allowed signer key {key.fingerprint} cannot be loaded: {exc}"
        raise SignatureError(msg) from exc
    try:
        if isinstance(public_key, Ed25519PublicKey):
            public_key.verify(signature, signed_data)
        elif isinstance(public_key, ec.EllipticCurvePublicKey) and hash_type is not None:
            der = _ecdsa_signature_der(signature)
            public_key.verify(der, signed_data, ec.ECDSA(hash_type()))
        elif isinstance(public_key, rsa.RSAPublicKey) and hash_type is not None:
            # OpenSSH also accepts signatures whose leading zero bytes were dropped.
            padded = signature.rjust((public_key.key_size + 7) // 8, b"\0")
            public_key.verify(padded, signed_data, padding.PKCS1v15(), hash_type())
        else:
            return False
    except (InvalidSignature, ValueError):
        return False
    return True


def _ecdsa_signature_der(signature: bytes) -> bytes:
    """Convert an SSH ECDSA signature (mpint r, mpint s) to the DER `cryptography` verifies."""
    reader = _WireReader(signature)
    r = int.from_bytes(reader.string(), "big")
    s = int.from_bytes(reader.string(), "big")
    reader.expect_end()
    return encode_dss_signature(r, s)


def _parse_allowed_signer(line: str) -> AllowedSigner:
    """Parse one non-comment allowed_signers line: principals [options] key."""
    match = _PRINCIPALS_FIELD.match(line)
    if match is None or match.end() == len(line):
        msg = "expected 'principals [options] key-type base64-key'"
        raise KeyFileError(msg)
    principals = tuple((match.group(1) or match.group(2) or "").split(","))
    if "" in principals:
        msg = f"empty principal in {match.group(0).strip()!r}"
        raise KeyFileError(msg)
    rest = line[match.end() :]
    options: dict[str, str | None] = {}
    if _starts_with_options(rest):
        options_match = _OPTIONS_FIELD.match(rest)
        options_text = options_match.group(0) if options_match else ""
        rest = rest[len(options_text) :]
        if not rest[:1].isspace():
            msg = "options must be followed by a key (unbalanced quotes?)"
            raise KeyFileError(msg)
        options = _parse_options(options_text)
    key = parse_public_key(rest)
    return AllowedSigner(
        principals=principals,
        key=key,
        namespaces=_namespaces_option(options),
        valid_after=_timestamp_option(options, OPTION_VALID_AFTER),
        valid_before=_timestamp_option(options, OPTION_VALID_BEFORE),
    )


def _starts_with_options(rest: str) -> bool:
    """Whether the field after the principals holds options rather than a key type."""
    first = rest.split(maxsplit=1)[0] if rest.strip() else ""
    # Key type names never contain '=' or quotes, nor are they option keywords; this tells
    # options apart from a key early enough to say which of the two is malformed.
    keyword = re.split(r'[=,"]', first, maxsplit=1)[0].lower()
    return "=" in first or '"' in first or keyword in ALLOWED_SIGNER_OPTIONS


def _parse_options(text: str) -> dict[str, str | None]:
    """Parse comma-separated options, some with double-quoted values that may hold commas."""
    options: dict[str, str | None] = {}
    offset = 0
    while offset < len(text):
        match = _OPTION.match(text, offset)
        if match is None:
            msg = f"malformed options {text[offset:]!r} (values must be in double quotes)"
            raise KeyFileError(msg)
        name = match.group(1).lower()
        value = None if match.group(2) is None else match.group(2).replace('\\"', '"')
        _check_option(name, value, options)
        options[name] = value
        offset = match.end()
    return options


def _check_option(name: str, value: str | None, seen: dict[str, str | None]) -> None:
    """Refuse unknown, repeated, valueless or unsupported options."""
    if name not in ALLOWED_SIGNER_OPTIONS:
        msg = f"unknown option {name!r}"
        raise KeyFileError(msg)
    if name in seen:
        msg = f"option {name!r} given twice"
        raise KeyFileError(msg)
    if name == OPTION_CERT_AUTHORITY:
        # Verifying certificates would need the whole OpenSSH certificate machinery.
        msg = f"{OPTION_CERT_AUTHORITY} is not supported"
        raise KeyFileError(msg)
    if value is None:
        msg = f'option {name!r} needs a value in double quotes, like {name}="..."'
        raise KeyFileError(msg)


def _namespaces_option(options: dict[str, str | None]) -> tuple[str, ...] | None:
    """The namespaces pattern-list of a line, or None when it allows any namespace."""
    value = options.get(OPTION_NAMESPACES)
    if value is None:
        return None
    namespaces = tuple(value.split(","))
    if "" in namespaces:
        msg = f"empty pattern in namespaces={value!r}"
        raise KeyFileError(msg)
    return namespaces


def _timestamp_option(options: dict[str, str | None], name: str) -> datetime | None:
    """Parse a valid-after/valid-before value: YYYYMMDD[Z] or YYYYMMDDHHMM[SS][Z]."""
    value = options.get(name)
    if value is None:
        return None
    match = _TIMESTAMP.fullmatch(value)
    if match is None:
        msg = f"{name}={value!r} is not YYYYMMDD[Z] or YYYYMMDDHHMM[SS][Z]"
        raise KeyFileError(msg)
    digits = (match.group(1) + (match.group(2) or "")).ljust(14, "0")
    try:
        moment = datetime.strptime(digits, "%Y%m%d%H%M%S")
    except ValueError as exc:
        msg = f"{name}={value!r} is not a valid date: {exc}"
        raise KeyFileError(msg) from exc
    # Like ssh-keygen: UTC with a Z suffix, the system's local time zone without.
    return moment.replace(tzinfo=UTC) if match.group(3) else moment.astimezone(UTC)


def _matches_pattern_list(subject: str, patterns: Sequence[str]) -> bool:
    """OpenSSH pattern-list matching: any positive match and no negated ('!') match."""
    matched = False
    for pattern in patterns:
        if pattern.startswith("!"):
            if _matches_pattern(subject, pattern[1:]):
                return False
        elif _matches_pattern(subject, pattern):
            matched = True
    return matched


def _matches_pattern(subject: str, pattern: str) -> bool:
    """OpenSSH wildcard matching: '*' any run of characters, '?' exactly one, case-sensitive."""
    regex = "".join(
        ".*" if char == "*" else "." if char == "?" else re.escape(char) for char in pattern
    )
    return re.fullmatch(regex, subject, re.DOTALL) is not None


def _shown(raw: bytes) -> str:
    """Quote an untrusted field for a one-line error message."""
    text = raw.decode("utf-8", "backslashreplace")
    if len(text) > _SHOWN_CHARS:
        text = f"{text[:_SHOWN_CHARS]}..."
    return repr(text)
