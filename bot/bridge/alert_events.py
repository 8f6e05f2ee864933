"""Account, template, quality and error events as alerts: the alerts channel hears of each change once.

Handlers here run inside the webhook worker's transaction, like those of `bot.bridge.meta_events` (which
dispatches to them); the sentences come from `bot.bridge.alert_texts`.
"""

from __future__ import annotations

import logging
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.bridge import alert_texts
from bot.core.config import Settings
from bot.core.workspace import DEFAULT_WORKSPACE
from bot.meta import events as ev
from storage.models import AlertState, Template, utcnow
from storage.outbox_kinds import Alert, enqueue

log = logging.getLogger(__name__)


class HasSettings(Protocol):
    """What these handlers need of the event context."""

    settings: Settings


@dataclass(frozen=True)
class AlertTarget:
    """Many workspaces: where the alerts of the delivery being applied go (its number's workspace and channel)."""

    slack_team: str
    slack_channel: str


# Set by bot.bridge.meta_events.apply_event around each event of a number that belongs to a workspace.
ALERT_TARGET: ContextVar[AlertTarget | None] = ContextVar("wabridge_alert_target", default=None)


def alert_target(settings: Settings, phone_number_id: str | None, waba_id: str) -> AlertTarget | None:
    """Many workspaces: the number the event is about (else the first of its WABA), as an alert target."""
    if not settings.slack.many_workspaces:
        return None
    number = settings.channel_by_phone_number_id(phone_number_id or "") or next(
        (c for c in settings.channels if c.waba_id == waba_id), None)
    return None if number is None else AlertTarget(settings.workspace_of(number), number.slack_channel)


async def raise_alert_once(session: AsyncSession, kind: str, subject: str, state: str, text: str,
                           dedupe: str, icon: str | None = None) -> bool:
    """Post text to the alerts channel when subject's state changed since the last alert (many workspaces:
    to the channel of the number it is about, in its workspace)."""
    current = await session.get(AlertState, (kind, subject))
    if current is not None and current.state == state:
        return False
    if current is None:
        session.add(AlertState(kind=kind, subject=subject, state=state, raised_at=utcnow()))
    else:
        current.state, current.raised_at = state, utcnow()
    target = ALERT_TARGET.get()
    await enqueue(session, Alert(kind, subject, state, text, icon=icon or None,
                                 channel=target.slack_channel if target else None),
                  dedupe_key=f"alert:{dedupe}", slack_team=target.slack_team if target else DEFAULT_WORKSPACE)
    return True


async def _template_row(session: AsyncSession, e: Any) -> Template | None:
    return await session.scalar(select(Template).where(
        Template.waba_id == e.envelope.waba_id, Template.name == (e.name or "?"),
        Template.language == (e.language or "?")))


async def on_template_status(session: AsyncSession, ctx: HasSettings, e: ev.TemplateStatus) -> None:
    name, lang = e.name or "?", e.language or "?"
    tpl = await _template_row(session, e)
    if tpl is not None:
        tpl.status = e.event
        tpl.rejected_reason = e.reason if e.event == "REJECTED" else None
    icon, text = alert_texts.template_status(e, ctx.settings.timezone)
    await raise_alert_once(session, "template_status", f"{e.envelope.waba_id}/{name}/{lang}", e.event, text,
                           dedupe=f"template:{e.envelope.waba_id}:{name}:{lang}:{e.event}:{utcnow().isoformat()}",
                           icon=icon)


async def on_quality(session: AsyncSession, ctx: HasSettings, e: ev.QualityUpdate) -> None:
    subject = e.display_phone_number or e.envelope.waba_id
    # current_limit is announced for removal in favour of max_daily_conversations_per_business.
    limit = e.current_limit or e.max_daily_conversations_per_business
    state = f"{e.event}/{limit or ''}"
    icon, text = alert_texts.quality(e)
    await raise_alert_once(session, "quality", subject, state, text,
                           dedupe=f"quality:{subject}:{state}:{utcnow().isoformat()}", icon=icon)


async def on_template_quality(session: AsyncSession, ctx: HasSettings, e: ev.TemplateQuality) -> None:
    name, lang = e.name or "?", e.language or "?"
    score = e.new_score or "UNKNOWN"
    tpl = await _template_row(session, e)
    if tpl is not None:
        tpl.quality = score
    icon, text = alert_texts.template_quality(e)
    await raise_alert_once(session, "template_quality", f"{e.envelope.waba_id}/{name}/{lang}", score, text,
                           dedupe=f"tquality:{e.envelope.waba_id}:{name}:{lang}:{score}:{utcnow().isoformat()}",
                           icon=icon)


async def on_template_category(session: AsyncSession, ctx: HasSettings, e: ev.TemplateCategory) -> None:
    name, lang = e.name or "?", e.language or "?"
    notice = bool(e.correct_category and e.correct_category != e.new_category)
    state = f"{'notice' if notice else 'now'}:{e.correct_category if notice else e.new_category}"
    tpl = await _template_row(session, e)
    if tpl is not None and e.new_category and not notice:
        tpl.category = e.new_category
    icon, text = alert_texts.template_category(e, ctx.settings.timezone)
    await raise_alert_once(session, "template_category", f"{e.envelope.waba_id}/{name}/{lang}", state, text,
                           dedupe=f"tcategory:{e.envelope.waba_id}:{name}:{lang}:{state}:{utcnow().isoformat()}",
                           icon=icon)


async def on_template_components(session: AsyncSession, ctx: HasSettings, e: ev.TemplateComponents) -> None:
    icon, text = alert_texts.template_components(e)
    subject = f"{e.envelope.waba_id}/{e.name or '?'}/{e.language or '?'}"
    await raise_alert_once(session, "template_components", subject, text[:200], text,
                           dedupe=f"tcomponents:{subject}:{utcnow().isoformat()}", icon=icon)


async def on_change_errors(session: AsyncSession, ctx: HasSettings, e: ev.ChangeErrors) -> None:
    """Errors Meta attaches to a change (not to one message): an alert, with Meta's code, title and details."""
    where = f"WhatsApp number {e.envelope.display_phone_number}" if e.envelope.display_phone_number \
        else "WhatsApp Business account"
    icon, text = alert_texts.errors(e.errors, where)
    state = ",".join(str(err.code) for err in e.errors)
    await raise_alert_once(session, "errors", e.envelope.phone_number_id or e.envelope.waba_id, state, text,
                           dedupe=f"errors:{e.envelope.waba_id}:{state}:{utcnow().isoformat()}", icon=icon)


async def on_parse_problem(session: AsyncSession, ctx: HasSettings, e: ev.ParseProblem) -> None:
    """A malformed part of a delivery: logged, and an alert the first time its field fails this way
    (counted with the other events, as `wabridge_events_applied{kind="ParseProblem"}`)."""
    log.warning("webhook part not readable: %s at %s: %s", e.envelope.field or "payload", e.where, e.error[:200])
    icon, text = alert_texts.parse_problem(e)
    subject = f"{e.envelope.waba_id or '-'}:{e.envelope.field or 'payload'}"[:200]  # from the payload: bounded
    state = e.error[:120]
    await raise_alert_once(session, "parse_problem", subject, state, text,
                           dedupe=f"parse:{utcnow().isoformat()}:{subject}:{state}"[:180], icon=icon)


async def on_business_username(session: AsyncSession, ctx: HasSettings, e: ev.BusinessUsername) -> None:
    """The number's own username was approved, reserved or removed: one alert per state."""
    subject = e.display_phone_number or e.envelope.waba_id
    icon, text = alert_texts.business_username(e)
    await raise_alert_once(session, "business_username", subject, f"{e.status}:{e.username or ''}", text,
                           dedupe=f"busername:{subject}:{e.status}:{e.username or ''}", icon=icon)
