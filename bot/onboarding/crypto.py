"""Access tokens of onboarded numbers, encrypted at rest with Fernet (AES-128-CBC + HMAC-SHA256).

The key comes from `meta.token_key` (in app.yaml as `${WABRIDGE_TOKEN_KEY}`): several comma-separated keys
let an operator rotate: the first encrypts, every one of them decrypts.
"""

from __future__ import annotations

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from bot.core.config import Settings


class TokenKeyMissing(Exception):
    """meta.token_key is not set, so no token can be stored or read."""


class TokenUnreadable(Exception):
    """A stored token does not decrypt with any configured key (the key changed or was lost)."""


class TokenBox:
    """Encrypts and decrypts access tokens with the configured Fernet key(s)."""

    def __init__(self, keys: str) -> None:
        parts = [k.strip() for k in keys.split(",") if k.strip()]
        if not parts:
            raise TokenKeyMissing("meta.token_key is not set: export WABRIDGE_TOKEN_KEY")
        self._fernet = MultiFernet([Fernet(k.encode("ascii")) for k in parts])

    def seal(self, token: str) -> str:
        """The ciphertext (ASCII) to store for token."""
        return self._fernet.encrypt(token.encode("utf-8")).decode("ascii")

    def open(self, ciphertext: str) -> str:
        """The token stored as ciphertext; TokenUnreadable if no configured key fits."""
        try:
            return self._fernet.decrypt(ciphertext.encode("ascii")).decode("utf-8")
        except (InvalidToken, ValueError) as exc:
            raise TokenUnreadable("stored token does not decrypt with meta.token_key") from exc


def token_box(settings: Settings) -> TokenBox:
    """The box for this configuration; TokenKeyMissing when meta.token_key is empty."""
    return TokenBox(settings.meta.token_key)


def new_key() -> str:
    """A fresh key for meta.token_key."""
    return Fernet.generate_key().decode("ascii")
