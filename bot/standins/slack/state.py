"""The Slack workspace the stand-in keeps in memory: who it is, its channels, users, messages, files and views.

Every API family reads and writes this one object; the server around it only routes, records and fails.
"""

from __future__ import annotations

import contextvars
import mimetypes
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from bot.standins.slack.oauth import OAuthServer
from bot.standins.slack.socket_mode import SocketModeHub
from bot.standins.slack.wire import SLACK_ID, TS, SlackCall, SlackError

DEFAULT_SCOPES = (
    "chat:write",
    "chat:write.customize",
    "channels:history",
    "groups:history",
    "channels:read",
    "groups:read",
    "reactions:write",
    "reactions:read",
    "files:read",
    "files:write",
    "users:read",
    "commands",
)
# The workspace whose token made the Web API call being answered (each request runs in its own task).
CALLER: contextvars.ContextVar[str | None] = contextvars.ContextVar("standin_slack_caller", default=None)


@dataclass
class Upload:
    """A file announced by files.getUploadURLExternal, its bytes once posted to the upload URL."""

    file_id: str
    filename: str
    length: int
    alt_txt: str | None
    data: bytes | None = None
    content_type: str | None = None


class SlackWorkspace:
    """In-memory Slack: the first workspace's identity and content (other workspaces install through `oauth`).

    `strict=False` creates unknown channels/users on first use.
    """

    def __init__(
        self,
        *,
        bot_token: str,
        tokens: Iterable[str],
        scopes: Iterable[str],
        team_id: str,
        team_name: str,
        bot_user_id: str,
        bot_id: str,
        app_id: str,
        strict: bool,
        trigger_ttl: float,
        home_tab_enabled: bool,
        app_token: str,
        client_id: str,
        client_secret: str,
        token_rotation: bool,
    ) -> None:
        self.bot_token = bot_token
        self.tokens = {bot_token, *tokens}
        self.app_token = app_token  # app-level token: only apps.connections.open takes it
        self.scopes = list(scopes)
        self.team_id = team_id
        self.team_name = team_name
        self.bot_user_id = bot_user_id
        self.bot_id = bot_id
        self.app_id = app_id
        self.strict = strict
        self.trigger_ttl = trigger_ttl
        self.home_tab_enabled = home_tab_enabled
        # workspace -> user id -> the Home tab last published to them there (`home_views`: the first workspace's)
        self.team_home_views: dict[str, dict[str, dict[str, Any]]] = {}
        self.calls: list[SlackCall] = []
        self.channels: dict[str, dict[str, Any]] = {}
        self.users: dict[str, dict[str, Any]] = {}
        self.files: dict[str, dict[str, Any]] = {}
        self.views: dict[str, dict[str, Any]] = {}
        self.ephemerals: list[dict[str, Any]] = []
        self.usergroups: dict[str, list[str]] = {}  # S… id -> member user ids
        self.usergroup_handles: dict[str, str] = {}  # S… id -> handle (without @); default: the id lower-cased
        self.members: dict[str, list[str]] = {}  # channel id -> member user ids
        self._messages: dict[str, list[dict[str, Any]]] = {}
        self._file_data: dict[str, bytes] = {}
        self.deleted_files: set[str] = set()
        self._uploads: dict[str, Upload] = {}
        self._triggers: dict[str, float | None] = {}  # trigger_id -> issue time; None once used
        self._trigger_team: dict[str, str] = {}  # trigger_id -> the workspace whose payload carried it
        self._ts_counter = 0
        self.socket_mode = SocketModeHub(app_id)
        # Other workspaces installing through OAuth (bot.standins.slack.oauth); this one is its first.
        self.oauth = OAuthServer(client_id=client_id, client_secret=client_secret, app_id=app_id,
                                 scopes=self.scopes, rotate=token_rotation)
        self.oauth.add_workspace(team_id, team_name, bot_user_id=bot_user_id)
        self.channel_team: dict[str, str] = {}  # channel id -> the workspace it belongs to
        self.add_user(bot_user_id, "wabridge", real_name="Wabridge", is_bot=True)

    @property
    def home_views(self) -> dict[str, dict[str, Any]]:
        """The Home tabs published in the first workspace, by user id."""
        return self.home_views_of(self.team_id)

    def home_views_of(self, team: str) -> dict[str, dict[str, Any]]:
        """The Home tabs published in workspace `team`, by user id."""
        return self.team_home_views.setdefault(team, {})

    def caller_team(self) -> str:
        """The workspace whose token made the call being answered (the first one outside a call)."""
        return CALLER.get() or self.team_id

    def _org_of(self, team: str) -> str | None:
        ws = self.oauth.workspaces.get(team)
        return ws.enterprise_id if ws is not None else None

    def sees_user(self, user: dict[str, Any], caller: str | None = None) -> bool:
        """Whether workspace `caller` (default: the calling one) can look the user up, as in Slack: its own
        members and those of its Enterprise Grid org, and people of organisations outside this stand-in
        (Slack Connect); never the members of another workspace installed here."""
        caller = caller or CALLER.get()
        team = str(user.get("team_id") or self.team_id)
        if caller is None or team == caller or team not in self.oauth.workspaces:
            return True
        org = self._org_of(team)
        return org is not None and (org == caller or org == self._org_of(caller))

    @property
    def base_url(self) -> str:
        """Where the stand-in serves (file and upload URLs point there); the server provides it."""
        raise NotImplementedError

    # ---- setting the scene -----------------------------------------------------------------------

    def add_channel(
        self, channel_id: str, name: str | None = None, *, is_private: bool = False, is_member: bool = True,
        team_id: str | None = None,
    ) -> dict[str, Any]:
        """Create a channel (the bot is a member unless told otherwise) in a workspace (default: the first)."""
        team = team_id or CALLER.get() or self.team_id
        channel = {
            "id": channel_id,
            "name": name or channel_id.lower(),
            "is_channel": not is_private,
            "is_group": is_private,
            "is_im": False,
            "is_private": is_private,
            "is_archived": False,
            "is_member": is_member,
            "created": 1700000000,
            "creator": self.bot_user_id,
            "context_team_id": team,
        }
        self.channels[channel_id] = channel
        self.channel_team[channel_id] = team
        self._messages.setdefault(channel_id, [])
        self.members[channel_id] = [self.bot_user_id] if is_member else []
        return channel

    def join(self, channel_id: str, *user_ids: str) -> None:
        """Make users members of a channel (conversations.members lists them)."""
        self.channel_for(channel_id)
        self.members[channel_id] += [u for u in user_ids if u not in self.members[channel_id]]

    def archive_channel(self, channel_id: str) -> None:
        """Archive a channel: posting to it then fails with is_archived."""
        self.channel_for(channel_id)["is_archived"] = True

    def add_user(
        self, user_id: str, name: str, *, real_name: str | None = None, is_bot: bool = False, tz: str = "UTC",
        team_id: str | None = None, is_restricted: bool = False, is_ultra_restricted: bool = False,
    ) -> dict[str, Any]:
        """Create a user: of this workspace, one of its guests (is_restricted: multi-channel guest,
        is_ultra_restricted: single-channel guest), or with another team_id a Slack Connect user from another
        organisation, whose messages then carry `user_team` and `source_team` as Slack's do."""
        real = real_name or name
        user = {
            "id": user_id,
            "team_id": team_id or self.caller_team(),
            "name": name,
            "real_name": real,
            "is_bot": is_bot,
            "deleted": False,
            "tz": tz,
            "is_restricted": is_restricted or is_ultra_restricted,
            "is_ultra_restricted": is_ultra_restricted,
            "profile": {"real_name": real, "display_name": name, "image_72": ""},
        }
        self.users[user_id] = user
        return user

    def add_usergroup(self, group_id: str, handle: str, members: Iterable[str] = ()) -> None:
        """Create a user group (`@handle`) with its members."""
        self.usergroups[group_id] = list(members)
        self.usergroup_handles[group_id] = handle

    def add_file(
        self,
        data: bytes,
        name: str,
        mimetype: str | None = None,
        *,
        title: str | None = None,
        user: str | None = None,
    ) -> dict[str, Any]:
        """Store a file (as if a person uploaded it); `url_private` needs the bot token."""
        return self.make_file("F" + secrets.token_hex(5).upper(), data, name, mimetype, title, user)

    def make_file(
        self, file_id: str, data: bytes, name: str, mimetype: str | None, title: str | None, user: str | None
    ) -> dict[str, Any]:
        """Keep a file and its bytes; return its `files.info` record."""
        mime = mimetype or mimetypes.guess_type(name)[0] or "application/octet-stream"
        encoded = quote(name)
        filetype = name.rsplit(".", 1)[-1].lower() if "." in name else "binary"
        owner = user or self.bot_user_id
        now = int(time.time())
        file = {
            "id": file_id,
            "created": now,
            "timestamp": now,
            "name": name,
            "title": title or name,
            "mimetype": mime,
            "filetype": filetype,
            "pretty_type": filetype.upper(),
            "user": owner,
            "size": len(data),
            "url_private": f"{self.base_url}/files-pri/{self.team_id}-{file_id}/{encoded}",
            "url_private_download": f"{self.base_url}/files-pri/{self.team_id}-{file_id}/download/{encoded}",
            "permalink": f"https://standin.slack.com/files/{owner}/{file_id}/{encoded}",
            "channels": [],
            "groups": [],
            "ims": [],
            "shares": {},
        }
        self.files[file_id] = file
        self._file_data[file_id] = data
        return file

    def issue_trigger_id(self, team_id: str | None = None) -> str:
        """A trigger_id as Slack puts in a slash command or interaction from workspace `team_id` (default: the
        first), valid for `trigger_ttl` s and only with that workspace's token."""
        trigger = f"{secrets.randbelow(10**10)}.{secrets.randbelow(10**10)}.{secrets.token_hex(16)}"
        self._triggers[trigger] = time.monotonic()
        self._trigger_team[trigger] = team_id or self.team_id
        return trigger

    def user_message(
        self,
        channel: str,
        user: str,
        text: str,
        *,
        thread_ts: str | None = None,
        files: list[dict[str, Any]] | None = None,
    ) -> dict[str, Any]:
        """Store a message a person wrote in Slack and return it as a `message` event."""
        team = str(self.users.get(user, {}).get("team_id") or self.team_id)
        message: dict[str, Any] = {"type": "message", "user": user, "text": text, "team": team}
        if team != self.team_id:  # a Slack Connect user's message names the team it comes from
            message.update({"user_team": team, "source_team": team})
        if files:
            message["files"] = files
            message["subtype"] = "file_share"
        stored = self.store(channel, message, thread_ts)
        event = {k: v for k, v in stored.items() if k not in ("reply_count", "replies", "reply_users")}
        event.update({"channel": channel, "event_ts": stored["ts"], "channel_type": "channel"})
        return event

    # ---- inspection ------------------------------------------------------------------------------

    def messages(self, channel: str, *, top_level_only: bool = False) -> list[dict[str, Any]]:
        """Messages in a channel, oldest first (thread replies included unless top_level_only)."""
        items = self._messages.get(channel, [])
        if top_level_only:
            items = [m for m in items if m.get("thread_ts") in (None, m["ts"])]
        return list(items)

    def thread(self, channel: str, ts: str) -> list[dict[str, Any]]:
        """A thread's parent followed by its replies, oldest first."""
        return [m for m in self._messages.get(channel, []) if m["ts"] == ts or m.get("thread_ts") == ts]

    def calls_to(self, method: str) -> list[SlackCall]:
        """Recorded calls of one method."""
        return [c for c in self.calls if c.method == method]

    # ---- lookups and writes the API methods share ------------------------------------------------

    def next_ts(self) -> str:
        """A fresh message ts, later than every one before."""
        self._ts_counter += 100
        seconds, micros = divmod(self._ts_counter, 1_000_000)
        return f"{1700000000 + seconds}.{micros:06d}"

    def channel_for(self, channel_id: Any) -> dict[str, Any]:
        """The channel as the calling workspace sees it, or `channel_not_found`."""
        if not channel_id:
            raise SlackError("channel_not_found")
        channel_id = str(channel_id)
        if channel_id not in self.channels:
            if self.strict or not SLACK_ID.match(channel_id):
                raise SlackError("channel_not_found")
            self.add_channel(channel_id)
        caller = CALLER.get()  # None outside a Web API request (a test setting the scene)
        if caller is not None and self.channel_team.get(channel_id, self.team_id) != caller:
            raise SlackError("channel_not_found")  # another workspace's channel: Slack does not know it here
        return self.channels[channel_id]

    def user_for(self, user_id: Any) -> dict[str, Any]:
        """The user as the calling workspace sees it, or `user_not_found` (also for another installed
        workspace's member: Slack does not know them there)."""
        user_id = str(user_id or "")
        if user_id not in self.users:
            if self.strict or not SLACK_ID.match(user_id):
                raise SlackError("user_not_found")
            self.add_user(user_id, user_id.lower())
        if not self.sees_user(self.users[user_id]):
            raise SlackError("user_not_found")
        return self.users[user_id]

    _user = user_for  # the name subclasses written before the split call

    def writable(self, channel_id: Any) -> dict[str, Any]:
        """A channel the bot may post in (not archived, a member)."""
        channel = self.channel_for(channel_id)
        if channel["is_archived"]:
            raise SlackError("is_archived")
        if not channel["is_member"]:
            raise SlackError("not_in_channel")
        return channel

    def find(self, channel: str, ts: Any) -> dict[str, Any] | None:
        """The message with this ts in a channel."""
        return next((m for m in self._messages.get(channel, []) if m["ts"] == str(ts)), None)

    def store(self, channel_id: str, message: dict[str, Any], thread_ts: Any) -> dict[str, Any]:
        """Give the message a ts, attach it to its thread, and keep it."""
        self.channel_for(channel_id)
        message["ts"] = self.next_ts()
        if thread_ts:
            if not TS.match(str(thread_ts)):
                raise SlackError("invalid_thread_ts")
            parent = self.find(channel_id, thread_ts)
            if parent is None:
                raise SlackError("thread_not_found")
            root_ts = parent.get("thread_ts") or parent["ts"]
            root = self.find(channel_id, root_ts) or parent
            message["thread_ts"] = root["ts"]
            root["thread_ts"] = root["ts"]
            root["reply_count"] = root.get("reply_count", 0) + 1
            root["latest_reply"] = message["ts"]
            author = message.get("user")
            if author and author not in root.setdefault("reply_users", []):
                root["reply_users"].append(author)
        self._messages.setdefault(channel_id, []).append(message)
        return message

    def bot_message(self, **content: Any) -> dict[str, Any]:
        """A message the app posts, before it is stored."""
        return {"type": "message", "user": self.bot_user_id, "bot_id": self.bot_id, "app_id": self.app_id,
                "team": self.team_id, **content}
