"""Secrets at rest, signatures and token hashing, all keyed from ``HILO_SECRET_KEY``."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from functools import lru_cache
from typing import Any

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from hilo.settings import get_settings


def _derive(purpose: bytes, length: int = 32) -> bytes:
    key = get_settings().effective_secret_key.encode()
    return HKDF(algorithm=SHA256(), length=length, salt=b"hilo", info=purpose).derive(key)


@lru_cache(maxsize=1)
def _fernet() -> Fernet:
    return Fernet(base64.urlsafe_b64encode(_derive(b"secrets-at-rest")))


def encrypt_json(value: dict[str, Any]) -> str:
    """Encrypt a dict of credentials for storage."""
    return _fernet().encrypt(json.dumps(value, sort_keys=True).encode()).decode()


def decrypt_json(token: str) -> dict[str, Any]:
    """Decrypt credentials stored by :func:`encrypt_json`."""
    if not token:
        return {}
    try:
        data: dict[str, Any] = json.loads(_fernet().decrypt(token.encode()))
    except InvalidToken as exc:  # a changed HILO_SECRET_KEY, most often
        raise RuntimeError("cannot decrypt channel secrets: was HILO_SECRET_KEY changed?") from exc
    return data


@lru_cache(maxsize=1)
def signing_key() -> Ed25519PrivateKey:
    """The workspace-independent Ed25519 key that signs audit checkpoints."""
    return Ed25519PrivateKey.from_private_bytes(_derive(b"audit-checkpoints"))


def internal_hmac(purpose: str, message: str) -> str:
    """An HMAC over ``message`` with a key derived for ``purpose`` (tickets, reply tokens)."""
    return hmac.new(_derive(purpose.encode()), message.encode(), hashlib.sha256).hexdigest()


def hmac_sha256_hex(secret: str, message: bytes) -> str:
    """Hex HMAC-SHA256 of ``message``."""
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def constant_time_equal(a: str, b: str) -> bool:
    """Compare two strings without leaking where they differ."""
    return hmac.compare_digest(a.encode(), b.encode())


def new_secret(nbytes: int = 32) -> str:
    """A random URL-safe secret."""
    return secrets.token_urlsafe(nbytes)


def hash_token(token: str) -> str:
    """SHA-256 of a high-entropy API token (argon2 is for low-entropy passwords)."""
    return hashlib.sha256(token.encode()).hexdigest()
