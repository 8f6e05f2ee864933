"""The text a campaign recipient received, found by the wamid of the send (a customer's reply quotes it)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from scheduler.campaigns.variables import filled_body
from storage.models import Campaign, CampaignRecipient, CampaignRun, Channel, Template


async def campaign_text(session: AsyncSession, wamid: str) -> str | None:
    """The template's body filled with the recipient's values, `[template NAME]` when the template is not
    stored, or None when no campaign send has this wamid."""
    row = (await session.execute(
        select(CampaignRecipient.fields, Campaign.variables, Campaign.template_name, Campaign.language,
               Channel.waba_id)
        .join(CampaignRun, CampaignRun.id == CampaignRecipient.run_id)
        .join(Campaign, Campaign.id == CampaignRun.campaign_id)
        .join(Channel, Channel.id == Campaign.channel_id)
        .where(CampaignRecipient.wamid == wamid).limit(1))).first()
    if row is None:
        return None
    fields, mapping, name, language, waba_id = row
    components = await session.scalar(select(Template.components).where(
        Template.waba_id == waba_id, Template.name == name, Template.language == language))
    text = filled_body(components or [], mapping or {}, fields or {})
    return text if text else f"[template {name}]"
