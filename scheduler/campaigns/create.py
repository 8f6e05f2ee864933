"""Preparing a campaign from the CLI or Slack: check the template and mapping, import the audience as a
draft, and work out what sending it will take (recipients, opted out, duration, cost)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import IO, Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.core.config import ChannelSettings, Settings
from scheduler.campaigns import estimate
from scheduler.campaigns import records as campaigns
from scheduler.campaigns.audience import ImportReport, import_audience, mapped_columns
from scheduler.campaigns.audience_text import AudienceError
from scheduler.campaigns.schedule import Schedule
from scheduler.campaigns.variables import body_placeholders, check_mapping
from storage.models import Channel, utcnow

PAST_TOLERANCE = timedelta(minutes=1)


class CampaignInputError(ValueError):
    """Something the person creating the campaign must fix; `field` names the input (modal block id)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


@dataclass
class Request:
    """What someone asked for."""

    channel: ChannelSettings
    template: str
    language: str
    variables: dict[str, Any]
    schedule: Schedule
    name: str = ""
    created_by: str | None = None
    slack_channel: str | None = None
    category: str | None = None  # used when the template has not been synced


@dataclass
class Prepared:
    """A draft campaign with its audience imported, and what sending it will take."""

    campaign_id: int
    report: ImportReport
    recipients: int
    opted_out: int
    category: str | None
    duration_s: float
    cost: estimate.Cost
    warnings: list[str] = field(default_factory=list)

    @property
    def to_send(self) -> int:
        return self.recipients - self.opted_out


def check_schedule(schedule: Schedule, now: datetime | None = None) -> None:
    """A one-off time in the past is a mistake, not a wish to send at once."""
    now = now or utcnow()
    if schedule.kind == "at" and schedule.run_at is not None and schedule.run_at < now - PAST_TOLERANCE:
        raise CampaignInputError("when", f"{schedule.run_at:%Y-%m-%d %H:%M} UTC is in the past")


async def check_template(session: AsyncSession, request: Request) -> tuple[str | None, list[str]]:
    """The template's category and any warnings; CampaignInputError when it cannot be sent as mapped."""
    warnings: list[str] = []
    tpl = await campaigns.find_template(session, request.channel.waba_id, request.template, request.language)
    if tpl is None:
        warnings.append(f"template {request.template} ({request.language}) is not in the synced list of "
                        f"{request.channel.name}'s WABA (run `templates sync`); it is sent as named"
                        + ("" if request.category else ", and opted-out contacts are skipped as for marketing"))
        return request.category, warnings
    if (tpl.status or "").upper() != "APPROVED":
        raise CampaignInputError("template", f"template {tpl.name} ({tpl.language}) is {tpl.status}, not APPROVED")
    problem = check_mapping(request.variables, body_placeholders(tpl.components or []))
    if problem:
        raise CampaignInputError("variables", problem)
    return tpl.category, warnings


async def prepare(sessions: async_sessionmaker[AsyncSession], settings: Settings, request: Request,
                  stream: IO[str], *, source: str = "the file") -> Prepared:
    """Create the draft and import its audience; the draft is discarded if the audience is unusable. `source`
    names the audience file in errors."""
    check_schedule(request.schedule)
    async with sessions() as session, session.begin():
        category, warnings = await check_template(session, request)
        channel_id = await _channel_id(session, request.channel)
        draft = await campaigns.create_draft(
            session, name=request.name or f"{request.template} {utcnow():%Y-%m-%d}", channel_id=channel_id,
            template_name=request.template, language=request.language, category=category,
            variables=request.variables, schedule=request.schedule, created_by=request.created_by,
            slack_channel=request.slack_channel)
        campaign_id = draft.id
    try:
        report = await import_audience(sessions, campaign_id, stream, settings.default_region,
                                       mapped_columns(request.variables), source=source)
    except AudienceError as exc:
        await campaigns.discard_draft(sessions, campaign_id)
        raise CampaignInputError("audience", str(exc)) from None
    except BaseException:
        await campaigns.discard_draft(sessions, campaign_id)
        raise
    if report.imported == 0:
        await campaigns.discard_draft(sessions, campaign_id)
        first = f" (line {report.bad_rows[0].line}: {report.bad_rows[0].reason})" if report.bad_rows else ""
        raise CampaignInputError("audience", f"no usable phone numbers in the file{first}")
    marketing = campaigns.is_marketing(category)
    total, opted = await campaigns.audience_counts(sessions, campaign_id, marketing)
    regions = dict(report.regions)
    cost = estimate.estimate_cost(settings.pricing, _minus(regions, opted, total), category)
    return Prepared(campaign_id=campaign_id, report=report, recipients=total, opted_out=opted, category=category,
                    duration_s=estimate.duration_seconds(total - opted, request.channel.mps), cost=cost,
                    warnings=warnings)


def _minus(regions: dict[str, int], opted: int, total: int) -> dict[str, int]:
    """Scale region counts down by the opted-out share (which regions they are in is not worth a query)."""
    if not opted or not total:
        return regions
    keep = (total - opted) / total
    return {r: round(n * keep) for r, n in regions.items()}


async def _channel_id(session: AsyncSession, channel: ChannelSettings) -> int:
    cid = await session.scalar(select(Channel.id).where(Channel.phone_number_id == channel.phone_number_id))
    if cid is None:
        raise CampaignInputError("channel", f"channel {channel.name} is not in the database yet: run `migrate` "
                                 "or start `serve` once")
    return int(cid)
