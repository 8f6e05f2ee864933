"""The Slack stand-in's HTTP side: routes each Web API call to its family, records it, and plays faults."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from functools import partial
from typing import Any, ClassVar

from aiohttp import web

from bot.standins._http import LoopbackServer
from bot.standins.slack import auth, chat, conversations, files, reactions, users, views
from bot.standins.slack.faults import BROKEN_ANSWERS, Faults, Limit
from bot.standins.slack.oauth import OAuthError
from bot.standins.slack.state import CALLER, DEFAULT_SCOPES, SlackWorkspace
from bot.standins.slack.towards_app import SlackTowardsApp
from bot.standins.slack.wire import SlackCall, SlackError

Method = Callable[[SlackWorkspace, dict[str, Any]], Awaitable[dict[str, Any]]]
METHODS: dict[str, Method] = {
    **auth.METHODS, **chat.METHODS, **reactions.METHODS, **conversations.METHODS, **users.METHODS,
    **files.METHODS, **views.METHODS,
}


class SlackStandin(LoopbackServer, SlackTowardsApp):
    """Fake Slack Web API. `strict=False` creates unknown channels/users on first use."""

    # How long a trigger_id stays valid unless `trigger_ttl` says otherwise: Slack's own 3 seconds. A test
    # suite on a busy machine may set a longer one for every stand-in it starts (see tests/conftest.py).
    default_trigger_ttl: ClassVar[float] = 3.0

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
        trigger_ttl: float | None = None,
        latency: float = 0.0,
        port: int = 0,
        home_tab_enabled: bool = True,
        app_token: str = "xapp-1-A0STANDIN-1-standin",
        client_id: str = "111.222",
        client_secret: str = "standin-client-secret",
        token_rotation: bool = False,
    ) -> None:
        LoopbackServer.__init__(self, port=port, latency=latency)
        SlackWorkspace.__init__(
            self, bot_token=bot_token, tokens=tokens, scopes=scopes, team_id=team_id, team_name=team_name,
            bot_user_id=bot_user_id, bot_id=bot_id, app_id=app_id, strict=strict,
            trigger_ttl=self.default_trigger_ttl if trigger_ttl is None else trigger_ttl,
            home_tab_enabled=home_tab_enabled, app_token=app_token, client_id=client_id,
            client_secret=client_secret, token_rotation=token_rotation,
        )
        self._faults = Faults()
        # Each Web API method's handler, bound to this workspace; a subclass may add or replace one.
        self._methods: dict[str, Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]] = {
            name: partial(handler, self) for name, handler in METHODS.items()
        }
        self._hangs_end = asyncio.Event()  # set on stop, so a hanging answer does not hold the shutdown

    @property
    def api_url(self) -> str:
        """What slack_sdk takes as `base_url`: `http://127.0.0.1:PORT/api/`."""
        return f"{self.base_url}/api/"

    # ---- faults ----------------------------------------------------------------------------------

    def rate_limit(self, method: str, times: int = 1, retry_after: float = 1) -> None:
        """Answer the next `times` calls of `method` with HTTP 429 and Retry-After."""
        self._faults.rate_limited.setdefault(method, []).extend([retry_after] * times)

    def limit_per_channel(self, method: str, per_second: float, burst: int = 1) -> None:
        """Refuse `method` beyond `per_second` calls per channel (after a burst) with 429 + Retry-After.

        Slack documents chat.postMessage as about one message per second per channel, short bursts
        tolerated; calls over the allowance are refused, not queued, and refusals do not use it up.
        """
        self._faults.limits[method] = Limit(per_second, float(max(1, burst)))

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
        CALLER.set(owner or self.team_id)
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
        if self._faults.is_down():
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
        limit = self._faults.limits.get(method)
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
        call.team = CALLER.get()
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
        kind = self._faults.next_broken(method)
        if kind is None:
            return None
        call.status, call.ok, call.error = (503 if kind == "text_503" else 200), False, kind
        if kind == "hang":
            await self._hangs_end.wait()  # however long the caller waits; released when the server stops
        if kind in ("text_503", "hang"):
            return web.Response(status=503, text="upstream connect error or disconnect/reset before headers",
                                content_type="text/plain")
        return web.Response(status=200, body=b"<html>not json", content_type="application/json")

    # ---- file bytes and response URLs (outside the Web API) --------------------------------------

    async def _upload(self, request: web.Request) -> web.Response:
        key = request.match_info["key"]
        call = SlackCall("upload", {"key": key}, time.monotonic())
        self.calls.append(call)
        if self._faults.is_down():
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

    async def _download(self, request: web.Request) -> web.Response:
        team_file = request.match_info["team_file"]
        file_id = team_file.split("-", 1)[-1]
        call = SlackCall("file_download", {"file": file_id}, time.monotonic())
        self.calls.append(call)
        if self._faults.is_down():
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
