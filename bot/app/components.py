"""The parts `serve` mounts on the application besides webhooks, health and metrics, by process role."""

from __future__ import annotations

import asyncio
from typing import Literal

from aiohttp import web

from bot.app.campaign_component import campaign_component
from bot.app.factory import Component, background
from bot.app.home_component import home_component
from bot.app.insights_component import insights_component
from bot.app.slack_component import (
    add_outbox_kinds,
    builtin_kinds,
    make_slack_component,
    outbox_worker_task,
    slack_component,
)
from bot.core.config import Settings
from bot.handlers import appkeys, onboarding_page
from bot.onboarding import channels
from bot.onboarding.channels import refresh_forever

Role = Literal["all", "web", "worker"]


def default_components(settings: Settings, role: Role | str = "all") -> list[Component]:
    """Slack bridge, scheduler and campaign runner, and the /onboard page, as configured for the role.

    web: HTTP only (Slack endpoints, /onboard); worker: the Slack outbox and the campaigns, no endpoints."""
    if role == "web":
        return [make_slack_component(outbox=False), home_component, insights_component, onboarding_component]
    if role == "worker":
        return [slack_outbox_component, campaign_component, onboarded_channels_component, insights_component]
    if role != "all":
        raise ValueError(f"unknown role {role!r}")
    return [slack_component, home_component, campaign_component, onboarding_component, insights_component]


def slack_outbox_component(app: web.Application) -> None:
    """The Slack outbox worker alone, without `/slack/events` or Socket Mode (a worker-only process)."""
    add_outbox_kinds(app, builtin_kinds())
    app.cleanup_ctx.append(background("slack-outbox", outbox_worker_task))


def onboarded_channels_component(app: web.Application) -> None:
    """Keep this process's channels in step with numbers connected through /onboard in a web process."""

    def start(app: web.Application) -> asyncio.Task[None]:
        return asyncio.create_task(refresh_forever(app[appkeys.SETTINGS], app[appkeys.SESSIONS],
                                                   app[appkeys.CHANNEL_IDS], health=app[appkeys.LOOP_HEALTH]))

    app.cleanup_ctx.append(background("onboarded-channels", start))


def onboarding_component(app: web.Application) -> None:
    """Mount /onboard and keep this process's channels in step with numbers connected elsewhere."""
    app.router.add_get(onboarding_page.PAGE_PATH, onboarding_page.show_page)
    app.router.add_post(onboarding_page.COMPLETE_PATH, onboarding_page.complete)

    def start(app: web.Application) -> asyncio.Task[None]:
        return asyncio.create_task(refresh_forever(app[appkeys.SETTINGS], app[appkeys.SESSIONS],
                                                   app[appkeys.CHANNEL_IDS], channels.REFRESH_SECONDS,
                                                   health=app[appkeys.LOOP_HEALTH]))

    app.cleanup_ctx.append(background("onboarded-channels", start))
