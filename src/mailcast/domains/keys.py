"""DKIM key pairs for sender domains."""

from __future__ import annotations

import base64
import functools
from collections.abc import Sequence

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from cryptography.hazmat.primitives.kdf.hkdf import HKDF


def generate_rsa_keypair(bits: int = 2048) -> tuple[str, str]:
    """(private key PEM, public key as the base64 DER that goes into the DKIM TXT record)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    private_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,  # PKCS#1, what DKIM signers expect
        serialization.NoEncryption(),
    ).decode()
    public_der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private_pem, base64.b64encode(public_der).decode()


def generate_ed25519_keypair() -> tuple[str, str]:
    """(private key PEM, the raw 32-byte public key in base64, as RFC 8463 publishes it)."""
    key = ed25519.Ed25519PrivateKey.generate()
    private_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    public_raw = key.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    return private_pem, base64.b64encode(public_raw).decode()


def generate_keypair(algorithm: str) -> tuple[str, str]:
    return generate_ed25519_keypair() if algorithm == "ed25519" else generate_rsa_keypair()


# How a sealed private key starts; a key stored before sealing starts "-----BEGIN".
SEALED = "fernet:"


class KeyUnreadable(Exception):
    """A sealed private key that the secret key (and any previous one given) cannot open."""


class KeySealer:
    """Private keys at rest: Fernet (AES-128-CBC with HMAC-SHA256) under a key derived from the
    secret key (HKDF-SHA256), so a copy of the database alone does not hold a usable key. Opens
    keys sealed under `previous` secret keys too (for `reseal` after the secret key changed)."""

    def __init__(self, secret: bytes, previous: Sequence[bytes] = ()) -> None:
        self._fernet = MultiFernet([Fernet(_fernet_key(key)) for key in (secret, *previous)])

    def seal(self, pem: str) -> str:
        return SEALED + self._fernet.encrypt(pem.encode()).decode()

    def open(self, stored: str) -> str:
        if not stored.startswith(SEALED):
            # Stored before keys were sealed; `domains.service.seal_stored_keys` seals it.
            return stored
        try:
            return self._fernet.decrypt(stored[len(SEALED) :].encode()).decode()
        except InvalidToken:
            raise KeyUnreadable(
                "a DKIM private key cannot be opened with this secret key: was MAILCAST_SECRET_KEY "
                "changed? "
                "Run `mailcast domains reseal-keys` with the previous one (docs/reliability.md)"
            ) from None

    def reseal(self, stored: str) -> str:
        """`stored` sealed under the current secret key (opened with any of the keys given)."""
        return self.seal(self.open(stored))


@functools.lru_cache(maxsize=8)
def _fernet_key(secret: bytes) -> bytes:
    derived = HKDF(
        algorithm=hashes.SHA256(), length=32, salt=None, info=b"mailcast dkim private keys"
    ).derive(secret)
    return base64.urlsafe_b64encode(derived)


def sealer(secret: bytes) -> KeySealer:
    return KeySealer(secret)
