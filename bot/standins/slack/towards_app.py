"""Slack's side towards our server: signed Events API deliveries, slash commands, interactions, uninstalls."""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode

import aiohttp

from bot.standins.signing import sign_slack
from bot.standins.slack.state import SlackWorkspace


class SlackTowardsApp(SlackWorkspace):
    """The workspace sending requests to our app the way Slack does (from the first or an installed one)."""

    @staticmethod
    async def deliver(url: str, body: bytes, content_type: str, signing_secret: str) -> tuple[int, str]:
        """POST a signed request the way Slack does; returns (status, body text)."""
        headers = {"Content-Type": content_type, **sign_slack(signing_secret, body)}
        async with aiohttp.ClientSession() as session, session.post(url, data=body, headers=headers) as resp:
            return resp.status, await resp.text()

    def _who(self, team_id: str | None) -> dict[str, Any]:
        """The ids a payload from workspace `team_id` (default: the first) carries: team, enterprise, org."""
        ws = self.oauth.workspaces.get(team_id or self.team_id)
        if ws is None or ws.key == self.team_id:
            return {"team_id": team_id or self.team_id, "enterprise_id": None, "is_org": False,
                    "bot_user_id": self.bot_user_id, "key": team_id or self.team_id}
        # An org-wide install's payloads come from one of the org's workspaces; the stand-in names the org's.
        return {"team_id": f"T{ws.key[1:]}" if ws.is_org else ws.key, "enterprise_id": ws.enterprise_id,
                "is_org": ws.is_org, "bot_user_id": ws.bot_user_id, "key": ws.key}

    async def send_event(
        self, url: str, event: Mapping[str, Any], signing_secret: str, *, event_id: str | None = None,
        team_id: str | None = None,
    ) -> tuple[int, str]:
        """Deliver an Events API `event_callback` wrapping `event`, from workspace `team_id` (default: the first)."""
        who = self._who(team_id)
        envelope: dict[str, Any] = {
            "token": "verification-token",
            "team_id": who["team_id"],
            "api_app_id": self.app_id,
            "event": dict(event),
            "type": "event_callback",
            "event_id": event_id or "Ev" + secrets.token_hex(5).upper(),
            "event_time": int(time.time()),
            "authorizations": [
                {
                    "enterprise_id": who["enterprise_id"],
                    "team_id": None if who["is_org"] else who["team_id"],
                    "user_id": who["bot_user_id"],
                    "is_bot": True,
                    "is_enterprise_install": who["is_org"],
                }
            ],
        }
        if who["enterprise_id"]:
            envelope["enterprise_id"] = who["enterprise_id"]
            envelope["is_ext_shared_channel"] = False
        return await self.deliver(url, json.dumps(envelope).encode(), "application/json", signing_secret)

    async def uninstall(self, url: str, team_id: str, signing_secret: str) -> tuple[int, str]:
        """A workspace removes the app: its tokens stop working and `app_uninstalled` is delivered."""
        self.oauth.revoke(team_id)
        return await self.send_event(url, {"type": "app_uninstalled"}, signing_secret, team_id=team_id)

    async def revoke_tokens(self, url: str, team_id: str, signing_secret: str) -> tuple[int, str]:
        """A workspace's bot token is revoked: it stops working and `tokens_revoked` is delivered."""
        bot = self._who(team_id)["bot_user_id"]
        self.oauth.revoke(team_id)
        return await self.send_event(url, {"type": "tokens_revoked", "tokens": {"oauth": [], "bot": [bot]}},
                                     signing_secret, team_id=team_id)

    async def send_slash_command(
        self, url: str, command: str, text: str, *, user_id: str, channel_id: str, signing_secret: str,
        team_id: str | None = None,
    ) -> tuple[int, str]:
        """Deliver a slash command (with a fresh trigger_id) from workspace `team_id` (default: the first)."""
        who = self._who(team_id)
        form = {
            "token": "verification-token",
            "team_id": who["team_id"],
            **({"enterprise_id": who["enterprise_id"], "is_enterprise_install": "true" if who["is_org"] else "false"}
               if who["enterprise_id"] else {}),
            "channel_id": channel_id,
            "user_id": user_id,
            "user_name": self.users.get(user_id, {}).get("name", user_id.lower()),
            "command": command,
            "text": text,
            "api_app_id": self.app_id,
            "response_url": f"{self.base_url}/response-url/{secrets.token_hex(8)}",
            "trigger_id": self.issue_trigger_id(who["key"]),
        }
        body = urlencode(form).encode()
        return await self.deliver(url, body, "application/x-www-form-urlencoded", signing_secret)

    async def send_interaction(self, url: str, payload: Mapping[str, Any], signing_secret: str, *,
                               team_id: str | None = None) -> tuple[int, str]:
        """Deliver an interactivity payload (block_actions, view_submission, …) from workspace `team_id`."""
        data = dict(payload)
        who = self._who(team_id)
        data.setdefault("team", {"id": who["team_id"]})
        if who["enterprise_id"]:
            data.setdefault("enterprise", {"id": who["enterprise_id"]})
            data.setdefault("is_enterprise_install", who["is_org"])
        data.setdefault("api_app_id", self.app_id)
        data.setdefault("trigger_id", self.issue_trigger_id(who["key"]))
        body = urlencode({"payload": json.dumps(data)}).encode()
        return await self.deliver(url, body, "application/x-www-form-urlencoded", signing_secret)
