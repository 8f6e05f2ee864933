"""The Slack stand-in keeps workspaces apart as Slack does: a token of one workspace cannot see another installed
workspace's members, open a modal with its trigger, update its views or publish its Home tabs; people of an
organisation outside the stand-in (Slack Connect) stay visible, with their own team."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.standins import SlackStandin

TOKENS = {"T0ALPHA": "xoxb-alpha", "T0BETA": "xoxb-beta"}
STAFF = {"T0ALPHA": "U0ASHA", "T0BETA": "U0BINA"}
PARTNER = "U0PARTNER"
MODAL = {"type": "modal", "callback_id": "cb", "title": {"type": "plain_text", "text": "Hi"},
         "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": "hello"}}]}


@pytest.fixture
async def slack() -> AsyncIterator[SlackStandin]:
    standin = SlackStandin(bot_token="xoxb-standin", strict=True)
    await standin.start()
    for team, token in TOKENS.items():
        standin.oauth.add_workspace(team, team.title())
        standin.oauth.add_token(token, team)
        standin.add_channel(f"C{team[1:]}", team.lower(), team_id=team)
        standin.add_user(STAFF[team], STAFF[team].lower(), team_id=team)
    standin.add_user(PARTNER, "partner", team_id="T0PARTNER")  # another organisation, in a shared channel
    try:
        yield standin
    finally:
        await standin.stop()


def _client(slack: SlackStandin, team: str) -> AsyncWebClient:
    return AsyncWebClient(token=TOKENS[team], base_url=slack.api_url)


async def _error(call: object) -> str:
    with pytest.raises(SlackApiError) as info:
        await call  # type: ignore[misc]
    return str(info.value.response["error"])


async def test_users_are_seen_only_by_their_own_workspace(slack: SlackStandin) -> None:
    alpha = _client(slack, "T0ALPHA")
    assert (await alpha.users_info(user="U0ASHA"))["user"]["team_id"] == "T0ALPHA"
    assert await _error(alpha.users_info(user="U0BINA")) == "user_not_found"
    assert (await alpha.users_info(user=PARTNER))["user"]["team_id"] == "T0PARTNER"
    assert await _error(alpha.chat_postEphemeral(channel="C0ALPHA", user="U0BINA", text="x")) == "user_not_found"
    assert (await _client(slack, "T0BETA").users_info(user="U0BINA"))["user"]["id"] == "U0BINA"


async def test_views_belong_to_the_workspace_that_opened_them(slack: SlackStandin) -> None:
    alpha, beta = _client(slack, "T0ALPHA"), _client(slack, "T0BETA")
    alphas_trigger = slack.issue_trigger_id("T0ALPHA")
    assert await _error(beta.views_open(trigger_id=alphas_trigger, view=MODAL)) == "invalid_trigger_id"
    opened = (await alpha.views_open(trigger_id=alphas_trigger, view={**MODAL, "external_id": "ext-1"}))["view"]
    assert opened["team_id"] == "T0ALPHA"
    assert await _error(beta.views_update(view_id=opened["id"], view=MODAL)) == "not_found"
    assert await _error(beta.views_update(external_id="ext-1", view=MODAL)) == "not_found"
    assert json.dumps(slack.views[opened["id"]]["blocks"]) == json.dumps(MODAL["blocks"])
    changed = {**MODAL, "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": "changed"}}]}
    assert (await alpha.views_update(view_id=opened["id"], view=changed))["view"]["id"] == opened["id"]


async def test_home_tabs_are_published_per_workspace(slack: SlackStandin) -> None:
    alpha, beta = _client(slack, "T0ALPHA"), _client(slack, "T0BETA")
    home = {"type": "home", "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": "alpha's"}}]}
    assert await _error(beta.views_publish(user_id="U0ASHA", view=home)) == "user_not_found"
    await alpha.views_publish(user_id="U0ASHA", view=home)
    await beta.views_publish(user_id="U0BINA", view={**home, "blocks": []})
    assert list(slack.home_views_of("T0ALPHA")) == ["U0ASHA"] and list(slack.home_views_of("T0BETA")) == ["U0BINA"]
    assert slack.home_views == {}  # the first workspace (the stand-in's own) has none
