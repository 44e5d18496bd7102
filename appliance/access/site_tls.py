"""TLS on the site network: the node's certificate, checked before the server starts or made here.

An operator brings a certificate (PEM, with its key) or the installer makes a self-signed one
for the node's names and addresses (`appliance tls self-signed`). Either way the server checks
the pair before it listens: a certificate that is not PEM, a key that is not the certificate's,
a key file that other users may read, or a certificate outside its validity is refused in one
line. Granian reads keys in PKCS#8 only, so another PEM key format is refused with the command
that converts it. Clients pin or trust the certificate by its SHA-256 fingerprint, which the
installer prints and records in the audit trail.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from appliance.access.secret_files import check_private
from appliance.errors import ConfigError
from appliance.faults import os_fault
from appliance.fsio import atomic_write_bytes

SELF_SIGNED_DAYS = 825  # the longest lifetime browsers accept for a server certificate
PKCS8_HEADER = b"-----BEGIN PRIVATE KEY-----"
SIGNING_ONLY = x509.KeyUsage(
    digital_signature=True, content_commitment=False, key_encipherment=False,
    data_encipherment=False, key_agreement=False, key_cert_sign=False, crl_sign=False,
    encipher_only=False, decipher_only=False,
)  # fmt: skip
CONVERT_KEY = "openssl pkcs8 -topk8 -nocrypt -in KEY -out KEY.pkcs8"


@dataclass(frozen=True)
class SiteCertificate:
    """A checked certificate and key pair."""

    cert: Path
    key: Path
    fingerprint: str  # SHA256:hex:with:colons, as browsers show it
    names: tuple[str, ...]  # its DNS names and IP addresses
    not_after: datetime


def fingerprint_of(certificate: x509.Certificate) -> str:
    """The SHA-256 fingerprint as browsers and `openssl x509 -fingerprint -sha256` show it."""
    digest = certificate.fingerprint(hashes.SHA256()).hex().upper()
    return "SHA256:" + ":".join(digest[i : i + 2] for i in range(0, len(digest), 2))


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError as exc:
        msg = f"{what} {path} does not exist"
        raise ConfigError(msg) from exc
    except IsADirectoryError as exc:
        msg = f"{what} {path} is a folder, not a file"
        raise ConfigError(msg) from exc
    except PermissionError as exc:
        msg = f"{what} {path} cannot be read by this user ({exc.strerror})"
        raise ConfigError(msg) from exc
    except OSError as exc:
        raise os_fault(exc, f"reading {what} {path}") from exc


def load_site_certificate(cert: Path, key: Path, now: datetime | None = None) -> SiteCertificate:
    """Check a certificate and its key as the server will use them; ConfigError says what is wrong."""
    now = now or datetime.now(UTC)
    check_private(key, "the TLS key", secret=True)
    cert_bytes = _read(cert, "the TLS certificate")
    key_bytes = _read(key, "the TLS key")
    try:
        certificate = x509.load_pem_x509_certificate(cert_bytes)
    except ValueError as exc:
        msg = f"the TLS certificate {cert} is not a PEM certificate"
        raise ConfigError(msg) from exc
    try:
        private = serialization.load_pem_private_key(key_bytes, password=None)
    except TypeError as exc:
        msg = f"the TLS key {key} is encrypted: the server needs it without a passphrase"
        raise ConfigError(msg) from exc
    except ValueError as exc:
        msg = f"the TLS key {key} is not a PEM private key"
        raise ConfigError(msg) from exc
    if PKCS8_HEADER not in key_bytes:
        msg = f"the TLS key {key} is not in PKCS#8 form, which Granian needs: {CONVERT_KEY}"
        raise ConfigError(msg)
    public = certificate.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    if public != private.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    ):
        msg = f"the TLS key {key} is not the key of the certificate {cert}"
        raise ConfigError(msg)
    if now < certificate.not_valid_before_utc:
        msg = f"the TLS certificate {cert} is not valid before {certificate.not_valid_before_utc:%Y-%m-%d %H:%M} UTC (check the node's clock)"
        raise ConfigError(msg)
    if now > certificate.not_valid_after_utc:
        msg = (
            f"the TLS certificate {cert} expired on {certificate.not_valid_after_utc:%Y-%m-%d} UTC"
        )
        raise ConfigError(msg)
    return SiteCertificate(
        cert, key, fingerprint_of(certificate), names_of(certificate),
        certificate.not_valid_after_utc,
    )  # fmt: skip


def names_of(certificate: x509.Certificate) -> tuple[str, ...]:
    """The DNS names and IP addresses a certificate is for."""
    try:
        san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return ()
    dns = san.get_values_for_type(x509.DNSName)
    ips = [str(ip) for ip in san.get_values_for_type(x509.IPAddress)]
    return (*dns, *ips)


def make_self_signed(
    cert: Path,
    key: Path,
    names: list[str],
    addresses: list[str],
    days: int = SELF_SIGNED_DAYS,
    now: datetime | None = None,
) -> SiteCertificate:
    """A new P-256 key (PKCS#8, mode 0600) and a self-signed certificate for names and addresses."""
    if not names and not addresses:
        msg = "a certificate needs at least one --name or --address"
        raise ConfigError(msg)
    try:
        ips = [ipaddress.ip_address(address) for address in addresses]
    except ValueError as exc:
        raise ConfigError(f"--address: {exc}") from exc
    now = (now or datetime.now(UTC)).replace(microsecond=0)
    private = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([
        x509.NameAttribute(NameOID.COMMON_NAME, (names or addresses)[0][:64]),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Offline analytics appliance"),
    ])  # fmt: skip
    alternatives: list[x509.GeneralName] = [x509.DNSName(name) for name in names]
    alternatives += [x509.IPAddress(ip) for ip in ips]
    public = private.public_key()
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))  # a client's clock a little behind
        .not_valid_after(now + timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(alternatives), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(SIGNING_ONLY, critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .sign(private, hashes.SHA256())
    )
    key_pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    try:
        atomic_write_bytes(key, key_pem, mode=0o600)
        atomic_write_bytes(cert, certificate.public_bytes(serialization.Encoding.PEM), mode=0o644)
    except OSError as exc:
        raise os_fault(exc, f"writing {cert} and {key}") from exc
    return load_site_certificate(cert, key, now)
