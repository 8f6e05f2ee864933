"""The slack-bolt app inside our aiohttp application: `POST /slack/events`, or Socket Mode with an app token.

Listeners come from the modules named in `LISTENERS`; one error handler (`listener_errors`) logs what a
listener raised with its traceback, counts it and tells the person. Only the payload check at the edge
(`request_guard`, `payloads.check_shape`) answers 400.
Bolt talks to Slack through `Deps.slack`, whose base URL is `slack.api_url`, so tests use a stand-in.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request
from slack_bolt.async_app import AsyncApp
from slack_bolt.response import BoltResponse
from slack_sdk.signature import SignatureVerifier
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.app.listener_errors import on_listener_error
from bot.deps import Deps
from bot.handlers import (
    appkeys,
    slack_actions,
    slack_campaign,
    slack_inbox,
    slack_install,
    slack_messages,
    slack_privacy,
    slack_resend,
    slack_saved_replies,
    slack_scope,
)
from bot.slack.answer_time import note_arrival
from bot.slack.payloads import check_shape
from bot.slack.request_guard import body_problem

log = logging.getLogger(__name__)

Registrar = Callable[[AsyncApp, Deps], None]

# Every listener module, listed once: each `register(bolt, deps)` adds its listeners to one bolt app.
LISTENERS: tuple[Registrar, ...] = (slack_messages.register, slack_actions.register, slack_campaign.register,
                                     slack_resend.register, slack_privacy.register, slack_install.register,
                                     slack_inbox.register, slack_saved_replies.register)

BOLT = web.AppKey("slack_bolt", AsyncApp)


class _WithoutClientTokenNotice(logging.Filter):
    """Drops bolt's start-up notice that the token is unused: bolt reads SLACK_BOT_TOKEN from the environment
    even when given a client, which is how this app always builds it, so the notice says nothing."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "will be unused" not in record.getMessage()


def build_bolt_app(deps: Deps, engine: AsyncEngine | None = None) -> AsyncApp:
    """A bolt AsyncApp on the shared Slack client, with every registered listener; with slack.client_id, bolt's
    OAuth flow and each request authorized by its workspace's installation (`engine` keeps OAuth states)."""
    bolt_log = logging.getLogger("bot.slack.bolt")
    if not any(isinstance(f, _WithoutClientTokenNotice) for f in bolt_log.filters):
        bolt_log.addFilter(_WithoutClientTokenNotice())
    oauth = None
    if deps.settings.slack.many_workspaces:
        if engine is None:
            raise RuntimeError("many-workspace mode needs the database engine for OAuth states")
        oauth = slack_install.oauth_settings(deps, engine)
    bolt = AsyncApp(
        client=deps.slack,
        signing_secret=deps.settings.slack.signing_secret,
        # Listeners acknowledge at once and work after; modals still answer within Slack's 3 seconds.
        process_before_response=False,
        logger=bolt_log,
        oauth_settings=oauth,
    )
    bolt.use(_shape_checked)  # Socket Mode requests skip `slack_events`' own check
    slack_scope.register(bolt, deps)  # before any listener: the request's workspace scopes what they see
    for register in LISTENERS:
        register(bolt, deps)
    bolt.error(partial(on_listener_error, deps))
    return bolt


async def _shape_checked(body: dict[str, Any], next_: Callable[[], Awaitable[BoltResponse]]) -> BoltResponse:
    check_shape(body)  # MalformedPayload reaches the error handler, which answers 400
    return await next_()


async def slack_events(request: web.Request) -> web.Response:
    """`POST /slack/events`: Events API, slash commands and interactivity, verified by bolt."""
    received = time.monotonic()  # Slack's 3 seconds run from here (answer_time)
    bolt = request.app.get(BOLT)
    if bolt is None:
        return web.Response(status=503, text="Slack is not ready yet")
    refused = await _malformed(request, request.app[appkeys.SETTINGS].slack.signing_secret)
    if refused is not None:
        return refused
    try:
        bolt_request = await to_bolt_request(request)
        note_arrival(bolt_request.context, received)
        answer = await bolt.async_dispatch(bolt_request)
    except Exception:  # outside any listener (bolt's routing): ours to fix; Slack retries an event it gets 500 for
        request.app[appkeys.METRICS].listener_errors.labels("dispatch").inc()
        log.exception("Slack request failed before reaching a listener")
        return web.json_response({"error": "internal error"}, status=500)
    return await to_aiohttp_response(answer)


async def slack_install_page(request: web.Request) -> web.Response:
    """`GET /slack/install`: bolt's "Add to Slack" page, with a fresh OAuth state."""
    return await _oauth(request, install=True)


async def slack_oauth_redirect(request: web.Request) -> web.Response:
    """`GET /slack/oauth_redirect`: Slack sends the installer back here; bolt exchanges the code and stores."""
    return await _oauth(request, install=False)


async def _oauth(request: web.Request, *, install: bool) -> web.Response:
    bolt = request.app.get(BOLT)
    flow = bolt.oauth_flow if bolt is not None else None
    if flow is None:
        return web.Response(status=404, text="Not installable: slack.client_id is not set")
    bolt_request = await to_bolt_request(request)
    answer = await (flow.handle_installation(bolt_request) if install else flow.handle_callback(bolt_request))
    return await to_aiohttp_response(answer)


async def _malformed(request: web.Request, signing_secret: str) -> web.Response | None:
    """What bolt would crash on (500) rather than refuse: a non-numeric timestamp or a non-ASCII
    signature (slack_sdk's verifier calls int() and hmac.compare_digest on them), a body that is not
    UTF-8 (the aiohttp adapter decodes it strictly), or, once the signature holds, JSON that is invalid, too
    deep or not an object (bolt parses it before any check). Slack sends none of these."""
    timestamp = request.headers.get("X-Slack-Request-Timestamp", "")
    signature = request.headers.get("X-Slack-Signature", "")
    if not (timestamp.isascii() and timestamp.isdigit()) or not signature.isascii():
        return web.json_response({"error": "invalid request"}, status=401)
    raw = await request.read()
    try:
        body = raw.decode("utf-8")
    except UnicodeDecodeError:
        return web.json_response({"error": "body is not UTF-8"}, status=400)
    if not SignatureVerifier(signing_secret).is_valid(raw, timestamp, signature):
        return web.json_response({"error": "invalid request signature"}, status=401)
    problem = body_problem(body, request.content_type)
    if problem is not None:
        return web.json_response({"error": problem}, status=400)
    return None


async def start_socket_mode(bolt: AsyncApp, app_token: str) -> object:
    """Connect over Socket Mode (development without a public URL); returns the handler to close later."""
    from slack_bolt.adapter.socket_mode.aiohttp import AsyncSocketModeHandler

    handler = AsyncSocketModeHandler(bolt, app_token)
    await handler.connect_async()
    log.info("Slack Socket Mode connected")
    return handler
