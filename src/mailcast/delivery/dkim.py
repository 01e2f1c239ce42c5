"""DKIM signing (RFC 6376) with the `cryptography` package: rsa-sha256 and ed25519-sha256
(RFC 8463): OpenSSL signs where dkimpy's RSA is pure Python. The signatures are standard: the
tests verify every one with dkimpy.

Canonicalisation is relaxed for headers (relays may refold them) and simple for the body: the
body is written here as quoted-printable CRLF lines that relays pass through untouched, and simple
costs one hash where relaxed would rewrite every line of every message first."""

from __future__ import annotations

import base64
import hashlib
import re
from datetime import datetime

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa

_FOLD = re.compile(rb"\r\n(?=[ \t])")
_WSP = re.compile(rb"[ \t]+")

ALGORITHMS = {"rsa": b"rsa-sha256", "ed25519": b"ed25519-sha256"}


def canonical_header(line: bytes) -> bytes:
    """Relaxed header canonicalisation of one header field (name: value, without the final CRLF)."""
    name, _, value = line.partition(b":")
    value = _WSP.sub(b" ", _FOLD.sub(b"", value)).strip(b" \t\r\n")
    return name.strip(b" \t").lower() + b":" + value


def canonical_body(body: bytes) -> bytes:
    """Simple body canonicalisation: trailing empty lines removed, one CRLF at the end."""
    while body.endswith(b"\r\n\r\n"):
        body = body[:-2]
    return body if body.endswith(b"\r\n") else body + b"\r\n"


class Signer:
    """One domain's key, loaded once (per campaign), signing any number of messages."""

    def __init__(
        self, domain: str, selector: str, algorithm: str, private_key_pem: str, headers: list[bytes]
    ) -> None:
        if algorithm not in ALGORITHMS:
            raise ValueError(f"unknown DKIM algorithm {algorithm!r}")
        self.domain = domain.encode()
        self.selector = selector.encode()
        self.algorithm = algorithm
        self.headers = set(headers)
        key = serialization.load_pem_private_key(private_key_pem.encode(), password=None)
        expected = rsa.RSAPrivateKey if algorithm == "rsa" else ed25519.Ed25519PrivateKey
        if not isinstance(key, (rsa.RSAPrivateKey, ed25519.Ed25519PrivateKey)) or not isinstance(
            key, expected
        ):
            raise ValueError(f"the private key is not a {algorithm} key")
        self._key = key

    def sign(self, message: bytes, now: datetime) -> bytes:
        """The message with a DKIM-Signature header in front. `message` is CRLF throughout."""
        head, _, body = message.partition(b"\r\n\r\n")
        # Header fields in order; a folded field's continuation lines belong to it.
        fields: list[bytes] = []
        for line in head.split(b"\r\n"):
            if line[:1] in (b" ", b"\t") and fields:
                fields[-1] += b"\r\n" + line
            else:
                fields.append(line)
        signed = [(f.partition(b":")[0].strip().lower(), f) for f in fields]
        signed = [(name, f) for name, f in signed if name in self.headers]
        body_hash = base64.b64encode(hashlib.sha256(canonical_body(body)).digest())
        tags = b"; ".join(
            [
                b"v=1",
                b"a=" + ALGORITHMS[self.algorithm],
                b"c=relaxed/simple",
                b"d=" + self.domain,
                b"s=" + self.selector,
                b"t=%d" % int(now.timestamp()),
                b"h=" + b":".join(n for n, _ in signed),
                b"bh=" + body_hash,
                b"b=",
            ]
        )
        header = b"DKIM-Signature: " + tags
        data = b"".join(canonical_header(f) + b"\r\n" for _, f in signed) + canonical_header(header)
        if isinstance(self._key, rsa.RSAPrivateKey):
            signature = self._key.sign(data, padding.PKCS1v15(), hashes.SHA256())
        else:  # RFC 8463: Ed25519 over the SHA-256 of the canonicalised data
            signature = self._key.sign(hashlib.sha256(data).digest())
        return header + base64.b64encode(signature) + b"\r\n" + message
