"""The onboarding keys of app.yaml: the embedded-signup configuration and the token encryption key."""

from __future__ import annotations

import pytest

from bot.core.config import ConfigError, parse_settings
from bot.onboarding.crypto import TokenBox, TokenKeyMissing, TokenUnreadable, new_key


def _raw(**meta: object) -> dict:
    return {"meta": {"app_secret": "s", "verify_token": "v", **meta},
            "slack": {"bot_token": "b", "signing_secret": "s"}}


def test_token_key_comes_from_the_environment_and_is_optional() -> None:
    key = new_key()
    raw = _raw(token_key="${WABRIDGE_TOKEN_KEY:-}", embedded_signup_config_id="${META_ES_CONFIG_ID:-}")
    assert parse_settings(raw, env={}).meta.token_key == ""
    settings = parse_settings(raw, env={"WABRIDGE_TOKEN_KEY": key, "META_ES_CONFIG_ID": "123"})
    assert (settings.meta.token_key, settings.meta.embedded_signup_config_id) == (key, "123")


def test_a_token_key_that_is_not_a_fernet_key_is_named() -> None:
    with pytest.raises(ConfigError) as err:
        parse_settings(_raw(token_key="correct horse battery staple"), env={})
    assert err.value.key == "meta.token_key" and "Fernet" in err.value.message


def test_tokens_decrypt_with_any_listed_key_and_encrypt_with_the_first() -> None:
    old, new = new_key(), new_key()
    sealed_old = TokenBox(old).seal("EAAB-1")
    rotated = TokenBox(f"{new},{old}")
    assert rotated.open(sealed_old) == "EAAB-1"
    assert TokenBox(new).open(rotated.seal("EAAB-2")) == "EAAB-2"
    with pytest.raises(TokenUnreadable):
        TokenBox(new).open(sealed_old)
    with pytest.raises(TokenKeyMissing):
        TokenBox("")
