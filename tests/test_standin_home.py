"""The Slack stand-in's views.publish answers as Slack documents it (docs.slack.dev/reference/methods/views.publish)."""

from __future__ import annotations

import pytest
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.standins import SlackStandin

HOME = {"type": "home", "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": "hi"}}]}


async def test_views_publish_keeps_one_home_view_per_user_and_refuses_what_slack_refuses() -> None:
    async with SlackStandin(strict=True) as slack:
        slack.add_user("U0ASHA", "asha")
        client = AsyncWebClient(token=slack.bot_token, base_url=slack.api_url)
        first = (await client.views_publish(user_id="U0ASHA", view=HOME))["view"]
        second = (await client.views_publish(user_id="U0ASHA", view=HOME, hash=first["hash"]))["view"]
        assert second["id"] == first["id"] and second["type"] == "home"
        assert slack.home_views["U0ASHA"]["id"] == first["id"]

        async def error(**kwargs: object) -> str:
            with pytest.raises(SlackApiError) as exc:
                await client.views_publish(**kwargs)  # type: ignore[arg-type]
            return str(exc.value.response["error"])

        assert await error(user_id="U0ASHA", view=HOME, hash=first["hash"]) == "hash_conflict"
        assert await error(user_id="U0NOBODY", view=HOME) == "invalid_arguments"
        assert await error(user_id="U0ASHA", view={"type": "modal", "blocks": []}) == "invalid_arguments"
        assert await error(user_id="U0ASHA", view={"type": "home", "blocks": HOME["blocks"] * 101}) \
            == "invalid_arguments"
        slack.home_tab_enabled = False
        assert await error(user_id="U0ASHA", view=HOME) == "not_enabled"
