"""Whether a number answers customers who write while it is closed (pure: reads settings only)."""

from __future__ import annotations

from bot.core.config import AwayMode, ChannelSettings, Mode, Settings


def away_applies(settings: Settings, channel: ChannelSettings) -> bool:
    """True when the bridge sends this number's away message: it has one, opening hours, and `away.mode` lets
    it (`cloud_api_only` leaves a Coexistence number's customers to the phone app's own away message)."""
    if not channel.away_message.strip() or settings.hours_of(channel) is None:
        return False
    mode = settings.away.mode
    if mode is AwayMode.OFF:
        return False
    return mode is AwayMode.ALWAYS or channel.mode is Mode.CLOUD_API
