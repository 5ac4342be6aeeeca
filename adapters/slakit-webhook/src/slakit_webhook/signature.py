"""Standard Webhooks signing: secrets, message ids and ``v1`` signatures.

The signed content is ``f"{webhook_id}.{webhook_timestamp}.{body}"``; the
signature is ``v1,`` followed by the base64 HMAC-SHA256 of it, keyed with the
secret's bytes (the base64 text after ``whsec_``). Any Standard Webhooks
library verifies it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
from urllib.parse import quote

from slakit.errors import ConfigError

__all__ = ["SECRET_PREFIX", "decode_secret", "generate_secret", "sign", "webhook_id"]

SECRET_PREFIX = "whsec_"
# Printable ASCII except '%': what a header value may carry without escaping.
_ID_SAFE = "".join(chr(c) for c in range(0x21, 0x7F) if chr(c) != "%")


def decode_secret(secret: str, *, field: str = "secret") -> bytes:
    """The key bytes of a ``whsec_…`` secret (the prefix is optional, padding too).

    :raises ConfigError: when it is empty or not base64; the secret is never echoed.
    """
    if not isinstance(secret, str):
        raise ConfigError(
            f"webhook {field} must be a 'whsec_…' string, got a {type(secret).__name__}",
            field=field,
        )
    text = secret.strip()
    if text.startswith(SECRET_PREFIX):
        text = text[len(SECRET_PREFIX) :]
    try:
        key = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise ConfigError(
            f"webhook {field} is not a base64 secret (expected 'whsec_' and base64 text)",
            field=field,
        ) from None
    if not key:
        raise ConfigError(f"webhook {field} is empty", field=field)
    return key


def generate_secret(nbytes: int = 32) -> str:
    """A new random secret in the ``whsec_…`` form, for both sides to share."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(nbytes)).decode("ascii")


def webhook_id(idempotency_key: str) -> str:
    """The ``webhook-id`` for an idempotency key: the key itself when it is header-safe.

    Keys with spaces, ``%`` or non-ASCII characters are percent-encoded, so
    the same key always gives the same id.
    """
    if idempotency_key.isascii() and all(c in _ID_SAFE for c in idempotency_key):
        return idempotency_key
    return quote(idempotency_key, safe=_ID_SAFE)


def sign(key: bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` value: ``v1,`` + base64(HMAC-SHA256(key, id.timestamp.body))."""
    content = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(key, content, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")
