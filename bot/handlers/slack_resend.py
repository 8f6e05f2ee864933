"""The "Resend N" button of an `unknown` recipients notice: campaign managers only, acted on once."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import partial
from typing import Any

from slack_bolt.async_app import AsyncApp

from bot.deps import Deps
from bot.handlers.slack_campaign import manager_refusal
from bot.slack.permissions import Permissions
from scheduler.campaigns.unknown_notice import RESEND_ACTION, parse_button_value, resent_text
from scheduler.campaigns.unknown_store import resend_unknown

log = logging.getLogger(__name__)


@dataclass
class _ResendListeners:
    """What the listeners below share within one app."""

    deps: Deps
    permissions: Permissions


def register(bolt: AsyncApp, deps: Deps) -> None:
    app = _ResendListeners(deps, Permissions(deps.settings.slack, deps.slack))
    bolt.action(RESEND_ACTION)(partial(on_resend, app))


async def on_resend(app: _ResendListeners, ack: Any, body: dict[str, Any], respond: Any) -> None:
    deps = app.deps
    await ack()
    user = str((body.get("user") or {}).get("id") or "")
    if (refused := await manager_refusal(app.permissions, user)) is not None:
        await respond(response_type="ephemeral", replace_original=False, text=refused)
        return
    actions = body.get("actions") or [{}]
    parsed = parse_button_value(str(actions[0].get("value") or ""))
    if parsed is None:
        await respond(response_type="ephemeral", replace_original=False,
                      text="This button is not valid any more; use `wabridge campaign resend-unknown ID`.")
        return
    campaign_id, newest_id = parsed
    # The UPDATE is conditional on `unknown`: a second click (or Slack's retry) finds none and sends nobody.
    async with deps.sessions() as session, session.begin():
        n = await resend_unknown(session, campaign_id, up_to=newest_id)
    log.info("campaign %s: %s unknown recipients resent by %s", campaign_id, n, user)
    await respond(replace_original=True, text=resent_text(campaign_id, n, user))

