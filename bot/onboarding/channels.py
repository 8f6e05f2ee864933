"""Onboarded channels: stored in `onboarded_channels` (token encrypted) and merged into the running settings.

Why in place: the one `Settings` object is shared by everything a process runs (webhook worker, Slack
listeners, campaign runner, outbox), each holding a reference to it and to the `channel_ids` dict. Settings are
frozen, but `Settings.channels` is a plain list and `ChannelSettings` entries are immutable values, so
appending an entry (or replacing one when a number is connected again with a new token) is seen by every
holder at once, without rebuilding or re-plumbing anything. All of that happens here and nowhere else;
readers only ever look entries up, so they see a channel either completely or not at all.

A channel from app.yaml always wins over an onboarded one with the same phone_number_id or name.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.core.config import ChannelSettings, Mode, Settings
from bot.core.loop_health import LoopHealth
from bot.core.loops import forever, monitor_of
from bot.core.workspace import DEFAULT_WORKSPACE, as_setting
from bot.onboarding.crypto import TokenBox, TokenKeyMissing, TokenUnreadable, token_box
from storage.models import Channel, OnboardedChannel, utcnow
from storage.repository import sync_channels

log = logging.getLogger(__name__)

REFRESH_SECONDS = 5.0
COEXISTENCE_MPS = 5

def channel_settings(row: OnboardedChannel, token: str) -> ChannelSettings:
    """The ChannelSettings of a stored onboarded channel, given its decrypted token."""
    return ChannelSettings(name=row.name, phone_number_id=row.phone_number_id, waba_id=row.waba_id,
                           display_phone_number=row.display_phone_number, mode=Mode(row.mode), mps=row.mps,
                           access_token=token, slack_channel=row.slack_channel,
                           slack_team=as_setting(row.slack_team))


def is_onboarded(settings: Settings, phone_number_id: str) -> bool:
    """True when this process took the channel from onboarding rather than app.yaml."""
    return phone_number_id in settings.onboarded_ids


def apply_channels(settings: Settings, channels: Iterable[ChannelSettings]) -> list[ChannelSettings]:
    """Add new onboarded channels to settings.channels (or replace changed ones); returns what changed."""
    ours = settings.onboarded_ids
    changed: list[ChannelSettings] = []
    for ch in channels:
        index = next((i for i, c in enumerate(settings.channels) if c.phone_number_id == ch.phone_number_id), None)
        if index is None:
            if any(c.name == ch.name for c in settings.channels):
                log.warning("onboarded channel %s not used: app.yaml has a channel of that name", ch.name)
                continue
            settings.channels.append(ch)
        elif ch.phone_number_id not in ours:
            continue  # app.yaml's entry for this number wins
        elif settings.channels[index] != ch:
            settings.channels[index] = ch
        else:
            continue
        ours.add(ch.phone_number_id)
        changed.append(ch)
    return changed


async def stored_channels(sessions: async_sessionmaker[AsyncSession], box: TokenBox) -> list[ChannelSettings]:
    """Every onboarded channel whose token decrypts; the others are logged and left out."""
    async with sessions() as session:
        rows = list((await session.scalars(select(OnboardedChannel).order_by(OnboardedChannel.id))).all())
    out = []
    for row in rows:
        try:
            out.append(channel_settings(row, box.open(row.token_ciphertext)))
        except TokenUnreadable:
            log.error("onboarded channel %s: its token does not decrypt with meta.token_key", row.name)
    return out


async def merge_onboarded(settings: Settings, sessions: async_sessionmaker[AsyncSession],
                          channel_ids: dict[str, int]) -> list[ChannelSettings]:
    """Merge stored onboarded channels into settings and channel_ids (both in place); returns the changes."""
    async with sessions() as session:
        any_row = await session.scalar(select(OnboardedChannel.id).limit(1))
    if any_row is None:
        return []
    try:
        box = token_box(settings)
    except TokenKeyMissing:
        log.error("numbers were connected through /onboard but meta.token_key is not set: they stay "
                  "disconnected until WABRIDGE_TOKEN_KEY is exported again")
        return []
    stored = await stored_channels(sessions, box)
    # Ids first: a handler that finds the channel in settings must also find its id, or it would drop the
    # delivery as one for an unknown number (sync_channels below awaits, and handlers run meanwhile).
    async with sessions() as session:
        known = (await session.execute(select(Channel.phone_number_id, Channel.id).where(
            Channel.phone_number_id.in_([c.phone_number_id for c in stored])))).all()
    channel_ids.update({pnid: int(cid) for pnid, cid in known})
    changed = apply_channels(settings, stored)
    if changed:
        channel_ids.update(await sync_channels(sessions, changed, settings.workspace_of))
        for ch in changed:
            log.info("channel %s (%s) taken from onboarding", ch.name, ch.phone_number_id)
    return changed


async def adopt(session: AsyncSession, settings: Settings, channel_ids: dict[str, int],
                phone_number_id: str) -> bool:
    """Take one onboarded channel on first sight of its webhooks (another process connected it seconds ago).

    Reads only, inside the caller's transaction: the onboarding already wrote both rows.
    """
    row = await session.scalar(select(OnboardedChannel).where(OnboardedChannel.phone_number_id == phone_number_id))
    channel_id = await session.scalar(select(Channel.id).where(Channel.phone_number_id == phone_number_id))
    if row is None or channel_id is None:
        return False
    try:
        token = token_box(settings).open(row.token_ciphertext)
    except (TokenKeyMissing, TokenUnreadable):
        log.error("onboarded channel %s: cannot decrypt its token (meta.token_key)", row.name)
        return False
    apply_channels(settings, [channel_settings(row, token)])
    if settings.channel_by_phone_number_id(phone_number_id) is None:
        return False
    channel_ids[phone_number_id] = int(channel_id)
    return True


async def store_channel(session: AsyncSession, box: TokenBox, channel: ChannelSettings,
                        onboarded_by: str | None) -> OnboardedChannel:
    """Insert or update (same phone_number_id) an onboarded channel with its token encrypted."""
    row = await session.scalar(select(OnboardedChannel).where(
        OnboardedChannel.phone_number_id == channel.phone_number_id))
    if row is None:
        row = OnboardedChannel(phone_number_id=channel.phone_number_id, created_at=utcnow())
        session.add(row)
    row.name = channel.name
    row.waba_id = channel.waba_id
    row.display_phone_number = channel.display_phone_number
    row.mode = channel.mode.value
    row.mps = channel.mps
    row.slack_channel = channel.slack_channel
    row.slack_team = channel.slack_team or DEFAULT_WORKSPACE
    row.token_ciphertext = box.seal(channel.access_token)
    row.onboarded_by = onboarded_by
    row.updated_at = utcnow()
    await session.flush()
    return row


async def refresh_forever(settings: Settings, sessions: async_sessionmaker[AsyncSession],
                          channel_ids: dict[str, int], interval: float = REFRESH_SECONDS,
                          health: LoopHealth | None = None) -> None:
    """Merge channels connected by other processes, every interval seconds, until cancelled."""
    async def turn() -> None:
        await merge_onboarded(settings, sessions, channel_ids)

    await asyncio.sleep(interval)  # merged once already before the workers started
    await forever(turn, interval, monitor=monitor_of(health, "onboarded channels refresh", log),
                  doing="refreshing onboarded channels")
