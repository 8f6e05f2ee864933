"""Slack's `users.*` and `usergroups.*` methods: people and the groups they belong to."""

from __future__ import annotations

import copy
from typing import Any

from bot.standins.slack.state import SlackWorkspace
from bot.standins.slack.wire import SlackError, truthy


async def users_info(ws: SlackWorkspace, args: dict[str, Any]) -> dict[str, Any]:
    """users.info."""
    return {"user": copy.deepcopy(ws.user_for(args.get("user")))}


async def usergroups_users_list(ws: SlackWorkspace, args: dict[str, Any]) -> dict[str, Any]:
    """usergroups.users.list."""
    group = args.get("usergroup")
    if group not in ws.usergroups:
        raise SlackError("no_such_subteam")
    return {"users": list(ws.usergroups[group])}


async def usergroups_list(ws: SlackWorkspace, args: dict[str, Any]) -> dict[str, Any]:
    """usergroups.list (members only with include_users)."""
    groups = []
    for group_id, members in ws.usergroups.items():
        handle = ws.usergroup_handles.get(group_id, group_id.lower())
        group: dict[str, Any] = {"id": group_id, "team_id": ws.team_id, "is_usergroup": True,
                                 "name": handle, "handle": handle, "description": "", "date_delete": 0,
                                 "user_count": len(members)}
        if truthy(args.get("include_users")):
            group["users"] = list(members)
        groups.append(group)
    return {"usergroups": groups}


METHODS = {
    "users.info": users_info,
    "usergroups.users.list": usergroups_users_list,
    "usergroups.list": usergroups_list,
}
