from pathlib import Path

import pytest

from bot.cli.entry import main
from bot.core.config import ConfigError, Need, interpolate, load_settings, parse_settings

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
    code = main(["--config", str(ROOT / "app.yaml"), "serve"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.strip() == (
        "config error: secrets: not set or empty: meta.app_secret (export META_APP_SECRET), meta.verify_token "
        "(export META_VERIFY_TOKEN), slack.bot_token (export SLACK_BOT_TOKEN), slack.signing_secret (export "
        "SLACK_SIGNING_SECRET), channels[0].access_token (export WA_TOKEN_LUCKNOW)")
    assert "Traceback" not in err


def test_a_command_is_refused_only_for_the_secrets_it_uses() -> None:
    env = {"SLACK_BOT_TOKEN": "xoxb-1"}
    settings = load_settings(ROOT / "app.yaml", env, needs=frozenset())
    assert settings.meta.app_secret == "" and settings.channels[0].access_token == ""
    assert settings.slack.bot_token == "xoxb-1"
    assert settings.unset_secrets == ["meta.app_secret", "meta.verify_token", "slack.signing_secret",
                                      "channels[0].access_token"]
    with pytest.raises(ConfigError) as err:
        load_settings(ROOT / "app.yaml", env, needs=frozenset({Need.CHANNELS}))
    assert err.value.message == "not set or empty: channels[0].access_token (export WA_TOKEN_LUCKNOW)"
    assert load_settings(ROOT / "app.yaml", ENV).unset_secrets == []


def test_settings_without_meta_or_slack_sections_load_for_database_commands() -> None:
    settings = parse_settings({"database_url": "sqlite:///x.db"}, {}, needs=frozenset())
    assert settings.database_url == "sqlite+aiosqlite:///x.db"
    assert settings.unset_secrets == ["meta.app_secret", "meta.verify_token", "slack.bot_token",
                                      "slack.signing_secret"]
    with pytest.raises(ConfigError) as err:  # a section of the wrong type is still named
        parse_settings({"meta": "oops"}, {}, needs=frozenset())
    assert err.value.key == "meta"


def test_the_fix_for_an_unset_key_names_the_variable_app_yaml_reads() -> None:
    settings = load_settings(ROOT / "app.yaml", ENV)
    assert settings.how_to_set("meta.app_id") == "export META_APP_ID (app.yaml reads meta.app_id from ${META_APP_ID})"
    assert settings.how_to_set("meta.embedded_signup_config_id").startswith("export META_ES_CONFIG_ID ")
    bare = parse_settings(_raw(), {})
    assert bare.how_to_set("meta.app_id") == "set meta.app_id in app.yaml"


@pytest.mark.parametrize("argv", [["migrate"], ["report", "--format", "json"], ["spend"],
                                  ["export", "--channel", "lucknow", "--contact", "+919800000001"],
                                  ["campaign", "list"], ["templates", "list"]])
def test_database_commands_run_without_meta_slack_or_channel_secrets(
        argv: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ENV:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'w.db'}")
    assert main(["--config", str(ROOT / "app.yaml"), "migrate"]) == 0
    code = main(["--config", str(ROOT / "app.yaml"), *argv])
    err = capsys.readouterr().err
    assert "config error" not in err and "Traceback" not in err
    assert code == (1 if argv[0] == "export" else 0)  # the contact does not exist: said in one line
    if argv[0] == "export":
        assert err.startswith("export: ") and len(err.strip().splitlines()) == 1


def test_templates_sync_still_asks_for_the_channel_tokens(capsys: pytest.CaptureFixture[str],
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ENV:
        monkeypatch.delenv(var, raising=False)
    assert main(["--config", str(ROOT / "app.yaml"), "templates", "sync"]) == 2
    assert capsys.readouterr().err.strip() == (
        "config error: secrets: not set or empty: channels[0].access_token (export WA_TOKEN_LUCKNOW)")


def test_a_database_without_tables_or_server_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "app.yaml"
    config.write_text(f"database_url: sqlite:///{tmp_path / 'empty.db'}\n")
    assert main(["--config", str(config), "report"]) == 69
    assert capsys.readouterr().err == "report: the database has no Wabridge tables yet: run `wabridge migrate` first\n"
    config.write_text("database_url: postgresql://nobody@127.0.0.1:1/none\n")
    assert main(["--config", str(config), "spend"]) == 69
    err = capsys.readouterr().err
    assert err.startswith("spend: cannot reach the database: ") and len(err.splitlines()) == 1
