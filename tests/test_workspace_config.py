"""The many-workspace keys of app.yaml: slack.client_id / client_secret and channels[].slack_team."""

from __future__ import annotations

import base64

import pytest

from bot.core.config import ConfigError, parse_settings
from bot.core.workspace import DEFAULT_WORKSPACE, workspace_key

# A fixed key: parametrised test ids must be the same in every pytest-xdist worker.
KEY = base64.urlsafe_b64encode(b"k" * 32).decode()


def _raw(slack: dict[str, object], *, team: str | None = None, token_key: str = KEY) -> dict[str, object]:
    channel: dict[str, object] = {"name": "a", "phone_number_id": "100000000000001", "waba_id": "2",
                                  "access_token": "t", "slack_channel": "C1"}
    if team is not None:
        channel["slack_team"] = team
    return {"meta": {"app_secret": "s", "verify_token": "v", "token_key": token_key},
            "slack": {"signing_secret": "s", **slack}, "channels": [channel]}


def test_a_bot_token_alone_is_single_workspace_mode_with_every_number_in_the_default_workspace() -> None:
    settings = parse_settings(_raw({"bot_token": "xoxb-1"}, team="T0AAA"), env={})
    assert not settings.slack.many_workspaces
    assert settings.workspace_of(settings.channels[0]) == DEFAULT_WORKSPACE


def test_client_id_and_secret_from_the_environment_make_bot_token_optional() -> None:
    raw = _raw({"bot_token": "${SLACK_BOT_TOKEN:-}", "client_id": "${SLACK_CLIENT_ID:-}",
                "client_secret": "${SLACK_CLIENT_SECRET:-}"}, team="T0AAA")
    settings = parse_settings(raw, env={"SLACK_CLIENT_ID": "111.222", "SLACK_CLIENT_SECRET": "shh"})
    assert settings.slack.many_workspaces and settings.slack.bot_token == ""
    assert settings.workspace_of(settings.channels[0]) == "T0AAA"


def test_a_missing_bot_token_without_client_id_is_named_with_its_variable() -> None:
    with pytest.raises(ConfigError) as err:
        parse_settings(_raw({"bot_token": "${SLACK_BOT_TOKEN}"}), env={})
    assert str(err.value) == "secrets: not set or empty: slack.bot_token (export SLACK_BOT_TOKEN)"


@pytest.mark.parametrize(("slack", "team", "token_key", "key", "fix"), [
    ({"client_id": "1.2"}, "T0AAA", KEY, "slack.client_secret", "export SLACK_CLIENT_SECRET"),
    ({"client_secret": "x", "bot_token": "b"}, "T0AAA", KEY, "slack.client_id", "export SLACK_CLIENT_ID"),
    ({"client_id": "1.2", "client_secret": "x"}, "T0AAA", "", "meta.token_key", "export WABRIDGE_TOKEN_KEY"),
    ({"client_id": "1.2", "client_secret": "x"}, None, KEY, "channels[0].slack_team", "T… id"),
    ({"bot_token": "b"}, "acme", KEY, "channels[0].slack_team", "T… id"),
])
def test_each_workspace_key_mistake_is_one_line_naming_the_key_and_the_fix(
        slack: dict[str, object], team: str | None, token_key: str, key: str, fix: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_settings(_raw(slack, team=team, token_key=token_key), env={})
    assert err.value.key == key
    assert fix in err.value.message and "\n" not in str(err.value)


def test_an_org_wide_install_is_filed_under_its_enterprise_and_a_workspace_install_under_its_team() -> None:
    assert workspace_key("T1", "E1", is_enterprise_install=True) == "E1"
    assert workspace_key("T1", "E1") == "T1"
    assert workspace_key(None, "E1") == "E1"
    with pytest.raises(ValueError):
        workspace_key(None, None)


async def test_a_workspace_may_name_its_own_campaign_managers_and_permissions() -> None:
    from slack_sdk.web.async_client import AsyncWebClient

    from bot.core.config import Role
    from bot.core.workspace import RequestScope, scoped
    from bot.slack.permissions import Action, Permissions

    raw = _raw({"bot_token": "b", "campaign_managers": ["U0DEPLOY"],
                "workspaces": {"T0AAA": {"campaign_managers": ["U0ALPHA"], "permissions": {"export": "anyone"}}}})
    settings = parse_settings(raw, env={})
    permissions = Permissions(settings.slack, AsyncWebClient(token="unused"))
    with scoped(RequestScope("T0AAA")):
        assert await permissions.is_manager("U0ALPHA") and not await permissions.is_manager("U0DEPLOY")
        assert permissions.role(Action.EXPORT) is Role.ANYONE
    with scoped(RequestScope("T0BBB")):  # no list of its own: the deployment's
        assert await permissions.is_manager("U0DEPLOY") and not await permissions.is_manager("U0ALPHA")
        assert permissions.role(Action.EXPORT) is Role.CAMPAIGN_MANAGERS
    with pytest.raises(ConfigError) as err:
        parse_settings(_raw({"bot_token": "b", "workspaces": {"acme": {}}}), env={})
    assert err.value.key == "slack.workspaces" and "T… id" in err.value.message
