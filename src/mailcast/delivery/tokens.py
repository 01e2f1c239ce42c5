"""Tracking tokens: unguessable, tamper-proof, and revealing no ids.

A token is one AES block (a version mark, the delivery id, what the token is for, and a link
number, under a key derived from the secret) followed by a 128-bit tag of that block. Encryption
hides the id; the tag makes every forged or altered token invalid.

The tag is the encrypted block encrypted again under a second derived key ("mc2"): for a
message of exactly one block, a block cipher is a MAC (a pseudorandom function), and the tags of
all a message's tokens come out of one AES call (an HMAC per token was a tenth of a worker's
time: a message carries a token per link). Tokens made before that ("mc1", in mail already
sent) carry an HMAC-SHA256 tag truncated to 128 bits and stay valid: the block decrypted tells
which tag to check, and either way a token whose tag does not match is refused."""

from __future__ import annotations

import binascii
import hashlib
import hmac
import struct
from collections.abc import Sequence
from enum import IntEnum
from typing import NamedTuple

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

_MAGIC = b"mc2"
_MAGIC_HMAC = b"mc1"  # the first version, HMAC tags
_TAG = 16
_LINK = struct.Struct(">H")
_BLOCK = struct.Struct(
    ">3sQBH2s"
)  # version mark, delivery id, purpose, link number, two zero bytes
_LENGTH = 43  # 32 bytes in URL-safe base64 without padding
# The URL-safe alphabet turned into the standard one for the decoder, whose strict mode refuses any
# character outside that; "+" and "/" become "*" so it refuses them too (they are not in tokens).
_FROM_URLSAFE = bytes.maketrans(b"-_+/", b"+/**")
_TO_URLSAFE = bytes.maketrans(b"+/", b"-_")
# 43 characters carry 258 bits for 256: the last one's two spare bits must be zero, or two
# different strings would be the same token (the decoder ignores them).
_CANONICAL_LAST = frozenset("AEIMQUYcgkosw048")


class Purpose(IntEnum):
    OPEN = 1
    CLICK = 2
    UNSUBSCRIBE = 3
    BOUNCE = 4


_PURPOSES = {purpose.value: purpose for purpose in Purpose}


class Claim(NamedTuple):
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
        tag_key = hmac.new(secret, b"mailcast token tag", hashlib.sha256).digest()
        # ECB keeps no state between blocks, so one context serves every token (creating a context
        # per token cost more than the encryption itself: 44 tokens a message).
        cipher = Cipher(algorithms.AES(self._enc_key), modes.ECB())
        self._encryptor = cipher.encryptor()
        self._decryptor = cipher.decryptor()
        self._tagger = Cipher(algorithms.AES(tag_key), modes.ECB()).encryptor()

    def encode(self, delivery_id: int, purpose: Purpose, link: int = 0) -> str:
        return self.encode_many(delivery_id, purpose, [link])[0]

    def encode_many(self, delivery_id: int, purpose: Purpose, links: Sequence[int]) -> list[str]:
        """One token per link number: one AES call for all blocks, one for all their tags."""
        # One block each, unique per (delivery, purpose, link): a single-block ECB use is a PRP.
        head = _MAGIC + struct.pack(">QB", delivery_id, purpose)
        blocks = b"".join(head + _LINK.pack(link) + b"\x00\x00" for link in links)
        sealed = self._encryptor.update(blocks)
        tags = self._tagger.update(sealed)
        # All of them in one base64 call: each token's 32 bytes and a zero byte are 33, a whole
        # number of base64 groups, so each comes out as its 43 characters (their last two spare
        # bits the zero byte's) and an "A" (the rest of it), and no group spans two tokens.
        joined = b"".join(
            [sealed[i : i + 16] + tags[i : i + 16] + b"\x00" for i in range(0, len(sealed), 16)]
        )
        text = binascii.b2a_base64(joined, newline=False).translate(_TO_URLSAFE).decode()
        return [text[i : i + _LENGTH] for i in range(0, len(text), _LENGTH + 1)]

    def _tag(self, sealed: bytes, magic: bytes) -> bytes:
        if magic == _MAGIC_HMAC:
            return hmac.digest(self._mac_key, sealed, "sha256")[:_TAG]
        return self._tagger.update(sealed)

    def decode(self, token: str, purpose: Purpose | None = None) -> Claim:
        """Every pixel load and click decodes one, so this is kept short."""
        if len(token) != _LENGTH or token[-1] not in _CANONICAL_LAST:
            raise InvalidToken
        try:
            raw = binascii.a2b_base64(
                token.encode().translate(_FROM_URLSAFE) + b"=", strict_mode=True
            )
        except (binascii.Error, UnicodeEncodeError):
            raise InvalidToken from None
        sealed = raw[:16]
        magic, delivery_id, kind, link, zeros = _BLOCK.unpack(self._decryptor.update(sealed))
        if magic not in (_MAGIC, _MAGIC_HMAC) or not hmac.compare_digest(
            raw[16:], self._tag(sealed, magic)
        ):
            raise InvalidToken
        kind = _PURPOSES.get(kind)
        if kind is None or zeros != b"\x00\x00" or (purpose is not None and kind is not purpose):
            raise InvalidToken
        return Claim(delivery_id, kind, link)
