"""The key of keyed seals, and the HMAC that binds a chain hash to it.

A keyed seal stores ``HMAC-SHA256(key, chain_hash)`` beside the link (``audit.seal_log``
``mac``). The HMAC is computed here, in the client: the database never sees the key, so
a superuser who rewrites the trail and recomputes every hash of the chain still cannot
make the stored HMACs match (:func:`~hyper_audit_alembic.verify` with the key fails).
"""

from __future__ import annotations

import hashlib
import hmac

#: The shortest key accepted: 16 bytes (128 bits); 32 random bytes are better
#: (``head -c 32 /dev/urandom > seal.key``).
MIN_KEY_BYTES = 16


def check_key(key: object, what: str) -> bytes:
    """The key as bytes, refused (one line) unless it is bytes of at least 16."""
    if isinstance(key, (bytearray, memoryview)):
        key = bytes(key)
    if not isinstance(key, bytes):
        raise TypeError(
            f"{what}: key must be bytes (e.g. open('seal.key', 'rb').read()), got "
            f"{type(key).__name__}"
        )
    if len(key) < MIN_KEY_BYTES:
        raise ValueError(
            f"{what}: the key holds {len(key)} byte(s), a key needs at least {MIN_KEY_BYTES} "
            "(e.g. head -c 32 /dev/urandom > seal.key)"
        )
    return key


def seal_mac(key: bytes, chain_hash: bytes) -> bytes:
    """``HMAC-SHA256(key, chain_hash)``: what a keyed link stores as its ``mac``."""
    return hmac.new(key, chain_hash, hashlib.sha256).digest()


def mac_matches(key: bytes, chain_hash: bytes, mac: bytes) -> bool:
    """Whether ``mac`` is the HMAC of ``chain_hash`` under ``key`` (in constant time)."""
    return hmac.compare_digest(seal_mac(key, chain_hash), mac)
