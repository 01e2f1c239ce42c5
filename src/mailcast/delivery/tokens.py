"""Tracking tokens: unguessable, tamper-proof, and revealing no ids.

A token is one AES block (the delivery id, what the token is for, and a link number, under a
key derived from the secret) followed by an HMAC-SHA256 tag of that block (truncated to 128
bits). Encryption hides the id; the HMAC makes every forged or altered token invalid."""

from __future__ import annotations

import base64
import hashlib
import hmac
import struct
from dataclasses import dataclass
from enum import IntEnum

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

_MAGIC = b"mc1"
_TAG = 16
_LINK = struct.Struct(">H")


class Purpose(IntEnum):
    OPEN = 1
    CLICK = 2
    UNSUBSCRIBE = 3
    BOUNCE = 4


@dataclass(frozen=True)
class Claim:
    delivery_id: int
    purpose: Purpose
    link: int = 0


class InvalidToken(Exception):
    pass


class TokenCodec:
    def __init__(self, secret: bytes) -> None:
        if len(secret) < 16:
            raise ValueError("the secret key must have at least 128 bits")
        self._enc_key = hmac.new(secret, b"mailcast token encryption", hashlib.sha256).digest()
        self._mac_key = hmac.new(secret, b"mailcast token mac", hashlib.sha256).digest()
        cipher = Cipher(algorithms.AES(self._enc_key), modes.ECB())
        # ECB keeps no state between blocks, so one context serves every token (creating a context
        # per token cost more than the encryption itself: 44 tokens a message).
        self._encryptor = cipher.encryptor()
        self._decryptor = cipher.decryptor()

    def encode(self, delivery_id: int, purpose: Purpose, link: int = 0) -> str:
        return self.encode_many(delivery_id, purpose, [link])[0]

    def encode_many(self, delivery_id: int, purpose: Purpose, links) -> list[str]:
        """One token per link number: one AES call for all blocks, a one-shot HMAC per token (a
        message carries a token for every tracked link)."""
        # One block each, unique per (delivery, purpose, link): a single-block ECB use is a PRP.
        head = _MAGIC + struct.pack(">QB", delivery_id, purpose)
        blocks = b"".join(head + _LINK.pack(link) + b"\x00\x00" for link in links)
        sealed = self._encryptor.update(blocks)
        key, digest, encode = self._mac_key, hmac.digest, base64.urlsafe_b64encode
        tokens = []
        for i in range(0, len(sealed), 16):
            block = sealed[i : i + 16]
            tokens.append(encode(block + digest(key, block, "sha256")[:_TAG]).decode()[:43])
        return tokens

    def decode(self, token: str, purpose: Purpose | None = None) -> Claim:
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        except (ValueError, TypeError):
            raise InvalidToken from None
        if len(raw) != 16 + _TAG or base64.urlsafe_b64encode(raw).decode().rstrip("=") != token:
            # Only the canonical spelling: base64 decoding ignores the last character's spare
            # bits, so without this two different strings would be the same token.
            raise InvalidToken
        sealed, tag = raw[:16], raw[16:]
        if not hmac.compare_digest(tag, hmac.digest(self._mac_key, sealed, "sha256")[:_TAG]):
            raise InvalidToken
        block = self._decryptor.update(sealed)
        if block[:3] != _MAGIC or block[14:] != b"\x00\x00":
            raise InvalidToken
        delivery_id, kind, link = struct.unpack(">QBH", block[3:14])
        try:
            claim = Claim(delivery_id, Purpose(kind), link)
        except ValueError:
            raise InvalidToken from None
        if purpose is not None and claim.purpose is not purpose:
            raise InvalidToken
        return claim
