"""Slack answers that are not Slack's JSON (a proxy's plain-text 503, invalid JSON, a 429, a hang): one reason
for every body, side lookups that give up in seconds and never keep a failure as an answer, and clients
that always carry a timeout."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.core.config import SlackSettings
from bot.core.name_cache import NameCache
from bot.slack import lookup as lookup_module
from bot.slack.client import CALL_TIMEOUT, slack_client, slack_session
from bot.slack.errors import slack_reason
from bot.slack.lookup import lookup
from bot.slack.names import UserNames, resolve_names
from bot.slack.permissions import Action, MembershipUnknown, Permissions
from bot.slack.to_whatsapp import references
from bot.standins import SlackStandin
from tests.helpers import BOT_TOKEN, SLACK_CHANNEL

STAFF, GROUP = "U0ASHA", "S0TEACHERS"


@pytest.fixture
async def slack() -> AsyncIterator[SlackStandin]:
    async with SlackStandin(bot_token=BOT_TOKEN, strict=True) as standin:
        standin.add_channel(SLACK_CHANNEL, "lucknow-whatsapp")
        standin.add_user(STAFF, "asha", real_name="Asha Verma")
        standin.join(SLACK_CHANNEL, STAFF)
        standin.add_usergroup(GROUP, "teachers", [STAFF])
        yield standin


def _client(slack: SlackStandin) -> AsyncWebClient:
    return AsyncWebClient(token=BOT_TOKEN, base_url=slack.api_url, timeout=5)


async def _error(call: Any) -> SlackApiError:
    with pytest.raises(SlackApiError) as caught:
        await call
    return caught.value


async def test_one_reason_for_every_body_slack_sdk_can_hand_back(slack: SlackStandin) -> None:
    client = _client(slack)
    slack.break_answers("users.info", "text_503")
    plain = await _error(client.users_info(user=STAFF))
    assert isinstance(plain.response.data, str)  # what made `exc.response.get("error")` raise
    assert slack_reason(plain) == "http_503_not_json"
    slack.break_answers("users.info", "invalid_json")
    invalid = await _error(client.users_info(user=STAFF))
    assert not hasattr(invalid.response, "data")  # slack_sdk hands back aiohttp's ClientResponse
    assert slack_reason(invalid) == "invalid_json (HTTP 200)"
    slack.rate_limit("users.info")
    assert slack_reason(await _error(client.users_info(user=STAFF))) == "ratelimited"
    assert slack_reason(await _error(client.users_info(user="U0NOBODY"))) == "user_not_found"
    slack.set_down(True)
    assert slack_reason(await _error(client.users_info(user=STAFF))) == "service_unavailable"
    assert slack_reason(TimeoutError()) == "timeout" and slack_reason(ValueError("x")) == "ValueError"


@pytest.mark.parametrize("kind", ["text_503", "invalid_json", "hang"])
async def test_a_broken_lookup_is_none_and_the_next_one_is_asked_again(slack: SlackStandin, kind: str,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lookup_module, "LOOKUP_TIMEOUT", 0.3)
    client = _client(slack)
    slack.break_answers("users.info", kind)
    assert await lookup(client.users_info(user=STAFF), "a name") is None
    answer = await lookup(client.users_info(user=STAFF), "a name")
    assert answer is not None and answer["user"]["real_name"] == "Asha Verma"
    # Slack's own `ok: false` is an answer, not a failure
    refused = await lookup(client.usergroups_users_list(usergroup="S0GONE"), "a group")
    assert refused is not None and refused["error"] == "no_such_subteam"


@pytest.mark.parametrize("kind", ["text_503", "invalid_json", "hang"])
async def test_names_fall_back_to_ids_and_are_not_cached_when_lookups_break(
        slack: SlackStandin, kind: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lookup_module, "LOOKUP_TIMEOUT", 0.3)
    client, cache = _client(slack), NameCache()
    for method in ("users.info", "conversations.info", "usergroups.list"):
        slack.break_answers(method, kind)
    slack.break_answers("users.info", kind)
    refs = references(f"ask <@{STAFF}> or <!subteam^{GROUP}> in <#{SLACK_CHANNEL}>")
    names = await resolve_names(client, cache, refs)
    assert (names.users, names.groups, names.channels) == ({}, {}, {})
    assert await UserNames(client).of([STAFF]) == {}  # a report's names: the ids stay
    names = await resolve_names(client, cache, refs)  # mended: asked again, not remembered as nameless
    assert names.users == {STAFF: "asha"} and names.groups == {GROUP: "teachers"}
    assert names.channels == {SLACK_CHANNEL: "lucknow-whatsapp"}


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _permissions(slack: SlackStandin, clock: _Clock, **permissions: str) -> Permissions:
    settings = SlackSettings(bot_token=BOT_TOKEN, signing_secret="s", api_url=slack.api_url,
                             campaign_managers=["UMANAGER", GROUP], permissions=permissions)
    return Permissions(settings, _client(slack), clock=clock)


async def test_a_failed_membership_lookup_is_never_kept_as_not_a_member(slack: SlackStandin) -> None:
    clock = _Clock()
    perms = _permissions(slack, clock)
    slack.rate_limit("conversations.members")  # one 429
    with pytest.raises(MembershipUnknown):
        await perms.allows(Action.OPT_OUT, STAFF, SLACK_CHANNEL)
    assert await perms.allows(Action.OPT_OUT, STAFF, SLACK_CHANNEL)  # asked again at once, not 60 s later
    slack.rate_limit("usergroups.users.list")
    with pytest.raises(MembershipUnknown):
        await perms.is_manager(STAFF)
    assert await perms.is_manager(STAFF)


@pytest.mark.parametrize("kind", ["text_503", "invalid_json"])
async def test_while_slack_does_not_answer_its_last_answer_stands(slack: SlackStandin, kind: str) -> None:
    clock = _Clock()
    perms = _permissions(slack, clock)
    assert await perms.is_manager(STAFF) and await perms.allows(Action.OPT_OUT, STAFF, SLACK_CHANNEL)
    clock.now += 600  # long past the minute a membership is fresh for
    slack.break_answers("usergroups.users.list", kind, times=None)
    slack.break_answers("conversations.members", kind, times=None)
    assert await perms.is_manager(STAFF) and await perms.allows(Action.OPT_OUT, STAFF, SLACK_CHANNEL)
    assert not await perms.is_manager("U0STRANGER")
    assert len(slack.calls_to("usergroups.users.list")) == 3  # asked each time it was stale


async def test_every_slack_client_carries_a_timeout(slack: SlackStandin) -> None:
    settings = SlackSettings(bot_token=BOT_TOKEN, signing_secret="s", api_url=slack.api_url)
    session = slack_session()
    try:
        client = slack_client(settings, session)
        assert client.timeout == CALL_TIMEOUT == 30
        assert client.session is session and session.timeout.total == CALL_TIMEOUT
        assert slack_client(settings).timeout == CALL_TIMEOUT  # slack_sdk makes its own session with it
    finally:
        await session.close()


async def test_the_application_client_gives_up_on_a_hang(slack: SlackStandin, aiohttp_client: Any,
                                                          db_url: str) -> None:
    from bot.app.factory import create_app
    from bot.handlers import appkeys
    from tests.helpers import make_settings

    client = await aiohttp_client(create_app(make_settings(db_url, slack_url=slack.api_url), workers=False))
    deps = client.app[appkeys.DEPS]
    assert deps.slack.timeout == CALL_TIMEOUT and deps.slack.session.timeout.total == CALL_TIMEOUT
