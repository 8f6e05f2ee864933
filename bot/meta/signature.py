"""Meta's X-Hub-Signature-256: HMAC-SHA256 of the raw body with the app secret."""

from __future__ import annotations

import hashlib
import hmac

PREFIX = "sha256="


def sign(app_secret: str, body: bytes) -> str:
    """The header value Meta would send for body."""
    return PREFIX + hmac.new(app_secret.encode(), body, hashlib.sha256).hexdigest()


def verify(app_secret: str, body: bytes, header: str | None) -> bool:
    """True when header is a valid signature of body; compared in constant time."""
    if not header or not header.startswith(PREFIX) or not app_secret:
        return False
    if not header.isascii():  # compare_digest refuses non-ASCII text: such a header is simply wrong
        return False
    return hmac.compare_digest(sign(app_secret, body), header.strip())
