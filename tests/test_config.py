from pathlib import Path

import pytest

from bot.cli.entry import main
from bot.core.config import ConfigError, interpolate, load_settings, parse_settings

ROOT = Path(__file__).resolve().parents[1]
ENV = {"META_APP_SECRET": "s", "META_VERIFY_TOKEN": "v", "SLACK_BOT_TOKEN": "xoxb-1",
       "SLACK_SIGNING_SECRET": "sig", "WA_TOKEN_LUCKNOW": "EAAG-1"}


def test_example_config_loads_with_secrets_from_the_environment() -> None:
    settings = load_settings(ROOT / "app.yaml", ENV)
    assert settings.meta.app_secret == "s"
    assert settings.database_url == "sqlite+aiosqlite:///wabridge.db"
    assert settings.channels[0].mps == 5


def test_default_after_colon_dash_is_used_when_variable_unset() -> None:
    assert interpolate("${X:-fallback}", {}) == "fallback"
    assert interpolate("pre-${X:-d}-post", {"X": "val"}) == "pre-val-post"


def test_missing_secret_names_the_key_and_the_variable() -> None:
    env = dict(ENV)
    del env["SLACK_SIGNING_SECRET"]
    with pytest.raises(ConfigError) as err:
        load_settings(ROOT / "app.yaml", env)
    assert err.value.key == "secrets"
    assert err.value.message == "not set or empty: slack.signing_secret (export SLACK_SIGNING_SECRET)"


def _raw(**channel: object) -> dict:
    ch = {"name": "a", "phone_number_id": "1", "waba_id": "2", "access_token": "t", "slack_channel": "C1"}
    ch.update(channel)
    return {"meta": {"app_secret": "s", "verify_token": "v"},
            "slack": {"bot_token": "b", "signing_secret": "s"}, "channels": [ch]}


def test_unknown_key_is_named() -> None:
    raw = _raw()
    raw["slak"] = {}
    with pytest.raises(ConfigError) as err:
        parse_settings(raw, {})
    assert err.value.key == "slak" and err.value.message == "unknown key"


def test_unknown_key_inside_a_channel_is_named_with_its_index() -> None:
    with pytest.raises(ConfigError) as err:
        parse_settings(_raw(colour="red"), {})
    assert err.value.key == "channels[0].colour"


def test_bad_mode_is_named() -> None:
    with pytest.raises(ConfigError) as err:
        parse_settings(_raw(mode="turbo"), {})
    assert err.value.key == "channels[0].mode"


def test_duplicate_channel_is_refused() -> None:
    raw = _raw()
    raw["channels"].append(dict(raw["channels"][0], phone_number_id="9"))
    with pytest.raises(ConfigError) as err:
        parse_settings(raw, {})
    assert err.value.key == "channels[1].name"
    assert "duplicate" in err.value.message


def test_mps_defaults_follow_the_mode() -> None:
    assert parse_settings(_raw(mode="cloud_api"), {}).channels[0].mps == 80
    assert parse_settings(_raw(mode="coexistence"), {}).channels[0].mps == 5
    with pytest.raises(ConfigError):
        parse_settings(_raw(mps=1001), {})


def test_cli_reports_a_config_error_in_one_line_with_exit_code_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for var in ENV:
        monkeypatch.delenv(var, raising=False)
    code = main(["--config", str(ROOT / "app.yaml"), "migrate"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.strip() == (
        "config error: secrets: not set or empty: meta.app_secret (export META_APP_SECRET), meta.verify_token "
        "(export META_VERIFY_TOKEN), slack.bot_token (export SLACK_BOT_TOKEN), slack.signing_secret (export "
        "SLACK_SIGNING_SECRET), channels[0].access_token (export WA_TOKEN_LUCKNOW)")
    assert "Traceback" not in err
