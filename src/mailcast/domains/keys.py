"""DKIM key pairs for sender domains."""

from __future__ import annotations

import base64

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa


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
    public_raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return private_pem, base64.b64encode(public_raw).decode()


def generate_keypair(algorithm: str) -> tuple[str, str]:
    return generate_ed25519_keypair() if algorithm == "ed25519" else generate_rsa_keypair()
