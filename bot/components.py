"""The parts `serve` mounts on the application besides webhooks, health and metrics, by process role."""

from __future__ import annotations

import asyncio
from typing import Literal

from aiohttp import web

from bot import appkeys
from bot.app import Component, background
from bot.config import Settings

Role = Literal["all", "web", "worker"]


def default_components(settings: Settings, role: Role | str = "all") -> list[Component]:
    """Slack bridge, scheduler and campaign runner, and the /onboard page, as configured for the role.

    web: HTTP only (Slack endpoints, /onboard); worker: the Slack outbox and the campaigns, no endpoints."""
    from bot.onboarding.page import onboarding_component
    from bot.slack.component import make_slack_component, slack_component
    from scheduler.component import campaign_component

    if role == "web":
        return [make_slack_component(outbox=False), onboarding_component]
    if role == "worker":
        return [slack_outbox_component, campaign_component, onboarded_channels_component]
    if role != "all":
        raise ValueError(f"unknown role {role!r}")
    return [slack_component, campaign_component, onboarding_component]


def slack_outbox_component(app: web.Application) -> None:
    """The Slack outbox worker alone, without `/slack/events` or Socket Mode (a worker-only process)."""
    from bot.slack.component import add_outbox_kinds, builtin_kinds, outbox_worker_task

    add_outbox_kinds(app, builtin_kinds())
    app.cleanup_ctx.append(background("slack-outbox", outbox_worker_task))


def onboarded_channels_component(app: web.Application) -> None:
    """Keep this process's channels in step with numbers connected through /onboard in a web process."""
    from bot.onboarding.channels import refresh_forever

    def start(app: web.Application) -> asyncio.Task[None]:
        return asyncio.create_task(refresh_forever(app[appkeys.SETTINGS], app[appkeys.SESSIONS],
                                                   app[appkeys.CHANNEL_IDS]))

    app.cleanup_ctx.append(background("onboarded-channels", start))
