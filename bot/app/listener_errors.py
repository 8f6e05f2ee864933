"""What happens when a Slack listener raises: the traceback logged, the error counted, the person told.

Only `payloads.MalformedPayload` means the request was at fault (400); anything else is a fault of ours, and
whoever clicked, typed or opened something hears that it may not have been done rather than nothing.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Sequence
from typing import Any

from slack_bolt.response import BoltResponse
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.webhook.async_client import AsyncWebhookClient

from bot.deps import Deps
from bot.slack.errors import slack_reason
from bot.slack.payloads import MalformedPayload

log = logging.getLogger("bot.app.bolt")

TRY_AGAIN = (":warning: Something went wrong in the bridge, so this may not have been done (the error is in its "
             "log). Try again; if it keeps happening, tell your Wabridge admin.")
REPLY_FAILED = (":warning: The bridge hit an error while handling your message, so it may not have reached the "
                "customer (the error is in its log). Check the thread's statuses before sending it again.")
HOME_FAILED = "The bridge could not build this tab just now (the error is in its log); it will try again."
TELL_TIMEOUT = 10  # seconds for telling the person; Slack's own answer went out already
ACK_SEEN = 0.05  # seconds: several of bolt's 10 ms looks at a listener's ack
_JSON: dict[str, str | Sequence[str]] = {"content-type": "application/json"}


def kind_of(body: object) -> str:
    """The request's kind for logs and metrics: the event type inside an event, else the payload type."""
    if not isinstance(body, dict):
        return "unknown"
    if "command" in body and "type" not in body:
        return "command"
    event = body.get("event")
    if body.get("type") == "event_callback" and isinstance(event, dict):
        return str(event.get("type") or "event")
    return str(body.get("type") or "unknown")


async def on_listener_error(deps: Deps, error: Exception, body: dict[str, Any], response: BoltResponse | None,
                            client: AsyncWebClient | None = None) -> BoltResponse | None:
    """bolt's error handler: 400 for a malformed payload; for anything else, log, count and tell (through the
    request's own workspace client when bolt has authorized one)."""
    kind = kind_of(body)
    if isinstance(error, MalformedPayload):
        log.warning("Slack %s refused: %s", kind, error)
        return None if response is None else BoltResponse(status=400, body='{"error": "malformed payload"}',
                                                          headers=_JSON)
    deps.metrics.listener_errors.labels(kind).inc()
    log.error("Slack %s failed: %s: %s", kind, type(error).__name__, error,
              exc_info=(type(error), error, error.__traceback__))
    if response is not None:  # Slack still waits: the answer itself says so where Slack shows it
        answer = _answer(kind)
        if answer is not None:
            return BoltResponse(status=200, body=json.dumps(answer), headers=_JSON)
    await tell(client or deps.slack, kind, body)
    if response is None:
        # bolt (1.30) sets the listener's ack back to None once this returns, and its dispatcher, polling
        # every 10 ms, answers 404 "unhandled" if it had not seen the ack by then: give it that look first.
        await asyncio.sleep(ACK_SEEN)
        return None
    return BoltResponse(status=200, body="")


def _answer(kind: str) -> dict[str, Any] | None:
    if kind == "command":
        return {"response_type": "ephemeral", "text": TRY_AGAIN}
    if kind == "view_submission":
        return {"response_action": "update", "view": {
            "type": "modal", "title": {"type": "plain_text", "text": "Not done"},
            "close": {"type": "plain_text", "text": "Close"},
            "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": TRY_AGAIN}}]}}
    if kind == "block_suggestion":
        return {"options": []}
    return None


async def tell(slack: AsyncWebClient, kind: str, body: dict[str, Any]) -> None:
    """Tell the person behind a failed request, where Slack lets us: best effort, never raising."""
    event = body.get("event") if isinstance(body.get("event"), dict) else {}
    assert isinstance(event, dict)
    user = _id(body.get("user")) or str(body.get("user_id") or "") or _id(event.get("user"))
    try:
        if isinstance(body.get("response_url"), str):
            hook = AsyncWebhookClient(body["response_url"], timeout=TELL_TIMEOUT, session=slack.session)
            await hook.send(text=TRY_AGAIN, response_type="ephemeral", replace_original=False)
        elif kind == "message" and user and isinstance(event.get("channel"), str):
            await slack.chat_postEphemeral(channel=event["channel"], user=user, text=REPLY_FAILED,
                                                thread_ts=event.get("thread_ts") or event.get("ts"))
        elif kind == "app_home_opened" and user:
            await slack.views_publish(user_id=user, view={"type": "home", "blocks": [
                {"type": "section", "text": {"type": "mrkdwn", "text": HOME_FAILED}}]})
        elif user:
            await slack.chat_postMessage(channel=user, text=TRY_AGAIN)  # the app's Messages tab
        else:
            log.warning("Slack %s failed and names nobody to tell", kind)
    except Exception as exc:  # telling is a side matter: the failure itself is logged above
        log.warning("could not tell %s that their Slack %s failed: %s", user or "anyone", kind, slack_reason(exc))


def _id(value: object) -> str:
    if isinstance(value, dict):
        return str(value.get("id") or "")
    return value if isinstance(value, str) else ""
