"""Salted hashes of a customer's ids: what is kept of a person after an erasure (audit and opt-out).

HMAC-SHA256 keyed by `privacy.salt` (or the first `meta.token_key`), so the hash of a phone number cannot be
reversed by hashing every number: whoever lacks the salt cannot test a guess.
"""

from __future__ import annotations

import hashlib
import hmac

from bot.core.config import ConfigError, Settings

# The kinds of id a customer has (storage.identities.KINDS); a bare wa_id is a phone or a user id.
PHONE, USER_ID, PARENT_USER_ID, USERNAME = "phone", "user_id", "parent_user_id", "username"

SALT_MISSING = ("not set; set privacy.salt to a long random secret (never change it afterwards), "
                "or meta.token_key, whose first key is used")


def salt_of(settings: Settings) -> bytes:
    """The hashing salt; ConfigError naming privacy.salt when neither it nor meta.token_key is set."""
    salt = settings.privacy.salt.strip() or next(
        (k.strip() for k in settings.meta.token_key.split(",") if k.strip()), "")
    if not salt:
        raise ConfigError("privacy.salt", SALT_MISSING)
    return salt.encode()


def normalized(kind: str, value: str) -> str:
    """The form an id is hashed in: digits of a phone, a username without @ in lower case, others as given."""
    value = value.strip()
    if kind == PHONE:
        return "".join(ch for ch in value if ch.isdigit())
    if kind == USERNAME:
        return value.lstrip("@").lower()
    return value


def identity_hash(salt: bytes, kind: str, value: str) -> str:
    """The hex HMAC of one id (its kind is part of it: a phone and a user id never collide)."""
    message = f"{kind}:{normalized(kind, value)}".encode()
    return hmac.new(salt, message, hashlib.sha256).hexdigest()


def wa_id_kind(wa_id: str) -> str:
    """Phone numbers hold no letters; business-scoped user ids always do."""
    return USER_ID if any(ch.isalpha() for ch in wa_id) else PHONE


def wa_id_hash(salt: bytes, wa_id: str) -> str:
    """The hash of a bare wa_id as campaign audiences and contacts hold it."""
    return identity_hash(salt, wa_id_kind(wa_id), wa_id)


def optional_salt(settings: Settings) -> bytes | None:
    """The salt when one is set; None where erasures cannot have happened without one."""
    try:
        return salt_of(settings)
    except ConfigError:
        return None
