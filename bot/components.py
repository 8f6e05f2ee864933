"""The parts `serve` mounts on the application besides webhooks, health and metrics."""

from __future__ import annotations

from bot.app import Component
from bot.config import Settings


def default_components(settings: Settings) -> list[Component]:
    """Slack bridge, scheduler and campaign runner, and the /onboard page, as configured."""
    from bot.onboarding.page import onboarding_component
    from bot.slack.component import slack_component
    from scheduler.component import campaign_component

    return [slack_component, campaign_component, onboarding_component]
