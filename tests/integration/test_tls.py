"""HTTPS on the real server: curl trusts it with --cacert, plain HTTP is refused, HSTS is sent;
and every bad certificate or key is refused in one line before the server listens."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from appliance.access.site_tls import load_site_certificate, make_self_signed
from appliance.errors import ConfigError
from tests.conftest import Signer, run
from tests.integration.live_server import ADMIN_TOKEN, LiveServer, free_port, live_server
from tests.integration.test_server_api import store_with_good_pack


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("tls")
    site = make_self_signed(folder / "tls.crt", folder / "tls.key", ["localhost"], ["127.0.0.1"])
    return site.cert, site.key


@pytest.fixture(scope="module")
def https_server(
    tmp_path_factory: pytest.TempPathFactory,
    good_pack: Path,
    signer: Signer,
    certificate: tuple[Path, Path],
) -> Iterator[LiveServer]:
    data_dir = store_with_good_pack(tmp_path_factory, good_pack, signer)
    cert, key = certificate
    with live_server(
        data_dir, signer.allowed_signers, args=("--tls-cert", str(cert), "--tls-key", str(key))
    ) as started:
        yield started


def curl(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["curl", "-sS", "--max-time", "10", *argv],
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )


def test_curl_trusts_the_certificate_it_is_given_and_nothing_else(
    https_server: LiveServer, certificate: tuple[Path, Path]
) -> None:
    cert, _ = certificate
    port = https_server.port
    good = curl("--cacert", str(cert), "-D", "-", f"https://localhost:{port}/api/v1/data/current")
    assert good.returncode == 0, good.stderr
    assert "HTTP/1.1 200" in good.stdout
    assert "strict-transport-security: max-age=31536000" in good.stdout.lower()
    by_address = curl("--cacert", str(cert), f"https://127.0.0.1:{port}/health/startup")
    assert by_address.returncode == 0, by_address.stderr
    untrusted = curl(f"https://localhost:{port}/health")
    assert untrusted.returncode == 60, untrusted.stderr  # the system's CAs do not know it
    plain = curl(f"http://127.0.0.1:{port}/health")
    assert plain.returncode != 0  # refused: a plain-HTTP client fails at the handshake
    admin = curl("--cacert", str(cert), "-X", "POST", "-H", f"Authorization: Bearer {ADMIN_TOKEN}",
                 f"https://localhost:{port}/api/v1/data/refresh")  # fmt: skip
    assert admin.returncode == 0 and '"version":"v0001"' in admin.stdout, admin.stdout
    still = curl("--cacert", str(cert), f"https://localhost:{port}/health/startup")
    assert still.returncode == 0  # the plain-HTTP attempt cost nothing


def test_the_healthcheck_asks_over_https_pinned_to_the_certificate(
    https_server: LiveServer, certificate: tuple[Path, Path], tmp_path: Path
) -> None:
    cert, _ = certificate
    env = {"APPLIANCE_PORT": str(https_server.port), "APPLIANCE_TLS_CERT": str(cert)}
    python = str(Path(run("appliance", "--version").args[0]).with_name("python"))
    good = subprocess.run([python, "-m", "appliance.healthcheck"], env=env, capture_output=True,
                          text=True, check=False)  # fmt: skip
    assert good.returncode == 0, good.stdout
    assert good.stdout.startswith("https://127.0.0.1:")
    other = make_self_signed(tmp_path / "o.crt", tmp_path / "o.key", ["localhost"], ["127.0.0.1"])
    pinned_elsewhere = subprocess.run(
        [python, "-m", "appliance.healthcheck"],
        env=env | {"APPLIANCE_TLS_CERT": str(other.cert)},
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert pinned_elsewhere.returncode == 1
    assert "CERTIFICATE_VERIFY_FAILED" in pinned_elsewhere.stdout


def pem_key(key: object, pkcs8: bool = True) -> bytes:
    form = (
        serialization.PrivateFormat.PKCS8
        if pkcs8
        else serialization.PrivateFormat.TraditionalOpenSSL
    )
    return key.private_bytes(  # type: ignore[attr-defined, no-any-return]
        serialization.Encoding.PEM, form, serialization.NoEncryption()
    )


@pytest.mark.parametrize(
    ("spoil", "words"),
    [
        ("cert-not-pem", "is not a PEM certificate"),
        ("cert-missing", "does not exist"),
        ("key-not-pem", "is not a PEM private key"),
        ("key-other", "is not the key of the certificate"),
        ("key-traditional", "is not in PKCS#8 form, which Granian needs: openssl pkcs8"),
        ("key-encrypted", "is encrypted"),
        ("key-readable", "can be read or changed by other users (mode 644); chmod 640"),
        ("cert-expired", "expired on"),
        ("cert-future", "is not valid before"),
        ("only-cert", "APPLIANCE_TLS_CERT is set but APPLIANCE_TLS_KEY is not"),
        ("cert-folder", "is a folder, not a file"),
    ],
)
def test_a_bad_certificate_or_key_is_refused_in_one_line_before_listening(
    tmp_path: Path, good_pack: Path, signer: Signer, spoil: str, words: str
) -> None:
    cert, key = tmp_path / "tls.crt", tmp_path / "tls.key"
    now = datetime.now(UTC)
    when = {"cert-expired": now - timedelta(days=900), "cert-future": now + timedelta(days=2)}
    make_self_signed(cert, key, ["localhost"], ["127.0.0.1"], days=30, now=when.get(spoil, now))
    if spoil == "cert-not-pem":
        cert.write_text("not a certificate\n")
    elif spoil == "cert-missing":
        cert.unlink()
    elif spoil == "cert-folder":
        cert.unlink()
        cert.mkdir()
    elif spoil == "key-not-pem":
        key.write_text("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
    elif spoil == "key-other":
        key.write_bytes(pem_key(ec.generate_private_key(ec.SECP256R1())))
    elif spoil == "key-traditional":
        key.write_bytes(pem_key(ec.generate_private_key(ec.SECP256R1()), pkcs8=False))
        cert.write_bytes(cert.read_bytes())  # mismatched too, but the form is said first
    elif spoil == "key-encrypted":
        private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        key.write_bytes(private.private_bytes(serialization.Encoding.PEM,
                        serialization.PrivateFormat.PKCS8,
                        serialization.BestAvailableEncryption(b"pw")))  # fmt: skip
    elif spoil == "key-readable":
        key.chmod(0o644)
    data_dir = store_with_good_pack_at(tmp_path / "data", good_pack, signer)
    args = ["--tls-cert", str(cert)] if spoil == "only-cert" else [
        "--tls-cert", str(cert), "--tls-key", str(key)]  # fmt: skip
    served = run("appliance", "serve", "--data-dir", data_dir, "--signers",
                 signer.allowed_signers, "--port", str(free_port()), *args, timeout=60)  # fmt: skip
    assert served.returncode == 2, served.stderr
    lines = served.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and words in lines[0], lines
    assert "Traceback" not in served.stderr
    if spoil != "only-cert":
        shown = run("appliance", "tls", "show", cert, key)
        assert shown.returncode == 2 and words in shown.stderr, shown.stderr


def store_with_good_pack_at(data_dir: Path, good_pack: Path, signer: Signer) -> Path:
    run("appliance", "import", good_pack, "--data-dir", data_dir, "--signers",
        signer.allowed_signers, check=True)  # fmt: skip
    return data_dir


def test_a_self_signed_certificate_is_for_the_names_and_addresses_given(tmp_path: Path) -> None:
    made = run("appliance", "tls", "self-signed", "--cert", tmp_path / "c.pem", "--key",
               tmp_path / "k.pem", "--name", "node1.site.example", "--address", "10.0.0.5",
               "--address", "127.0.0.1")  # fmt: skip
    assert made.returncode == 0, made.stderr
    assert "fingerprint  SHA256:" in made.stdout
    site = load_site_certificate(tmp_path / "c.pem", tmp_path / "k.pem")
    assert site.names == ("node1.site.example", "10.0.0.5", "127.0.0.1")
    assert (tmp_path / "k.pem").stat().st_mode & 0o777 == 0o600
    openssl = subprocess.run(
        ["openssl", "x509", "-in", str(tmp_path / "c.pem"), "-noout", "-fingerprint", "-sha256"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if openssl.returncode == 0:  # the fingerprint is the one stock tools show
        assert openssl.stdout.strip().split("=", 1)[1] == site.fingerprint.removeprefix("SHA256:")
    for bad, words in ((["--address", "10.0.0.300"], "--address"), ([], "at least one")):
        refused = run("appliance", "tls", "self-signed", "--cert", tmp_path / "x.pem", "--key",
                      tmp_path / "y.pem", *bad)  # fmt: skip
        assert refused.returncode == 2 and words in refused.stderr, refused.stderr
        assert not (tmp_path / "x.pem").exists()


def test_load_refuses_what_make_never_writes(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_site_certificate(tmp_path / "none.crt", tmp_path / "none.key")
