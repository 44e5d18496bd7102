"""Tests for appliance.trust.sshsig, checked against the real OpenSSH ssh-keygen."""

from __future__ import annotations

import base64
import random
import re
import shutil
import stat
import subprocess
import textwrap
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from appliance.errors import KeyFileError, SignatureError
from appliance.trust.sshsig import (
    AllowedSigner,
    SignerKey,
    fingerprint_of,
    generate_key,
    load_allowed_signers,
    load_private_key,
    parse_allowed_signers,
    parse_public_key,
    public_key_of,
    sign,
    verify,
)

SSH_KEYGEN = shutil.which("ssh-keygen")
pytestmark = pytest.mark.skipif(SSH_KEYGEN is None, reason="OpenSSH ssh-keygen is not installed")

NAMESPACE = "appliance-result-pack"
PRINCIPAL = "ml-workstation@example.com"
MESSAGE = b'{"format": "appliance-result-pack", "pack_id": "2024-06-01-a"}\n'


def ssh_keygen(
    *args: str | Path, stdin: bytes = b"", check: bool = True
) -> subprocess.CompletedProcess[bytes]:
    """Run ssh-keygen with `args`, feeding `stdin`; return the completed process."""
    return subprocess.run(
        [SSH_KEYGEN or "ssh-keygen", *map(str, args)],
        input=stdin,
        capture_output=True,
        check=check,
        timeout=60,
    )


def make_ssh_keygen_key(path: Path, *options: str) -> Path:
    """Create an unencrypted key with ssh-keygen (`options` choose type and size)."""
    ssh_keygen("-q", *options, "-N", "", "-C", PRINCIPAL, "-f", path)
    return path


def ssh_keygen_sign(key_path: Path, message: bytes, *options: str) -> bytes:
    """Sign `message` for NAMESPACE with `ssh-keygen -Y sign`; return the armored signature."""
    return ssh_keygen("-Y", "sign", "-f", key_path, "-n", NAMESPACE, *options, stdin=message).stdout


def write_allowed_signers(path: Path, *lines: str) -> Path:
    """Write an allowed_signers file with `lines`."""
    path.write_text("".join(f"{line}\n" for line in lines))
    return path


def allowed_line(key: SignerKey, principals: str = PRINCIPAL, options: str = "") -> str:
    """One allowed_signers line trusting `key`."""
    return " ".join(part for part in (principals, options, key.openssh_line()) if part)


def seeded_random(seed: int) -> random.Random:
    """A reproducible source of fuzz bytes."""
    return random.Random(seed)


def armor(blob: bytes) -> bytes:
    """Armor a raw SSHSIG blob the way ssh-keygen does."""
    lines = textwrap.wrap(base64.b64encode(blob).decode(), 70)
    text = "\n".join(["-----BEGIN SSH SIGNATURE-----", *lines, "-----END SSH SIGNATURE-----"])
    return f"{text}\n".encode()


def dearmor(armored: bytes) -> bytes:
    """The raw SSHSIG blob inside an armored signature."""
    return base64.b64decode("".join(armored.decode().splitlines()[1:-1]))


def ssh_keygen_verifies(
    tmp_path: Path, allowed: Path, signature: bytes, identity: str = PRINCIPAL
) -> bool:
    """Whether `ssh-keygen -Y verify` accepts `signature` of MESSAGE for NAMESPACE."""
    signature_path = tmp_path / "message.sig"
    signature_path.write_bytes(signature)
    result = ssh_keygen(
        "-Y", "verify", "-f", allowed, "-I", identity, "-n", NAMESPACE, "-s", signature_path,
        stdin=MESSAGE, check=False,
    )  # fmt: skip
    return result.returncode == 0


@pytest.fixture(scope="module")
def ssh_keygen_ed25519_key(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An unencrypted Ed25519 key made by `ssh-keygen -t ed25519 -N ''`."""
    return make_ssh_keygen_key(tmp_path_factory.mktemp("keys") / "id_ed25519", "-t", "ed25519")


@pytest.fixture(scope="module", params=["ed25519", "ecdsa", "rsa"])
def signed_by_each_key_type(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> tuple[bytes, list[AllowedSigner]]:
    """An ssh-keygen signature of MESSAGE by a key of each type, and signers trusting that key."""
    key_path = make_ssh_keygen_key(tmp_path_factory.mktemp("keys") / "key", "-t", request.param)
    key = parse_public_key(key_path.with_name("key.pub").read_text())
    return ssh_keygen_sign(key_path, MESSAGE), parse_allowed_signers(allowed_line(key))


@pytest.fixture
def generated_key_path(tmp_path: Path) -> Path:
    """An Ed25519 key written by our generate_key."""
    path = tmp_path / "signing_key"
    generate_key(path, PRINCIPAL)
    return path


@pytest.fixture
def signing_key(generated_key_path: Path) -> Ed25519PrivateKey:
    """The private key of generated_key_path."""
    return load_private_key(generated_key_path)


@pytest.fixture
def good_signature(signing_key: Ed25519PrivateKey) -> bytes:
    """Our signature of MESSAGE for NAMESPACE."""
    return sign(MESSAGE, signing_key, NAMESPACE)


@pytest.fixture
def trusted_signers(signing_key: Ed25519PrivateKey) -> list[AllowedSigner]:
    """Allowed signers that trust signing_key for any namespace."""
    return parse_allowed_signers(allowed_line(public_key_of(signing_key)))


# --- Interoperability with ssh-keygen ---------------------------------------------------------


def test_ssh_keygen_verify_accepts_our_signature(
    tmp_path: Path, signing_key: Ed25519PrivateKey, good_signature: bytes
) -> None:
    allowed = write_allowed_signers(tmp_path / "allowed", allowed_line(public_key_of(signing_key)))
    assert ssh_keygen_verifies(tmp_path, allowed, good_signature)


def test_ssh_keygen_check_novalidate_accepts_our_signature(
    tmp_path: Path, good_signature: bytes
) -> None:
    signature_path = tmp_path / "message.sig"
    signature_path.write_bytes(good_signature)
    ssh_keygen("-Y", "check-novalidate", "-n", NAMESPACE, "-s", signature_path, stdin=MESSAGE)


@pytest.mark.parametrize("key_source", ["ssh-keygen", "generate_key"])
def test_signature_is_byte_identical_to_ssh_keygen_sign(
    key_source: str, ssh_keygen_ed25519_key: Path, generated_key_path: Path
) -> None:
    key_path = ssh_keygen_ed25519_key if key_source == "ssh-keygen" else generated_key_path
    ours = sign(MESSAGE, load_private_key(key_path), NAMESPACE)
    assert ours == ssh_keygen_sign(key_path, MESSAGE)


def test_signature_of_empty_message_is_byte_identical_to_ssh_keygen_sign(
    ssh_keygen_ed25519_key: Path,
) -> None:
    ours = sign(b"", load_private_key(ssh_keygen_ed25519_key), NAMESPACE)
    assert ours == ssh_keygen_sign(ssh_keygen_ed25519_key, b"")


@pytest.mark.parametrize(
    ("key_options", "sign_options", "key_type"),
    [
        (("-t", "ed25519"), (), "ssh-ed25519"),
        (("-t", "ed25519"), ("-O", "hashalg=sha256"), "ssh-ed25519"),
        (("-t", "ecdsa", "-b", "256"), (), "ecdsa-sha2-nistp256"),
        (("-t", "ecdsa", "-b", "384"), (), "ecdsa-sha2-nistp384"),
        (("-t", "ecdsa", "-b", "521"), (), "ecdsa-sha2-nistp521"),
        (("-t", "rsa", "-b", "2048"), (), "ssh-rsa"),
        (("-t", "rsa", "-b", "2048"), ("-O", "hashalg=sha256"), "ssh-rsa"),
    ],
)
def test_verify_accepts_ssh_keygen_signature(
    tmp_path: Path, key_options: tuple[str, ...], sign_options: tuple[str, ...], key_type: str
) -> None:
    key_path = make_ssh_keygen_key(tmp_path / "key", *key_options)
    key = parse_public_key(key_path.with_name("key.pub").read_text())
    signature = ssh_keygen_sign(key_path, MESSAGE, *sign_options)

    verified = verify(MESSAGE, signature, parse_allowed_signers(allowed_line(key)), NAMESPACE)

    assert verified.principal == PRINCIPAL
    assert verified.fingerprint == key.fingerprint
    assert verified.key_type == key_type
    assert verified.namespace == NAMESPACE
    with pytest.raises(SignatureError, match=r"^signature does not match the data"):
        verify(MESSAGE + b" ", signature, parse_allowed_signers(allowed_line(key)), NAMESPACE)


def test_load_private_key_reads_ssh_keygen_key(ssh_keygen_ed25519_key: Path) -> None:
    public = parse_public_key(ssh_keygen_ed25519_key.with_name("id_ed25519.pub").read_text())
    loaded = public_key_of(load_private_key(ssh_keygen_ed25519_key), comment=PRINCIPAL)
    assert loaded == public


def test_ssh_keygen_reports_our_fingerprint(generated_key_path: Path) -> None:
    key = parse_public_key(generated_key_path.with_name("signing_key.pub").read_text())
    for listed in (generated_key_path, generated_key_path.with_name("signing_key.pub")):
        output = ssh_keygen("-l", "-f", listed).stdout.decode()
        assert output.split()[1] == key.fingerprint


def test_ssh_keygen_derives_our_public_key_from_our_private_key(generated_key_path: Path) -> None:
    derived = ssh_keygen("-y", "-f", generated_key_path).stdout.decode()
    ours = generated_key_path.with_name("signing_key.pub").read_text()
    assert derived.split()[:2] == ours.split()[:2]


# --- generate_key -------------------------------------------------------------------------------


def test_generate_key_writes_private_key_0600_and_public_key_line(tmp_path: Path) -> None:
    path = tmp_path / "signing_key"
    key = generate_key(path, PRINCIPAL)

    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text().startswith("-----BEGIN OPENSSH PRIVATE KEY-----\n")
    assert path.with_name("signing_key.pub").read_text() == f"{key.openssh_line()}\n"
    assert key.openssh_line().startswith("ssh-ed25519 AAAA")
    assert key.openssh_line().endswith(f" {PRINCIPAL}")
    assert public_key_of(load_private_key(path), PRINCIPAL) == key
    assert sorted(p.name for p in tmp_path.iterdir()) == ["signing_key", "signing_key.pub"]


def test_generate_key_refuses_existing_private_key(tmp_path: Path) -> None:
    path = tmp_path / "signing_key"
    path.write_text("precious")
    with pytest.raises(KeyFileError, match="refusing to overwrite existing key file"):
        generate_key(path, PRINCIPAL)
    assert path.read_text() == "precious"
    assert not path.with_name("signing_key.pub").exists()


def test_generate_key_refuses_existing_public_key(tmp_path: Path) -> None:
    path = tmp_path / "signing_key"
    path.with_name("signing_key.pub").write_text("precious")
    with pytest.raises(KeyFileError, match=r"signing_key\.pub"):
        generate_key(path, PRINCIPAL)
    assert not path.exists()


def test_generate_key_refuses_multi_line_comment(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError, match="must fit on one line"):
        generate_key(tmp_path / "signing_key", "a\nb")
    assert list(tmp_path.iterdir()) == []


def test_generate_key_into_missing_directory_is_a_key_file_error(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError, match="cannot write key file"):
        generate_key(tmp_path / "missing" / "signing_key", PRINCIPAL)


# --- load_private_key -------------------------------------------------------------------------


def test_load_private_key_missing_file(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError, match="does not exist"):
        load_private_key(tmp_path / "absent")


def test_load_private_key_garbage_file(tmp_path: Path) -> None:
    path = tmp_path / "garbage"
    path.write_bytes(seeded_random(1).randbytes(300))
    with pytest.raises(KeyFileError, match="is not an OpenSSH private key"):
        load_private_key(path)


def test_load_private_key_pkcs8_pem_file(tmp_path: Path) -> None:
    path = tmp_path / "pkcs8.pem"
    path.write_bytes(
        Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    with pytest.raises(KeyFileError, match="is not an OpenSSH private key"):
        load_private_key(path)


def test_load_private_key_encrypted_key(tmp_path: Path) -> None:
    path = tmp_path / "encrypted"
    ssh_keygen("-q", "-t", "ed25519", "-N", "secret", "-f", path)
    with pytest.raises(KeyFileError, match=r"is encrypted \(aes256-ctr\)"):
        load_private_key(path)


def test_load_private_key_rsa_key(tmp_path: Path) -> None:
    path = make_ssh_keygen_key(tmp_path / "id_rsa", "-t", "rsa", "-b", "2048")
    with pytest.raises(KeyFileError, match="is a ssh-rsa key; only ssh-ed25519 keys can sign"):
        load_private_key(path)


def test_load_private_key_truncated_key(tmp_path: Path, generated_key_path: Path) -> None:
    lines = generated_key_path.read_text().splitlines()
    path = tmp_path / "truncated"
    path.write_text("\n".join([*lines[:2], lines[-1]]) + "\n")
    with pytest.raises(KeyFileError, match="is not an OpenSSH private key: truncated"):
        load_private_key(path)


# --- public keys ------------------------------------------------------------------------------


def test_fingerprint_is_unpadded_sha256(ssh_keygen_ed25519_key: Path) -> None:
    pub = ssh_keygen_ed25519_key.with_name("id_ed25519.pub")
    key = parse_public_key(pub.read_text())
    listed = ssh_keygen("-l", "-f", pub).stdout.decode()
    assert listed.split()[1] == key.fingerprint == fingerprint_of(key.blob)
    assert not key.fingerprint.endswith("=")


def test_openssh_line_omits_empty_comment(signing_key: Ed25519PrivateKey) -> None:
    key = public_key_of(signing_key)
    assert len(key.openssh_line().split(" ")) == 2
    assert parse_public_key(key.openssh_line()) == key


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("", "expected a public key"),
        ("ssh-ed25519", "expected a public key"),
        ("ssh-ed25519 not*base64", "malformed ssh-ed25519 public key"),
        ("ssh-ed25519 AAAA", "truncated"),
        ("ssh-rsa AAAAC3NzaC1lZDI1NTE5AAAAIPhqh195s1hUNiP233K6YEO6YEsV9mpxbfNBMdshh+Gt", "says"),
        (
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIPhqh195s1hUNiP233K6YEO6YEsV9mpxbfNBMdshh+GtAA==",
            "unparsed",
        ),
    ],
)
def test_parse_public_key_refuses_malformed_line(line: str, reason: str) -> None:
    with pytest.raises(KeyFileError, match=re.escape(reason)):
        parse_public_key(line)


# --- verify: rejections -----------------------------------------------------------------------


def test_verify_returns_first_principal(
    signing_key: Ed25519PrivateKey, good_signature: bytes
) -> None:
    key = public_key_of(signing_key)
    signers = parse_allowed_signers(allowed_line(key, principals="first@example.com,second"))
    verified = verify(MESSAGE, good_signature, signers, NAMESPACE)
    assert verified.principal == "first@example.com"
    assert verified.fingerprint == key.fingerprint


def test_verify_rejects_wrong_namespace(
    signing_key: Ed25519PrivateKey, trusted_signers: list[AllowedSigner]
) -> None:
    signature = sign(MESSAGE, signing_key, "file")
    with pytest.raises(
        SignatureError, match=f"^signed for namespace 'file', expected '{NAMESPACE}'$"
    ):
        verify(MESSAGE, signature, trusted_signers, NAMESPACE)


def test_verify_rejects_untrusted_key(
    signing_key: Ed25519PrivateKey, good_signature: bytes
) -> None:
    stranger = public_key_of(Ed25519PrivateKey.generate())
    signers = parse_allowed_signers(allowed_line(stranger))
    fingerprint = public_key_of(signing_key).fingerprint
    with pytest.raises(
        SignatureError, match=f"^key {re.escape(fingerprint)} is not an allowed signer$"
    ):
        verify(MESSAGE, good_signature, signers, NAMESPACE)


def test_verify_rejects_key_listed_for_another_namespace(
    tmp_path: Path, signing_key: Ed25519PrivateKey, good_signature: bytes
) -> None:
    line = allowed_line(public_key_of(signing_key), options='namespaces="file,git"')
    with pytest.raises(
        SignatureError, match=f"is not an allowed signer for namespace '{NAMESPACE}'$"
    ):
        verify(MESSAGE, good_signature, parse_allowed_signers(line), NAMESPACE)
    assert not ssh_keygen_verifies(
        tmp_path, write_allowed_signers(tmp_path / "a", line), good_signature
    )


@pytest.mark.parametrize(
    ("window", "says"),
    [
        (
            'valid-before="20000101"',
            r"expired at 200\d-.* \(valid-before in its allowed_signers line",
        ),
        ('valid-after="29990101Z"', r"not valid before 2999-01-01T00:00:00Z \(valid-after in its"),
    ],
)
def test_verify_rejects_key_outside_its_validity_window_and_says_which_end(
    tmp_path: Path, signing_key: Ed25519PrivateKey, good_signature: bytes, window: str, says: str
) -> None:
    line = allowed_line(public_key_of(signing_key), options=window)
    with pytest.raises(SignatureError, match=says):
        verify(MESSAGE, good_signature, parse_allowed_signers(line), NAMESPACE)
    assert not ssh_keygen_verifies(
        tmp_path, write_allowed_signers(tmp_path / "a", line), good_signature
    )


def test_verify_accepts_key_inside_its_validity_window(
    signing_key: Ed25519PrivateKey, good_signature: bytes
) -> None:
    line = allowed_line(
        public_key_of(signing_key), options='valid-after="20000101",valid-before="299901011200Z"'
    )
    assert verify(MESSAGE, good_signature, parse_allowed_signers(line), NAMESPACE)


def test_verify_rejects_tampered_message(
    signing_key: Ed25519PrivateKey, good_signature: bytes, trusted_signers: list[AllowedSigner]
) -> None:
    fingerprint = public_key_of(signing_key).fingerprint
    with pytest.raises(
        SignatureError,
        match=f"^signature does not match the data \\(signed by {re.escape(fingerprint)}\\)$",
    ):
        verify(MESSAGE.replace(b"2024", b"2025"), good_signature, trusted_signers, NAMESPACE)


def test_verify_rejects_tampered_signature_byte(
    good_signature: bytes, trusted_signers: list[AllowedSigner]
) -> None:
    blob = bytearray(dearmor(good_signature))
    blob[-1] ^= 0x01  # the last byte of the raw Ed25519 signature
    with pytest.raises(SignatureError, match=r"^signature does not match the data"):
        verify(MESSAGE, armor(bytes(blob)), trusted_signers, NAMESPACE)


@pytest.mark.parametrize(
    ("field", "replacement", "reason"),
    [
        (b"sha512", b"sha384", "^unsupported hash algorithm 'sha384'$"),
        (b"ssh-ed25519", b"ssh-ed25518", "^unsupported key type 'ssh-ed25518'$"),
        (b"SSHSIG\x00\x00\x00\x01", b"SSHSIG\x00\x00\x00\x02", "unsupported version 2$"),
        (b"SSHSIG", b"SSHSIH", "^not an SSH signature: bad magic$"),
    ],
)
def test_verify_rejects_unsupported_fields(
    good_signature: bytes,
    trusted_signers: list[AllowedSigner],
    field: bytes,
    replacement: bytes,
    reason: str,
) -> None:
    blob = dearmor(good_signature).replace(field, replacement, 1)
    with pytest.raises(SignatureError, match=reason):
        verify(MESSAGE, armor(blob), trusted_signers, NAMESPACE)


def test_verify_rejects_ed25519_key_with_rsa_signature_algorithm(
    good_signature: bytes, trusted_signers: list[AllowedSigner]
) -> None:
    blob = dearmor(good_signature)
    signature_field = blob.rindex(b"\x00\x00\x00\x0bssh-ed25519")
    blob = blob[:signature_field] + blob[signature_field:].replace(b"ssh-ed25519", b"rsa-sha2-51")
    with pytest.raises(SignatureError, match=r"^unsupported signature algorithm 'rsa-sha2-51'"):
        verify(MESSAGE, armor(blob), trusted_signers, NAMESPACE)


@pytest.mark.parametrize(
    "armored",
    [
        b"",
        b"not a signature",
        b"-----BEGIN SSH SIGNATURE-----\n-----END SSH SIGNATURE-----\n",
        b"-----BEGIN SSH SIGNATURE-----\nU1NIU0lH!!!!\n-----END SSH SIGNATURE-----\n",
        b"-----BEGIN SSH SIGNATURE-----\nU1NIU0lH\n",
        b"\xff\xfe-----BEGIN SSH SIGNATURE-----\nU1NIU0lH\n-----END SSH SIGNATURE-----\n",
        seeded_random(2).randbytes(500),
    ],
)
def test_verify_rejects_garbage(armored: bytes, trusted_signers: list[AllowedSigner]) -> None:
    with pytest.raises(SignatureError, match=r"^not an SSH signature: "):
        verify(MESSAGE, armored, trusted_signers, NAMESPACE)


def test_verify_accepts_crlf_armor(
    good_signature: bytes, trusted_signers: list[AllowedSigner]
) -> None:
    assert verify(MESSAGE, good_signature.replace(b"\n", b"\r\n"), trusted_signers, NAMESPACE)


def test_verify_rejects_armor_truncated_at_every_length(
    good_signature: bytes, trusted_signers: list[AllowedSigner]
) -> None:
    # Dropping only the final newline still leaves a complete signature (ssh-keygen agrees).
    for length in range(len(good_signature) - 1):
        with pytest.raises(SignatureError):
            verify(MESSAGE, good_signature[:length], trusted_signers, NAMESPACE)


def test_verify_rejects_blob_truncated_at_every_length(
    signed_by_each_key_type: tuple[bytes, list[AllowedSigner]],
) -> None:
    signature, signers = signed_by_each_key_type
    blob = dearmor(signature)
    for length in range(len(blob)):
        with pytest.raises(SignatureError, match=r"^not an SSH signature: "):
            verify(MESSAGE, armor(blob[:length]), signers, NAMESPACE)


def test_verify_rejects_blob_with_trailing_bytes(
    good_signature: bytes, trusted_signers: list[AllowedSigner]
) -> None:
    with pytest.raises(SignatureError, match="1 unexpected trailing bytes"):
        verify(MESSAGE, armor(dearmor(good_signature) + b"\0"), trusted_signers, NAMESPACE)


def test_verify_rejects_every_single_bit_flip(
    signed_by_each_key_type: tuple[bytes, list[AllowedSigner]],
) -> None:
    signature, signers = signed_by_each_key_type
    blob = dearmor(signature)
    for index in range(len(blob)):
        for bit in (0x01, 0x80):
            flipped = bytearray(blob)
            flipped[index] ^= bit
            with pytest.raises(SignatureError):
                verify(MESSAGE, armor(bytes(flipped)), signers, NAMESPACE)


def test_verify_raises_only_signature_error_on_random_blobs(
    signed_by_each_key_type: tuple[bytes, list[AllowedSigner]],
) -> None:
    signature, signers = signed_by_each_key_type
    rng = seeded_random(3)
    blob = dearmor(signature)
    for _ in range(1000):
        start = rng.randrange(len(blob))
        mutated = blob[:start] + rng.randbytes(rng.randrange(0, 80)) + blob[start + 1 :]
        if mutated != blob:
            with pytest.raises(SignatureError):
                verify(MESSAGE, armor(mutated), signers, NAMESPACE)
        with pytest.raises(SignatureError):
            verify(MESSAGE, rng.randbytes(rng.randrange(0, 200)), signers, NAMESPACE)


def test_sign_and_verify_refuse_empty_namespace(
    signing_key: Ed25519PrivateKey, good_signature: bytes, trusted_signers: list[AllowedSigner]
) -> None:
    with pytest.raises(ValueError, match="namespace must not be empty"):
        sign(MESSAGE, signing_key, "")
    with pytest.raises(ValueError, match="namespace must not be empty"):
        verify(MESSAGE, good_signature, trusted_signers, "")


# --- allowed_signers --------------------------------------------------------------------------


def test_parse_allowed_signers_reads_comments_principals_and_options(
    signing_key: Ed25519PrivateKey,
) -> None:
    key = public_key_of(signing_key, comment="laptop key")
    text = "\n".join(
        [
            "# workstation signers",
            "",
            "   # indented comment",
            f"a@example.com,b@example.com {key.openssh_line()}",
            f'ops@* NAMESPACES="appliance-*,file",valid-after="20240101" {key.openssh_line()}',
            f'"quoted principal" namespaces="a\\"b" {key.openssh_line()}',
        ]
    )
    first, second, third = parse_allowed_signers(text)

    assert first.principals == ("a@example.com", "b@example.com")
    assert first.key == key
    assert first.namespaces is None
    assert second.principals == ("ops@*",)
    assert second.namespaces == ("appliance-*", "file")
    assert second.valid_after is not None
    assert second.valid_after.year == 2024
    assert third.principals == ("quoted principal",)
    assert third.namespaces == ('a"b',)


def test_allowed_signer_namespace_patterns(signing_key: Ed25519PrivateKey) -> None:
    line = allowed_line(public_key_of(signing_key), options='namespaces="appliance-*,!*-test,f?le"')
    (signer,) = parse_allowed_signers(line)
    assert signer.accepts_namespace(NAMESPACE)
    assert signer.accepts_namespace("file")
    assert not signer.accepts_namespace("appliance-test")
    assert not signer.accepts_namespace("fiile")


PRINCIPAL_PATTERNS = "*@example.com,!bad@example.com,ops?@corp"
IDENTITIES = ["a@example.com", "bad@example.com", "ops1@corp", "ops12@corp", "A@EXAMPLE.COM", "x"]


def test_matches_principal_agrees_with_ssh_keygen_match_principals(
    tmp_path: Path, signing_key: Ed25519PrivateKey
) -> None:
    line = allowed_line(public_key_of(signing_key), principals=PRINCIPAL_PATTERNS)
    allowed = write_allowed_signers(tmp_path / "allowed", line)
    (signer,) = parse_allowed_signers(line)
    for identity in IDENTITIES:
        result = ssh_keygen("-Y", "match-principals", "-I", identity, "-f", allowed, check=False)
        assert signer.matches_principal(identity) == (result.returncode == 0), identity


@pytest.mark.parametrize(
    "options",
    [
        'namespaces="appliance-*"',
        f'namespaces="file,{NAMESPACE}"',
        f'namespaces="*,!{NAMESPACE}"',
        'namespaces="file"',
        'namespaces="appliance-result-pac?"',
    ],
)
def test_namespace_options_agree_with_ssh_keygen_verify(
    tmp_path: Path, signing_key: Ed25519PrivateKey, good_signature: bytes, options: str
) -> None:
    line = allowed_line(public_key_of(signing_key), options=options)
    try:
        verify(MESSAGE, good_signature, parse_allowed_signers(line), NAMESPACE)
    except SignatureError:
        accepted = False
    else:
        accepted = True
    allowed = write_allowed_signers(tmp_path / "allowed", line)
    assert accepted == ssh_keygen_verifies(tmp_path, allowed, good_signature)


def test_parse_allowed_signers_refuses_cert_authority(signing_key: Ed25519PrivateKey) -> None:
    text = "# CA\n\n" + allowed_line(public_key_of(signing_key), "*@example.com", "cert-authority")
    with pytest.raises(
        KeyFileError, match=r"^allowed_signers line 3: cert-authority is not supported$"
    ):
        parse_allowed_signers(text)


@pytest.mark.parametrize(
    ("bad_line", "reason"),
    [
        ("someone", "expected 'principals [options] key-type base64-key'"),
        ('"unterminated KEY', "expected 'principals [options] key-type base64-key'"),
        ("someone namespaces=file KEY", "values must be in double quotes"),
        ('someone namespaces="file KEY', "unbalanced quotes"),
        ('someone namespaces="" KEY', "empty pattern"),
        ('someone foo="bar" KEY', "unknown option 'foo'"),
        ('someone namespaces="a",namespaces="b" KEY', "given twice"),
        ("someone namespaces KEY", "needs a value in double quotes"),
        ('someone valid-after="2024" KEY', "is not YYYYMMDD"),
        ('someone valid-before="20241301" KEY', "is not a valid date"),
        ("someone ssh-ed25519 AAAA!", "malformed ssh-ed25519 public key"),
        ('someone namespaces="file"', "options must be followed by a key"),
    ],
)
def test_parse_allowed_signers_names_line_of_malformed_entry(
    signing_key: Ed25519PrivateKey, bad_line: str, reason: str
) -> None:
    key_line = public_key_of(signing_key).openssh_line()
    text = f"# signers\n{PRINCIPAL} {key_line}\n{bad_line.replace('KEY', key_line)}\n"
    with pytest.raises(KeyFileError, match=f"^team_signers line 3: .*{re.escape(reason)}"):
        parse_allowed_signers(text, source="team_signers")


def test_parse_allowed_signers_refuses_empty_principal(signing_key: Ed25519PrivateKey) -> None:
    line = allowed_line(public_key_of(signing_key), principals="a,,b")
    with pytest.raises(KeyFileError, match="line 1: empty principal"):
        parse_allowed_signers(line)


def test_load_allowed_signers_missing_file(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError, match="does not exist"):
        load_allowed_signers(tmp_path / "allowed_signers")


def test_load_allowed_signers_without_keys(tmp_path: Path) -> None:
    path = write_allowed_signers(tmp_path / "allowed_signers", "# nobody yet", "")
    with pytest.raises(KeyFileError, match="lists no keys"):
        load_allowed_signers(path)


def test_load_allowed_signers_names_the_file_in_errors(tmp_path: Path) -> None:
    path = write_allowed_signers(tmp_path / "allowed_signers", "someone")
    with pytest.raises(KeyFileError, match=f"^{re.escape(str(path))} line 1: "):
        load_allowed_signers(path)


def test_load_allowed_signers_reads_ssh_keygen_public_key(
    tmp_path: Path, ssh_keygen_ed25519_key: Path
) -> None:
    pub = ssh_keygen_ed25519_key.with_name("id_ed25519.pub").read_text().strip()
    path = write_allowed_signers(tmp_path / "allowed_signers", f"{PRINCIPAL} {pub}")
    (signer,) = load_allowed_signers(path)
    signature = ssh_keygen_sign(ssh_keygen_ed25519_key, MESSAGE)
    assert verify(MESSAGE, signature, [signer], NAMESPACE).principal == PRINCIPAL
