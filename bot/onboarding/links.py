"""One-time /onboard links: a random token, of which only the SHA-256 is stored, with an expiry.

A link completes one onboarding. It is claimed when the page posts the signup result; an attempt that failed
before anything was stored (the code exchange, reading the number) hands the link back, so the shop owner
can try again with the same link until it expires.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.core.config import Settings
from bot.core.workspace import DEFAULT_WORKSPACE
from storage.models import OnboardingLink, utcnow

DEFAULT_VALID = timedelta(hours=1)
PATH = "/onboard"


class LinkState(StrEnum):
    VALID = "valid"
    UNKNOWN = "unknown"
    EXPIRED = "expired"
    USED = "used"


@dataclass(frozen=True)
class Link:
    """What a valid link carries: where the number goes in Slack, its name, who asked."""

    id: int
    slack_channel: str
    channel_name: str | None
    requested_by: str | None
    expires_at: datetime
    slack_team: str = DEFAULT_WORKSPACE  # the workspace whose connect made the link: the number joins it


def token_hash(token: str) -> str:
    """The stored form of a link token."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def link_url(settings: Settings, token: str) -> str:
    """The address to give the shop owner (relative when server.public_url is not set)."""
    return f"{settings.server.public_url.rstrip('/')}{PATH}?t={token}"


async def create_link(sessions: async_sessionmaker[AsyncSession], *, slack_channel: str,
                      channel_name: str | None = None, requested_by: str | None = None,
                      valid_for: timedelta = DEFAULT_VALID,
                      slack_team: str = DEFAULT_WORKSPACE) -> tuple[str, datetime]:
    """A new link's token (shown once, never stored) and its expiry."""
    token = secrets.token_urlsafe(32)
    expires = utcnow() + valid_for
    async with sessions() as session, session.begin():
        session.add(OnboardingLink(token_hash=token_hash(token), slack_channel=slack_channel,
                                   channel_name=channel_name or None, requested_by=requested_by,
                                   created_at=utcnow(), expires_at=expires, slack_team=slack_team))
    return token, expires


def _as_link(row: OnboardingLink) -> Link:
    return Link(row.id, row.slack_channel, row.channel_name, row.requested_by, row.expires_at, row.slack_team)


async def check_link(session: AsyncSession, token: str, now: datetime | None = None
                     ) -> tuple[LinkState, Link | None]:
    """Whether token opens the page now, and the link when it does."""
    row = await session.scalar(select(OnboardingLink).where(OnboardingLink.token_hash == token_hash(token)))
    if row is None:
        return LinkState.UNKNOWN, None
    if row.used_at is not None:
        return LinkState.USED, None
    if row.expires_at <= (now or utcnow()):
        return LinkState.EXPIRED, None
    return LinkState.VALID, _as_link(row)


async def claim_link(sessions: async_sessionmaker[AsyncSession], token: str
                     ) -> tuple[LinkState, Link | None]:
    """Take the link for one onboarding attempt (atomically: two submissions cannot both get it)."""
    now = utcnow()
    async with sessions() as session, session.begin():
        state, link = await check_link(session, token, now)
        if link is None:
            return state, None
        taken = await session.execute(
            update(OnboardingLink).where(OnboardingLink.id == link.id, OnboardingLink.used_at.is_(None))
            .values(used_at=now).execution_options(synchronize_session=False))
        if getattr(taken, "rowcount", 0) != 1:
            return LinkState.USED, None
    return LinkState.VALID, link


async def finish_link(sessions: async_sessionmaker[AsyncSession], link: Link, outcome: str, *,
                      release: bool) -> None:
    """Record how the attempt ended; release=True makes the link usable again (nothing was stored)."""
    async with sessions() as session, session.begin():
        values: dict[str, object] = {"outcome": outcome[:500]}
        if release:
            values["used_at"] = None
        await session.execute(update(OnboardingLink).where(OnboardingLink.id == link.id).values(**values))
