"""Who may reply to customers from Slack, in a thread or with a template (`slack.permissions.reply_to_customers`).

A Slack Connect channel holds people from other organisations, and a workspace has guests; by default only
the members of the workspace the app is installed in reach customers. The event says where its author comes
from (`user_team`, else `team`) and where the app is installed (`authorizations[0]`, else `team_id`: the
order bolt reads them in); `users.info` adds what the event cannot say (`is_stranger`, guests'
`is_restricted` / `is_ultra_restricted`). That lookup is a side lookup: when it fails or is slow, the team
check alone decides, so a Slack hiccup never holds a member's reply back.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from slack_sdk.web.async_client import AsyncWebClient

from bot.core.config import ReplyRole
from bot.slack.lookup import as_dict, lookup

CACHE_SECONDS = 60.0

EXTERNAL = ("Not sent to the customer: you are in this channel through Slack Connect, and only members of "
            "this workspace may reply to customers (`slack.permissions.reply_to_customers`).")
# Export and opt-out touch a customer's personal data and consent: never for people of another organisation,
# whatever slack.permissions says.
OUTSIDER = (":no_entry: You are in this channel through Slack Connect: only members of this workspace may export "
            "a customer's data or change their opt-out.")
GUEST = ("Not sent to the customer: guests of this workspace may not reply to customers "
         "(`slack.permissions.reply_to_customers`). Ask a member to send it, or keep it as a note.")


def _str(value: Any) -> str:
    return value if isinstance(value, str) else ""


def home_teams(body: Mapping[str, Any], slack_team: str = "") -> frozenset[str]:
    """The ids that mean "this workspace" for an event: the installation's team and org, and the channel's."""
    auths = body.get("authorizations")
    first = auths[0] if isinstance(auths, list) and auths and isinstance(auths[0], Mapping) else {}
    ids = {_str(first.get("team_id")), _str(first.get("enterprise_id")), slack_team, _str(body.get("enterprise_id"))}
    if not _str(first.get("team_id")):
        ids.add(_str(body.get("team_id")))
    return frozenset(i for i in ids if i)


def installed_teams(authorize_result: Any, slack_team: str = "") -> frozenset[str]:
    """The ids that mean "this workspace" for an interaction: bolt's installation (team and org) and the channel's."""
    ids = {_str(getattr(authorize_result, "team_id", None)), _str(getattr(authorize_result, "enterprise_id", None)),
           slack_team}
    return frozenset(i for i in ids if i)


def author_team(event: Mapping[str, Any]) -> str:
    """The team of the person who wrote a message event: `user_team` in shared channels, else `team`."""
    return _str(event.get("user_team")) or _str(event.get("team"))


def verdict_from_event(event: Mapping[str, Any], home: frozenset[str]) -> str | None:
    """Why the event's author may not reply, from the event alone; None when it does not say they are external."""
    team = author_team(event)
    if not team or not home or team in home:
        return None
    if any(h.startswith("E") for h in home):
        # Enterprise Grid: another workspace of the same org is still "us"; only users.info names the org.
        return None
    return EXTERNAL


def verdict_from_user(user: Mapping[str, Any], home: frozenset[str]) -> str | None:
    """Why a users.info user may not reply; None for a full member of a home team."""
    if user.get("is_stranger"):
        return EXTERNAL
    team = _str(user.get("team_id"))
    org = _str((user.get("enterprise_user") or {}).get("enterprise_id")) if isinstance(
        user.get("enterprise_user"), Mapping) else ""
    if team and home and team not in home and org not in home:
        return EXTERNAL
    if user.get("is_restricted") or user.get("is_ultra_restricted"):
        return GUEST
    return None


@dataclass
class _Seen:
    at: float
    user: Mapping[str, Any]


class ReplyGate:
    """Answers "may the author of this thread message reply to the customer", with users.info cached a minute."""

    def __init__(self, role: ReplyRole, client: AsyncWebClient, clock: Callable[[], float] = time.monotonic) -> None:
        self.role = role
        self._client = client
        self._clock = clock
        self._users: dict[str, _Seen] = {}

    async def refusal(self, body: Mapping[str, Any], event: Mapping[str, Any], slack_team: str = "") -> str | None:
        """The note for an author who may not reply; None when they may."""
        if self.role is ReplyRole.ANYONE:
            return None
        return await self.judge(_str(event.get("user")), author_team(event), home_teams(body, slack_team))

    async def judge(self, user_id: str, team: str, home: frozenset[str]) -> str | None:
        """Why user_id (of team, when the payload says) may not send to customers; None when they may."""
        if self.role is ReplyRole.ANYONE:
            return None
        said = verdict_from_event({"team": team}, home)
        if said is not None:
            return said
        user = await self._user(user_id)
        return verdict_from_user(user, home) if user is not None else None

    async def outsider(self, user_id: str, team: str, home: frozenset[str]) -> bool | None:
        """Whether user_id (of team, when the payload says) is from another organisation (Slack Connect),
        whatever the role; None when nobody can tell yet (the payload names no other team and users.info gave
        no answer). Guests of this workspace are not outsiders."""
        if verdict_from_event({"team": team}, home) is not None:
            return True
        user = await self._user(user_id)
        if user is None:
            return None
        return verdict_from_user(user, home) == EXTERNAL

    async def _user(self, user_id: str) -> Mapping[str, Any] | None:
        if not user_id:
            return None
        seen = self._users.get(user_id)
        if seen is not None and self._clock() - seen.at < CACHE_SECONDS:
            return seen.user
        # No answer (logged by lookup) is not cached: the next reply asks again; the team check has passed.
        answer = await lookup(self._client.users_info(user=user_id), f"users.info {user_id} (may they reply?)")
        user = as_dict(answer.get("user")) if answer and answer.get("ok") else {}
        if not user:
            return None
        self._users[user_id] = _Seen(self._clock(), user)
        return user
