"""The slack-bolt app inside our aiohttp application: `POST /slack/events`, or Socket Mode with an app token.

Listeners come from the modules named in `LISTENERS`; one error handler logs what a listener raised.
Bolt talks to Slack through `Deps.slack`, whose base URL is `slack.api_url`, so tests use a stand-in.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request
from slack_bolt.async_app import AsyncApp

from bot.deps import Deps
from bot.handlers import slack_actions, slack_campaign, slack_messages, slack_resend

log = logging.getLogger(__name__)

Registrar = Callable[[AsyncApp, Deps], None]

# Every listener module, listed once: each `register(bolt, deps)` adds its listeners to one bolt app.
LISTENERS: tuple[Registrar, ...] = (slack_messages.register, slack_actions.register, slack_campaign.register,
                                     slack_resend.register)

BOLT = web.AppKey("slack_bolt", AsyncApp)


def build_bolt_app(deps: Deps) -> AsyncApp:
    """A bolt AsyncApp on the shared Slack client, with every registered listener."""
    bolt = AsyncApp(
        client=deps.slack,
        signing_secret=deps.settings.slack.signing_secret,
        # Listeners acknowledge at once and work after; modals still answer within Slack's 3 seconds.
        process_before_response=False,
        logger=logging.getLogger("bot.slack.bolt"),
    )
    for register in LISTENERS:
        register(bolt, deps)
    bolt.error(_listener_failed)
    return bolt


async def _listener_failed(error: Exception, body: dict[str, Any], logger: logging.Logger) -> None:
    """One line per failed listener (Slack already got its ack); the person sees the listener's own note."""
    kind = body.get("type") or (body.get("event") or {}).get("type") or body.get("command") or "request"
    logger.error("Slack %s failed: %s: %s", kind, error.__class__.__name__, error,
                 exc_info=(type(error), error, error.__traceback__))


async def slack_events(request: web.Request) -> web.Response:
    """`POST /slack/events`: Events API, slash commands and interactivity, verified by bolt."""
    bolt = request.app.get(BOLT)
    if bolt is None:
        return web.Response(status=503, text="Slack is not ready yet")
    refused = await _malformed(request)
    if refused is not None:
        return refused
    return await to_aiohttp_response(await bolt.async_dispatch(await to_bolt_request(request)))


async def _malformed(request: web.Request) -> web.Response | None:
    """What bolt's checks would crash on (500) rather than refuse: a non-numeric timestamp or a non-ASCII
    signature (slack_sdk's verifier calls int() and hmac.compare_digest on them), or a body that is not
    UTF-8 (the aiohttp adapter decodes it strictly). Slack sends none of these."""
    timestamp = request.headers.get("X-Slack-Request-Timestamp", "")
    signature = request.headers.get("X-Slack-Signature", "")
    if not (timestamp.isascii() and timestamp.isdigit()) or not signature.isascii():
        return web.json_response({"error": "invalid request"}, status=401)
    try:
        (await request.read()).decode("utf-8")
    except UnicodeDecodeError:
        return web.json_response({"error": "body is not UTF-8"}, status=400)
    return None


async def start_socket_mode(bolt: AsyncApp, app_token: str) -> object:
    """Connect over Socket Mode (development without a public URL); returns the handler to close later."""
    from slack_bolt.adapter.socket_mode.aiohttp import AsyncSocketModeHandler

    handler = AsyncSocketModeHandler(bolt, app_token)
    await handler.connect_async()
    log.info("Slack Socket Mode connected")
    return handler
