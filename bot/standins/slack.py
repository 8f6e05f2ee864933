"""A local stand-in for Slack's Web API: a real HTTP server on loopback speaking Slack's conventions.

Point slack_sdk at it with `AsyncWebClient(token=..., base_url=f"{standin.base_url}/api/")`. It keeps
channels, threads, files and views in memory, records every call, and can rate-limit (429 +
Retry-After) or go down on demand. It can also play Slack's side towards our server: signed events,
slash commands and interactions. Used by the test suite and by `python -m bot demo`.

Why one module: it plays one whole API (one server, one in-memory workspace, one rate-limit
and outage switch) that every endpoint reads and writes.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextvars
import copy
import json
import math
import mimetypes
import re
import secrets
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlencode

import aiohttp
from aiohttp import web

from bot.standins._http import LoopbackServer
from bot.standins.signing import sign_slack
from bot.standins.slack_oauth import OAuthError, OAuthServer
from bot.standins.socket_mode import SocketModeHub

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
MAX_TEXT = 40_000
MAX_BLOCKS = 50
MAX_SECTION_TEXT = 3_000
_SLACK_ID = re.compile(r"^[A-Z][A-Z0-9]{2,}$")
_TS = re.compile(r"^\d+\.\d+$")
# What a proxy or a failing Slack edge answers instead of Slack's JSON: a plain-text 503, a JSON content type
# with a body that is not JSON, or no answer at all (the connection stays open until the caller gives up).
BROKEN_ANSWERS = ("text_503", "invalid_json", "hang")
# The workspace whose token made the Web API call being answered (each request runs in its own task).
_CALLER: contextvars.ContextVar[str | None] = contextvars.ContextVar("standin_slack_caller", default=None)


class SlackError(Exception):
    """An `{"ok": false, "error": ...}` answer."""

    def __init__(self, error: str, **extra: Any) -> None:
        super().__init__(error)
        self.error = error
        self.extra = extra


@dataclass
class SlackCall:
    """One request the stand-in received."""

    method: str
    args: dict[str, Any]
    time: float  # time.monotonic() at receipt
    status: int = 200
    ok: bool = True
    error: str | None = None
    team: str | None = None  # the workspace whose token made the call (None: no valid token)


@dataclass
class _Upload:
    file_id: str
    filename: str
    length: int
    alt_txt: str | None
    data: bytes | None = None
    content_type: str | None = None


@dataclass
class _Faults:
    rate_limited: dict[str, list[float]] = field(default_factory=dict)  # method -> retry_after per call
    errors: dict[str, list[str]] = field(default_factory=dict)  # method -> queued errors
    down_until: float | None = None
    down: bool = False
    lost_answers: dict[str, int] = field(default_factory=dict)  # method -> calls whose answer is lost
    broken: dict[str, list[str]] = field(default_factory=dict)  # method -> queued broken answers (BROKEN_ANSWERS)
    broken_always: dict[str, str] = field(default_factory=dict)  # method -> broken answer until mended


@dataclass
class _Limit:
    """Slack's per-channel allowance for one method: `per_second` sustained, `burst` at once."""

    per_second: float
    burst: float
    buckets: dict[str, tuple[float, float]] = field(default_factory=dict)  # channel -> (tokens, at)

    def take(self, channel: str, now: float) -> float:
        """0 when the call may go ahead (and is counted), else the seconds until it would."""
        tokens, at = self.buckets.get(channel, (self.burst, now))
        tokens = min(self.burst, tokens + (now - at) * self.per_second)
        if tokens >= 1.0:
            self.buckets[channel] = (tokens - 1.0, now)
            return 0.0
        self.buckets[channel] = (tokens, now)
        return (1.0 - tokens) / self.per_second


def _plain_len(obj: Any) -> int:
    return len(str(obj.get("text") or "")) if isinstance(obj, dict) else 0


def _view_breaks_limits(view: dict[str, Any]) -> bool:
    """Block Kit's documented view limits, which Slack answers with `invalid_arguments`: title, submit and
    close up to 24 characters, private_metadata 3,000, section text 3,000, option text 75 and value 150,
    100 options in a select."""
    if _plain_len(view.get("title")) > 24 or _plain_len(view.get("submit")) > 24 or _plain_len(view.get("close")) > 24:
        return True
    if len(str(view.get("private_metadata") or "")) > 3000:
        return True
    for block in view.get("blocks") or []:
        if not isinstance(block, dict):
            return True
        if block.get("type") == "section" and _plain_len(block.get("text")) > MAX_SECTION_TEXT:
            return True
        element = block.get("element") or block.get("accessory") or {}
        options = list(element.get("options") or [])
        for group in element.get("option_groups") or []:
            options += group.get("options") or []
        if len(options) > 100:
            return True
        for option in options + ([element["initial_option"]] if element.get("initial_option") else []):
            if _plain_len(option.get("text")) > 75 or len(str(option.get("value") or "")) > 150:
                return True
    return False


def _truthy(value: Any) -> bool:
    return value is True or str(value).lower() in ("true", "1")


def _json_arg(value: Any, error: str = "invalid_arguments") -> Any:
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError as exc:
            raise SlackError(error) from exc
    return value


def _int_arg(value: Any, default: int, maximum: int) -> int:
    if value in (None, ""):
        return default
    try:
        number = int(value)
    except (TypeError, ValueError) as exc:
        raise SlackError("invalid_limit") from exc
    return max(1, min(number, maximum))


def _encode_cursor(offset: int) -> str:
    return base64.b64encode(f"next:{offset}".encode()).decode()


def _decode_cursor(cursor: Any) -> int:
    if not cursor:
        return 0
    try:
        raw = base64.b64decode(str(cursor)).decode()
    except (binascii.Error, UnicodeDecodeError) as exc:
        raise SlackError("invalid_cursor") from exc
    if not raw.startswith("next:") or not raw[5:].isdigit():
        raise SlackError("invalid_cursor")
    return int(raw[5:])


def _ts_key(ts: str) -> tuple[int, int]:
    seconds, _, micros = ts.partition(".")
    return int(seconds), int(micros or 0)


class SlackStandin(LoopbackServer):
    """Fake Slack Web API. `strict=False` creates unknown channels/users on first use."""

    def __init__(
        self,
        *,
        bot_token: str = "xoxb-standin",
        tokens: Iterable[str] = (),
        scopes: Iterable[str] = DEFAULT_SCOPES,
        team_id: str = "T0STANDIN",
        team_name: str = "Stand-in",
        bot_user_id: str = "U0STANDINBOT",
        bot_id: str = "B0STANDIN",
        app_id: str = "A0STANDIN",
        strict: bool = False,
        trigger_ttl: float = 3.0,
        latency: float = 0.0,
        port: int = 0,
        home_tab_enabled: bool = True,
        app_token: str = "xapp-1-A0STANDIN-1-standin",
        client_id: str = "111.222",
        client_secret: str = "standin-client-secret",
        token_rotation: bool = False,
    ) -> None:
        super().__init__(port=port, latency=latency)
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
        self.home_views: dict[str, dict[str, Any]] = {}  # user id -> the Home tab last published to them
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
        self._uploads: dict[str, _Upload] = {}
        self._triggers: dict[str, float | None] = {}  # trigger_id -> issue time; None once used
        self._ts_counter = 0
        self._faults = _Faults()
        self._hangs_end = asyncio.Event()  # set on stop, so a hanging answer does not hold the shutdown
        self._limits: dict[str, _Limit] = {}
        self.socket_mode = SocketModeHub(app_id)
        # Other workspaces installing through OAuth (bot.standins.slack_oauth); this one is its first.
        self.oauth = OAuthServer(client_id=client_id, client_secret=client_secret, app_id=app_id,
                                 scopes=self.scopes, rotate=token_rotation)
        self.oauth.add_workspace(team_id, team_name, bot_user_id=bot_user_id)
        self.channel_team: dict[str, str] = {}  # channel id -> the workspace it belongs to
        self.add_user(bot_user_id, "wabridge", real_name="Wabridge", is_bot=True)
        self._methods: dict[str, Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]] = {
            "api.test": self._api_test,
            "auth.test": self._auth_test,
            "chat.postMessage": self._chat_post_message,
            "chat.update": self._chat_update,
            "chat.postEphemeral": self._chat_post_ephemeral,
            "chat.getPermalink": self._chat_get_permalink,
            "reactions.add": self._reactions_add,
            "reactions.remove": self._reactions_remove,
            "conversations.history": self._conversations_history,
            "conversations.replies": self._conversations_replies,
            "conversations.info": self._conversations_info,
            "conversations.members": self._conversations_members,
            "apps.connections.open": self._apps_connections_open,
            "users.info": self._users_info,
            "usergroups.users.list": self._usergroups_users_list,
            "usergroups.list": self._usergroups_list,
            "files.getUploadURLExternal": self._files_get_upload_url,
            "files.completeUploadExternal": self._files_complete_upload,
            "files.info": self._files_info,
            "files.delete": self._files_delete,
            "conversations.open": self._conversations_open,
            "views.open": self._views_open,
            "views.push": self._views_push,
            "views.update": self._views_update,
            "views.publish": self._views_publish,
        }

    # ---- configuration and inspection ------------------------------------------------------------

    @property
    def api_url(self) -> str:
        """What slack_sdk takes as `base_url`: `http://127.0.0.1:PORT/api/`."""
        return f"{self.base_url}/api/"

    def add_channel(
        self, channel_id: str, name: str | None = None, *, is_private: bool = False, is_member: bool = True,
        team_id: str | None = None,
    ) -> dict[str, Any]:
        """Create a channel (the bot is a member unless told otherwise) in a workspace (default: the first)."""
        team = team_id or _CALLER.get() or self.team_id
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
        self._channel(channel_id)
        self.members[channel_id] += [u for u in user_ids if u not in self.members[channel_id]]

    def archive_channel(self, channel_id: str) -> None:
        """Archive a channel: posting to it then fails with is_archived."""
        self._channel(channel_id)["is_archived"] = True

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
            "team_id": team_id or self.team_id,
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
        return self._make_file("F" + secrets.token_hex(5).upper(), data, name, mimetype, title, user)

    def _make_file(
        self, file_id: str, data: bytes, name: str, mimetype: str | None, title: str | None, user: str | None
    ) -> dict[str, Any]:
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

    def issue_trigger_id(self) -> str:
        """A trigger_id as Slack puts in a slash command or interaction (valid for `trigger_ttl` s)."""
        trigger = f"{secrets.randbelow(10**10)}.{secrets.randbelow(10**10)}.{secrets.token_hex(16)}"
        self._triggers[trigger] = time.monotonic()
        return trigger

    def rate_limit(self, method: str, times: int = 1, retry_after: float = 1) -> None:
        """Answer the next `times` calls of `method` with HTTP 429 and Retry-After."""
        self._faults.rate_limited.setdefault(method, []).extend([retry_after] * times)

    def limit_per_channel(self, method: str, per_second: float, burst: int = 1) -> None:
        """Refuse `method` beyond `per_second` calls per channel (after a burst) with 429 + Retry-After.

        Slack documents chat.postMessage as about one message per second per channel, short bursts
        tolerated; calls over the allowance are refused, not queued, and refusals do not use it up.
        """
        self._limits[method] = _Limit(per_second, float(max(1, burst)))

    def fail_next(self, method: str, error: str, times: int = 1) -> None:
        """Answer the next `times` calls of `method` with `{"ok": false, "error": error}`."""
        self._faults.errors.setdefault(method, []).extend([error] * times)

    def outage(self, seconds: float) -> None:
        """Answer every request with HTTP 503 for the next `seconds`."""
        self._faults.down_until = time.monotonic() + seconds

    def lose_answers(self, method: str, times: int = 1) -> None:
        """Carry out the next `times` calls of `method`, then drop the connection instead of answering."""
        self._faults.lost_answers[method] = self._faults.lost_answers.get(method, 0) + times

    def break_answers(self, method: str, kind: str, times: int | None = 1) -> None:
        """Answer the next `times` calls of `method` (every call while `times` is None, until `mend`) with a
        broken answer: `text_503`, `invalid_json` or `hang` (see BROKEN_ANSWERS)."""
        if kind not in BROKEN_ANSWERS:
            raise ValueError(f"kind must be one of {BROKEN_ANSWERS}")
        if times is None:
            self._faults.broken_always[method] = kind
        else:
            self._faults.broken.setdefault(method, []).extend([kind] * times)

    def mend(self, method: str) -> None:
        """Answer `method` normally again (undoes break_answers)."""
        self._faults.broken.pop(method, None)
        self._faults.broken_always.pop(method, None)

    def set_down(self, down: bool) -> None:
        """Answer every request with HTTP 503 until set_down(False)."""
        self._faults.down = down
        if not down:
            self._faults.down_until = None

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
        stored = self._store(channel, message, thread_ts)
        event = {k: v for k, v in stored.items() if k not in ("reply_count", "replies", "reply_users")}
        event.update({"channel": channel, "event_ts": stored["ts"], "channel_type": "channel"})
        return event

    # ---- playing Slack towards our server --------------------------------------------------------

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
                    "bot_user_id": self.bot_user_id}
        # An org-wide install's payloads come from one of the org's workspaces; the stand-in names the org's.
        return {"team_id": f"T{ws.key[1:]}" if ws.is_org else ws.key, "enterprise_id": ws.enterprise_id,
                "is_org": ws.is_org, "bot_user_id": ws.bot_user_id}

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
            "trigger_id": self.issue_trigger_id(),
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
        data.setdefault("trigger_id", self.issue_trigger_id())
        body = urlencode({"payload": json.dumps(data)}).encode()
        return await self.deliver(url, body, "application/x-www-form-urlencoded", signing_secret)

    # ---- HTTP plumbing ---------------------------------------------------------------------------

    def _routes(self, app: web.Application) -> None:
        app.router.add_route("*", "/api/{method}", self._api)
        app.router.add_get("/oauth/v2/authorize", self.oauth.authorize)
        app.router.add_post("/upload/v1/{key}", self._upload)
        app.router.add_get("/files-pri/{team_file}/download/{name}", self._download)
        app.router.add_get("/files-pri/{team_file}/{name}", self._download)
        app.router.add_post("/response-url/{key}", self._response_url)
        app.router.add_get("/link/", self.socket_mode.handle)

    async def stop(self) -> None:
        self._hangs_end.set()
        await self.socket_mode.close()
        await super().stop()
        self._hangs_end = asyncio.Event()

    def _response(self, status: int, body: Mapping[str, Any], headers: Mapping[str, str] | None = None) -> web.Response:
        all_headers = {"X-OAuth-Scopes": ",".join(self.scopes), **(headers or {})}
        return web.json_response(dict(body), status=status, headers=all_headers)

    def _is_down(self) -> bool:
        faults = self._faults
        if faults.down_until is not None and time.monotonic() >= faults.down_until:
            faults.down_until = None
        return faults.down or faults.down_until is not None

    def _authorized(self, request: web.Request, args: Mapping[str, Any], method: str = "") -> str | None:
        """None when authorized (the caller's workspace is then set), else the Slack error name (app-level
        tokens only for apps.connections.open; an installed workspace's token only while installed)."""
        header = request.headers.get("Authorization", "")
        token = header[7:].strip() if header.lower().startswith("bearer ") else args.get("token")
        if not token:
            return "not_authed"
        app_level = method == "apps.connections.open"
        if token == self.app_token:
            return None if app_level else "not_allowed_token_type"
        if token in self.tokens:
            owner: str | None = self.team_id
        else:
            owner, error = self.oauth.owner(str(token))
            if owner is None:
                return error
        if app_level:
            return "not_allowed_token_type"
        _CALLER.set(owner or self.team_id)
        return None

    @staticmethod
    async def _args(request: web.Request) -> dict[str, Any]:
        args: dict[str, Any] = dict(request.query)
        if request.method != "POST" or not request.can_read_body:
            return args
        if request.content_type == "application/json":
            try:
                body = await request.json()
            except ValueError as exc:
                raise SlackError("invalid_json") from exc
            if isinstance(body, dict):
                args.update(body)
        elif request.content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
            form = await request.post()
            args.update(form)
        return args

    async def _api(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        now = time.monotonic()
        try:
            args = await self._args(request)
        except SlackError as exc:
            self.calls.append(SlackCall(method, {}, now, 200, False, exc.error))
            return self._response(200, {"ok": False, "error": exc.error})
        call = SlackCall(method, {k: v for k, v in args.items() if k != "token"}, now)
        self.calls.append(call)
        if self._is_down():
            call.status, call.ok, call.error = 503, False, "service_unavailable"
            return self._response(503, {"ok": False, "error": "service_unavailable"})
        broken = await self._broken_answer(method, call)
        if broken is not None:
            return broken
        queued_limits = self._faults.rate_limited.get(method)
        if queued_limits:
            retry_after = queued_limits.pop(0)
            call.status, call.ok, call.error = 429, False, "ratelimited"
            return self._response(429, {"ok": False, "error": "ratelimited"}, {"Retry-After": str(int(retry_after))})
        limit = self._limits.get(method)
        channel_arg = args.get("channel") or args.get("channel_id")
        if limit is not None and channel_arg:
            wait = limit.take(str(channel_arg), now)
            if wait > 0:
                call.status, call.ok, call.error = 429, False, "ratelimited"
                # Slack's Retry-After is whole seconds, rounded up.
                return self._response(429, {"ok": False, "error": "ratelimited"},
                                      {"Retry-After": str(max(1, math.ceil(wait)))})
        if method == "oauth.v2.access":  # the app's client credentials, not a token
            try:
                return self._response(200, {"ok": True, **self.oauth.access(args, request.headers.get(
                    "Authorization", ""))})
            except OAuthError as exc:
                call.ok, call.error = False, exc.error
                return self._response(200, {"ok": False, "error": exc.error})
        handler = self._methods.get(method)
        if handler is None:
            call.status, call.ok, call.error = 404, False, "unknown_method"
            return self._response(404, {"ok": False, "error": "unknown_method"})
        auth_error = self._authorized(request, args, method)
        if auth_error is not None and method != "api.test":
            call.ok, call.error = False, auth_error
            return self._response(200, {"ok": False, "error": auth_error})
        call.team = _CALLER.get()
        queued_errors = self._faults.errors.get(method)
        if queued_errors:
            error = queued_errors.pop(0)
            call.ok, call.error = False, error
            return self._response(200, {"ok": False, "error": error})
        try:
            result = await handler(args)
        except SlackError as exc:
            call.ok, call.error = False, exc.error
            return self._response(200, {"ok": False, "error": exc.error, **exc.extra})
        if self._faults.lost_answers.get(method):
            self._faults.lost_answers[method] -= 1
            call.error = "answer_lost"
            if request.transport is not None:
                request.transport.close()  # done, but the caller never hears so
        return self._response(200, {"ok": True, **result})

    async def _broken_answer(self, method: str, call: SlackCall) -> web.Response | None:
        queued = self._faults.broken.get(method)
        kind = queued.pop(0) if queued else self._faults.broken_always.get(method)
        if kind is None:
            return None
        call.status, call.ok, call.error = (503 if kind == "text_503" else 200), False, kind
        if kind == "hang":
            await self._hangs_end.wait()  # however long the caller waits; released when the server stops
        if kind in ("text_503", "hang"):
            return web.Response(status=503, text="upstream connect error or disconnect/reset before headers",
                                content_type="text/plain")
        return web.Response(status=200, body=b"<html>not json", content_type="application/json")

    # ---- state helpers ---------------------------------------------------------------------------

    def _next_ts(self) -> str:
        self._ts_counter += 100
        seconds, micros = divmod(self._ts_counter, 1_000_000)
        return f"{1700000000 + seconds}.{micros:06d}"

    def _channel(self, channel_id: Any) -> dict[str, Any]:
        if not channel_id:
            raise SlackError("channel_not_found")
        channel_id = str(channel_id)
        if channel_id not in self.channels:
            if self.strict or not _SLACK_ID.match(channel_id):
                raise SlackError("channel_not_found")
            self.add_channel(channel_id)
        caller = _CALLER.get()  # None outside a Web API request (a test setting the scene)
        if caller is not None and self.channel_team.get(channel_id, self.team_id) != caller:
            raise SlackError("channel_not_found")  # another workspace's channel: Slack does not know it here
        return self.channels[channel_id]

    def _user(self, user_id: Any) -> dict[str, Any]:
        user_id = str(user_id or "")
        if user_id not in self.users:
            if self.strict or not _SLACK_ID.match(user_id):
                raise SlackError("user_not_found")
            self.add_user(user_id, user_id.lower())
        return self.users[user_id]

    def _find(self, channel: str, ts: Any) -> dict[str, Any] | None:
        return next((m for m in self._messages.get(channel, []) if m["ts"] == str(ts)), None)

    def _store(self, channel_id: str, message: dict[str, Any], thread_ts: Any) -> dict[str, Any]:
        """Give the message a ts, attach it to its thread, and keep it."""
        self._channel(channel_id)
        message["ts"] = self._next_ts()
        if thread_ts:
            if not _TS.match(str(thread_ts)):
                raise SlackError("invalid_thread_ts")
            parent = self._find(channel_id, thread_ts)
            if parent is None:
                raise SlackError("thread_not_found")
            root_ts = parent.get("thread_ts") or parent["ts"]
            root = self._find(channel_id, root_ts) or parent
            message["thread_ts"] = root["ts"]
            root["thread_ts"] = root["ts"]
            root["reply_count"] = root.get("reply_count", 0) + 1
            root["latest_reply"] = message["ts"]
            author = message.get("user")
            if author and author not in root.setdefault("reply_users", []):
                root["reply_users"].append(author)
        self._messages.setdefault(channel_id, []).append(message)
        return message

    @staticmethod
    def _visible(message: Mapping[str, Any], include_metadata: bool) -> dict[str, Any]:
        shown = copy.deepcopy(dict(message))
        if not include_metadata:
            shown.pop("metadata", None)
        return shown

    def _content(self, args: Mapping[str, Any], *, require: bool = True) -> dict[str, Any]:
        """Text/blocks/metadata of a post or update, validated like Slack does."""
        content: dict[str, Any] = {}
        text = args.get("text")
        blocks = _json_arg(args.get("blocks"), "invalid_blocks_format") if args.get("blocks") else None
        attachments = _json_arg(args.get("attachments")) if args.get("attachments") else None
        if require and not text and not blocks and not attachments:
            raise SlackError("no_text")
        if text is not None:
            if len(str(text)) > MAX_TEXT:
                raise SlackError("msg_too_long")
            content["text"] = str(text)
        if blocks is not None:
            if not isinstance(blocks, list) or len(blocks) > MAX_BLOCKS:
                raise SlackError("invalid_blocks")
            for block in blocks:
                if not isinstance(block, dict) or "type" not in block:
                    raise SlackError("invalid_blocks")
                section_text = block.get("text")
                if isinstance(section_text, dict) and len(str(section_text.get("text", ""))) > MAX_SECTION_TEXT:
                    raise SlackError("invalid_blocks")
            content["blocks"] = blocks
        if attachments is not None:
            content["attachments"] = attachments
        if args.get("metadata"):
            metadata = _json_arg(args["metadata"], "invalid_metadata_format")
            if (
                not isinstance(metadata, dict)
                or not isinstance(metadata.get("event_type"), str)
                or not isinstance(metadata.get("event_payload"), dict)
            ):
                raise SlackError("invalid_metadata_format")
            content["metadata"] = {
                "event_type": metadata["event_type"],
                "event_payload": metadata["event_payload"],
            }
        return content

    def _writable(self, channel_id: Any) -> dict[str, Any]:
        channel = self._channel(channel_id)
        if channel["is_archived"]:
            raise SlackError("is_archived")
        if not channel["is_member"]:
            raise SlackError("not_in_channel")
        return channel

    # ---- Web API methods -------------------------------------------------------------------------

    async def _api_test(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"args": {k: v for k, v in args.items() if isinstance(v, str)}}

    async def _auth_test(self, args: dict[str, Any]) -> dict[str, Any]:
        caller = _CALLER.get() or self.team_id
        ws = self.oauth.workspaces.get(caller)
        if caller == self.team_id or ws is None:
            return {"url": "https://standin.slack.com/", "team": self.team_name,
                    "user": self.users[self.bot_user_id]["name"], "team_id": self.team_id,
                    "user_id": self.bot_user_id, "bot_id": self.bot_id, "is_enterprise_install": False}
        answer: dict[str, Any] = {"url": f"https://{ws.key.lower()}.slack.com/", "team": ws.name, "user": "wabridge",
                                  "team_id": None if ws.is_org else ws.key, "user_id": ws.bot_user_id,
                                  "bot_id": f"B{ws.bot_user_id[1:]}", "is_enterprise_install": ws.is_org}
        if ws.enterprise_id:
            answer["enterprise_id"] = ws.enterprise_id
        return answer

    async def _chat_post_message(self, args: dict[str, Any]) -> dict[str, Any]:
        channel = self._writable(args.get("channel"))
        message: dict[str, Any] = {
            "type": "message",
            "user": self.bot_user_id,
            "bot_id": self.bot_id,
            "app_id": self.app_id,
            "team": self.team_id,
            **self._content(args),
        }
        if args.get("username"):
            message["username"] = str(args["username"])
        if args.get("icon_url"):
            message["icons"] = {"image_48": str(args["icon_url"])}
        elif args.get("icon_emoji"):
            message["icons"] = {"emoji": str(args["icon_emoji"])}
        if _truthy(args.get("reply_broadcast")) and args.get("thread_ts"):
            message["subtype"] = "thread_broadcast"
        stored = self._store(channel["id"], message, args.get("thread_ts"))
        shown = self._visible(stored, include_metadata=True)
        for key in ("reply_count", "reply_users", "latest_reply"):
            shown.pop(key, None)
        return {"channel": channel["id"], "ts": stored["ts"], "message": shown}

    async def _chat_update(self, args: dict[str, Any]) -> dict[str, Any]:
        channel = self._channel(args.get("channel"))
        message = self._find(channel["id"], args.get("ts"))
        if message is None:
            raise SlackError("message_not_found")
        if message.get("bot_id") != self.bot_id:
            raise SlackError("cant_update_message")
        content = self._content(args)
        message.update(content)
        if "blocks" not in content and args.get("text") is not None:
            message.pop("blocks", None)  # Slack replaces the blocks when only text is sent
        message["edited"] = {"user": self.bot_user_id, "ts": self._next_ts()}
        return {
            "channel": channel["id"],
            "ts": message["ts"],
            "text": message.get("text", ""),
            "message": self._visible(message, include_metadata=True),
        }

    async def _chat_post_ephemeral(self, args: dict[str, Any]) -> dict[str, Any]:
        channel = self._writable(args.get("channel"))
        if not args.get("user"):
            raise SlackError("user_not_found")
        user = self._user(args["user"])
        ephemeral = {
            "channel": channel["id"],
            "user": user["id"],
            "thread_ts": args.get("thread_ts"),
            "message_ts": self._next_ts(),
            **self._content(args),
        }
        self.ephemerals.append(ephemeral)
        return {"message_ts": ephemeral["message_ts"]}

    async def _chat_get_permalink(self, args: dict[str, Any]) -> dict[str, Any]:
        channel = self._channel(args.get("channel"))
        message = self._find(channel["id"], args.get("message_ts"))
        if message is None:
            raise SlackError("message_not_found")
        link = f"https://standin.slack.com/archives/{channel['id']}/p{message['ts'].replace('.', '')}"
        if message.get("thread_ts") not in (None, message["ts"]):
            link += "?" + urlencode({"thread_ts": message["thread_ts"], "cid": channel["id"]})
        return {"channel": channel["id"], "permalink": link}

    def _reaction_target(self, args: Mapping[str, Any]) -> tuple[dict[str, Any], str]:
        channel = self._channel(args.get("channel"))
        message = self._find(channel["id"], args.get("timestamp"))
        if message is None:
            raise SlackError("message_not_found")
        name = str(args.get("name") or "").strip(":")
        if not name:
            raise SlackError("invalid_name")
        return message, name

    async def _reactions_add(self, args: dict[str, Any]) -> dict[str, Any]:
        message, name = self._reaction_target(args)
        reactions = message.setdefault("reactions", [])
        reaction = next((r for r in reactions if r["name"] == name), None)
        if reaction is None:
            reaction = {"name": name, "users": [], "count": 0}
            reactions.append(reaction)
        if self.bot_user_id in reaction["users"]:
            raise SlackError("already_reacted")
        reaction["users"].append(self.bot_user_id)
        reaction["count"] += 1
        return {}

    async def _reactions_remove(self, args: dict[str, Any]) -> dict[str, Any]:
        message, name = self._reaction_target(args)
        reactions = message.get("reactions", [])
        reaction = next((r for r in reactions if r["name"] == name), None)
        if reaction is None or self.bot_user_id not in reaction["users"]:
            raise SlackError("no_reaction")
        reaction["users"].remove(self.bot_user_id)
        reaction["count"] -= 1
        if reaction["count"] == 0:
            reactions.remove(reaction)
        if not reactions:
            message.pop("reactions", None)
        return {}

    @staticmethod
    def _in_range(ts: str, args: Mapping[str, Any]) -> bool:
        inclusive = _truthy(args.get("inclusive"))
        key = _ts_key(ts)
        if args.get("oldest"):
            oldest = _ts_key(str(args["oldest"]))
            if key < oldest or (key == oldest and not inclusive):
                return False
        if args.get("latest"):
            latest = _ts_key(str(args["latest"]))
            if key > latest or (key == latest and not inclusive):
                return False
        return True

    @staticmethod
    def _page(items: list[dict[str, Any]], args: Mapping[str, Any], default_limit: int) -> dict[str, Any]:
        limit = _int_arg(args.get("limit"), default_limit, 1000)
        start = _decode_cursor(args.get("cursor"))
        page = items[start : start + limit]
        more = start + limit < len(items)
        return {
            "messages": page,
            "has_more": more,
            "response_metadata": {"next_cursor": _encode_cursor(start + limit) if more else ""},
        }

    async def _conversations_history(self, args: dict[str, Any]) -> dict[str, Any]:
        channel = self._channel(args.get("channel"))
        metadata = _truthy(args.get("include_all_metadata"))
        items = [
            self._visible(m, metadata)
            for m in reversed(self._messages.get(channel["id"], []))
            if (m.get("thread_ts") in (None, m["ts"]) or m.get("subtype") == "thread_broadcast")
            and self._in_range(m["ts"], args)
        ]
        return self._page(items, args, 100)

    async def _conversations_replies(self, args: dict[str, Any]) -> dict[str, Any]:
        channel = self._channel(args.get("channel"))
        message = self._find(channel["id"], args.get("ts"))
        if message is None:
            raise SlackError("thread_not_found")
        root_ts = message.get("thread_ts") or message["ts"]
        metadata = _truthy(args.get("include_all_metadata"))
        items = [
            self._visible(m, metadata)
            for m in self.thread(channel["id"], root_ts)
            if m["ts"] == root_ts or self._in_range(m["ts"], args)
        ]
        return self._page(items, args, 1000)

    async def _conversations_info(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"channel": dict(self._channel(args.get("channel")))}

    async def _conversations_members(self, args: dict[str, Any]) -> dict[str, Any]:
        channel = self._channel(args.get("channel"))
        members = self.members.get(channel["id"], [])
        limit = _int_arg(args.get("limit"), 100, 1000)
        start = _decode_cursor(args.get("cursor"))
        more = start + limit < len(members)
        return {"members": members[start : start + limit],
                "response_metadata": {"next_cursor": _encode_cursor(start + limit) if more else ""}}

    async def _apps_connections_open(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"url": self.socket_mode.issue_url(self.base_url)}

    async def _users_info(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"user": copy.deepcopy(self._user(args.get("user")))}

    async def _usergroups_users_list(self, args: dict[str, Any]) -> dict[str, Any]:
        group = args.get("usergroup")
        if group not in self.usergroups:
            raise SlackError("no_such_subteam")
        return {"users": list(self.usergroups[group])}

    async def _usergroups_list(self, args: dict[str, Any]) -> dict[str, Any]:
        groups = []
        for group_id, members in self.usergroups.items():
            handle = self.usergroup_handles.get(group_id, group_id.lower())
            group: dict[str, Any] = {"id": group_id, "team_id": self.team_id, "is_usergroup": True,
                                     "name": handle, "handle": handle, "description": "", "date_delete": 0,
                                     "user_count": len(members)}
            if _truthy(args.get("include_users")):
                group["users"] = list(members)
            groups.append(group)
        return {"usergroups": groups}

    async def _files_get_upload_url(self, args: dict[str, Any]) -> dict[str, Any]:
        filename = args.get("filename")
        try:
            length = int(args.get("length"))  # type: ignore[arg-type]
        except (TypeError, ValueError) as exc:
            raise SlackError("invalid_arguments") from exc
        if not filename or length < 0:
            raise SlackError("invalid_arguments")
        key = secrets.token_urlsafe(16)
        file_id = "F" + secrets.token_hex(5).upper()
        self._uploads[key] = _Upload(file_id, str(filename), length, args.get("alt_txt"))
        return {"upload_url": f"{self.base_url}/upload/v1/{key}", "file_id": file_id}

    async def _upload(self, request: web.Request) -> web.Response:
        key = request.match_info["key"]
        call = SlackCall("upload", {"key": key}, time.monotonic())
        self.calls.append(call)
        if self._is_down():
            call.status, call.ok = 503, False
            return web.Response(status=503, text="Service Unavailable")
        upload = self._uploads.get(key)
        if upload is None:
            call.status, call.ok = 404, False
            return web.Response(status=404, text="Not Found")
        if request.content_type == "multipart/form-data":
            form = await request.post()
            part = next((v for v in form.values() if isinstance(v, web.FileField)), None)
            if part is None:
                call.status, call.ok = 400, False
                return web.Response(status=400, text="no file part")
            upload.data, upload.content_type = part.file.read(), part.content_type
        else:
            upload.data = await request.read()
            upload.content_type = request.content_type
        call.args["size"] = len(upload.data)
        return web.Response(text=f"OK - {len(upload.data)}", content_type="text/plain")

    async def _files_complete_upload(self, args: dict[str, Any]) -> dict[str, Any]:
        entries = _json_arg(args.get("files"))
        if not isinstance(entries, list) or not entries:
            raise SlackError("invalid_arguments")
        by_id = {u.file_id: (key, u) for key, u in self._uploads.items()}
        channel_id = args.get("channel_id") or (str(args["channels"]).split(",")[0] if args.get("channels") else None)
        channel = self._writable(channel_id) if channel_id else None
        thread_ts = args.get("thread_ts")
        if thread_ts and channel is None:
            raise SlackError("invalid_arguments")
        created = []
        for entry in entries:
            found = by_id.get(str(entry.get("id")) if isinstance(entry, dict) else "")
            if found is None or found[1].data is None:
                raise SlackError("file_not_found")
            created.append((entry, found))
        files = []
        for entry, (key, upload) in created:
            assert upload.data is not None  # checked above
            mime = mimetypes.guess_type(upload.filename)[0]
            if mime is None and upload.content_type not in (None, "application/octet-stream"):
                mime = upload.content_type
            file = self._make_file(upload.file_id, upload.data, upload.filename, mime, entry.get("title"), None)
            if upload.alt_txt:
                file["alt_txt"] = upload.alt_txt
            del self._uploads[key]
            files.append(file)
        if channel is not None:
            message: dict[str, Any] = {
                "type": "message",
                "user": self.bot_user_id,
                "bot_id": self.bot_id,
                "app_id": self.app_id,
                "team": self.team_id,
                "text": str(args.get("initial_comment") or ""),
                "upload": True,
                "files": [copy.deepcopy(f) for f in files],
            }
            if args.get("blocks"):
                message["blocks"] = _json_arg(args["blocks"], "invalid_blocks_format")
            stored = self._store(channel["id"], message, thread_ts)
            share: dict[str, Any] = {
                "ts": stored["ts"],
                "channel_name": channel["name"],
                "team_id": self.team_id,
            }
            if stored.get("thread_ts"):
                share["thread_ts"] = stored["thread_ts"]
            visibility = "private" if channel["is_private"] else "public"
            for file in files:
                file["shares"].setdefault(visibility, {}).setdefault(channel["id"], []).append(share)
                file["channels" if not channel["is_private"] else "groups"].append(channel["id"])
        return {"files": [{"id": f["id"], "title": f["title"]} for f in files]}

    async def _files_info(self, args: dict[str, Any]) -> dict[str, Any]:
        file = self.files.get(str(args.get("file") or ""))
        if file is None:
            raise SlackError("file_not_found")
        return {"file": copy.deepcopy(file), "comments": [], "response_metadata": {"next_cursor": ""}}

    async def _files_delete(self, args: dict[str, Any]) -> dict[str, Any]:
        """A bot token deletes only the files its app uploaded; messages keep a tombstone in their place."""
        file_id = str(args.get("file") or "")
        file = self.files.get(file_id)
        if file is None:
            raise SlackError("file_deleted" if file_id in self.deleted_files else "file_not_found")
        if file["user"] != self.bot_user_id:
            raise SlackError("cant_delete_file")
        del self.files[file_id]
        self._file_data.pop(file_id, None)
        self.deleted_files.add(file_id)
        for messages in self._messages.values():
            for m in messages:
                if any(f.get("id") == file_id for f in m.get("files") or []):
                    m["files"] = [{"id": file_id, "mode": "tombstone"} if f.get("id") == file_id else f
                                  for f in m["files"]]
        return {}

    async def _conversations_open(self, args: dict[str, Any]) -> dict[str, Any]:
        """A direct message with one user (created on first use)."""
        users = [u for u in str(args.get("users") or "").split(",") if u]
        if len(users) != 1:
            raise SlackError("invalid_arguments" if not users else "not_implemented")
        self._user(users[0])
        dm_id = "D" + users[0][1:]
        if dm_id not in self.channels:
            channel = self.add_channel(dm_id, dm_id.lower())
            channel.update(is_channel=False, is_im=True, user=users[0])
            self.members[dm_id].append(users[0])
        return {"channel": {"id": dm_id}}

    async def _download(self, request: web.Request) -> web.Response:
        team_file = request.match_info["team_file"]
        file_id = team_file.split("-", 1)[-1]
        call = SlackCall("file_download", {"file": file_id}, time.monotonic())
        self.calls.append(call)
        if self._is_down():
            call.status, call.ok = 503, False
            return web.Response(status=503, text="Service Unavailable")
        if self._authorized(request, {}) is not None:
            call.status, call.ok = 403, False
            return web.Response(status=403, text="a bot token is required")
        file = self.files.get(file_id)
        if file is None:
            call.status, call.ok = 404, False
            return web.Response(status=404, text="Not Found")
        return web.Response(body=self._file_data[file_id], content_type=file["mimetype"])

    async def _response_url(self, request: web.Request) -> web.Response:
        # Slash command / interaction response_url: record the posted message.
        try:
            body = await request.json()
        except ValueError:
            body = {}
        self.calls.append(SlackCall("response_url", body if isinstance(body, dict) else {}, time.monotonic()))
        return web.Response(text="ok")

    # ---- views -----------------------------------------------------------------------------------

    def _use_trigger(self, trigger_id: Any) -> None:
        if not trigger_id or str(trigger_id) not in self._triggers:
            raise SlackError("invalid_trigger_id")
        issued = self._triggers[str(trigger_id)]
        if issued is None:
            raise SlackError("exchanged_trigger_id")
        if time.monotonic() - issued > self.trigger_ttl:
            raise SlackError("expired_trigger_id")
        self._triggers[str(trigger_id)] = None

    def _new_view(self, view_arg: Any, previous: str | None = None, root: str | None = None) -> dict[str, Any]:
        view = _json_arg(view_arg, "invalid_arguments")
        if not isinstance(view, dict) or view.get("type") not in ("modal", "home"):
            raise SlackError("invalid_arguments")
        if len(view.get("blocks") or []) > 100 or _view_breaks_limits(view):
            raise SlackError("invalid_arguments")
        view_id = "V" + secrets.token_hex(5).upper()
        stored = {
            "id": view_id,
            "team_id": self.team_id,
            "type": view["type"],
            "title": view.get("title"),
            "submit": view.get("submit"),
            "close": view.get("close"),
            "blocks": view.get("blocks") or [],
            "private_metadata": view.get("private_metadata", ""),
            "callback_id": view.get("callback_id", ""),
            "external_id": view.get("external_id", ""),
            "state": {"values": {}},
            "hash": f"{int(time.time())}.{secrets.token_hex(4)}",
            "clear_on_close": bool(view.get("clear_on_close", False)),
            "notify_on_close": bool(view.get("notify_on_close", False)),
            "root_view_id": root or view_id,
            "previous_view_id": previous,
            "app_id": self.app_id,
            "bot_id": self.bot_id,
        }
        self.views[view_id] = stored
        return stored

    async def _views_open(self, args: dict[str, Any]) -> dict[str, Any]:
        self._use_trigger(args.get("trigger_id"))
        return {"view": copy.deepcopy(self._new_view(args.get("view")))}

    async def _views_push(self, args: dict[str, Any]) -> dict[str, Any]:
        self._use_trigger(args.get("trigger_id"))
        return {"view": copy.deepcopy(self._new_view(args.get("view")))}

    async def _views_update(self, args: dict[str, Any]) -> dict[str, Any]:
        current: dict[str, Any] | None = None
        if args.get("view_id"):
            current = self.views.get(str(args["view_id"]))
        elif args.get("external_id"):
            current = next((v for v in self.views.values() if v["external_id"] == args["external_id"]), None)
        else:
            raise SlackError("invalid_arguments")
        if current is None:
            raise SlackError("not_found")
        if args.get("hash") and args["hash"] != current["hash"]:
            raise SlackError("hash_conflict")
        replacement = self._new_view(args.get("view"), current["previous_view_id"], current["root_view_id"])
        del self.views[replacement["id"]]
        replacement["id"] = current["id"]
        replacement["state"] = current["state"]
        self.views[current["id"]] = replacement
        return {"view": copy.deepcopy(replacement)}

    async def _views_publish(self, args: dict[str, Any]) -> dict[str, Any]:
        # Slack: docs.slack.dev/reference/methods/views.publish (no scope; one Home view per user and app).
        user_id = str(args.get("user_id") or "")
        if not _SLACK_ID.match(user_id) or (self.strict and user_id not in self.users):
            raise SlackError("invalid_arguments")
        view = _json_arg(args.get("view"), "invalid_arguments")
        if isinstance(view, dict) and view.get("type") == "home" and not self.home_tab_enabled:
            raise SlackError("not_enabled")
        if len(json.dumps(view)) > 250_000:
            raise SlackError("view_too_large")
        current = self.home_views.get(user_id)
        if args.get("hash") and (current is None or args["hash"] != current["hash"]):
            raise SlackError("hash_conflict")
        published = self._new_view(view)
        if published["type"] != "home":
            del self.views[published["id"]]
            raise SlackError("invalid_arguments")
        if current is not None:
            del self.views[published["id"]]
            published["id"] = published["root_view_id"] = current["id"]
            self.views[current["id"]] = published
        self.home_views[user_id] = published
        return {"view": copy.deepcopy(published)}

