"""The alerts channel's sentences for Meta's account, template, quality and preference events (pure).

Each function returns (icon, text); text is plain (the renderer escapes it). Dates are shown in the
configured timezone and nested details are spelled out as fields, never as raw dicts or epoch numbers.
"""

from __future__ import annotations

from collections.abc import Sequence

from bot.core.readable import day, day_time, flatten, label, sentence
from bot.meta import events as ev
from bot.meta.errors import explain_reported, known_codes

Alert = tuple[str, str]

UP, DOWN, INFO, WARN, SIREN = ":chart_with_upwards_trend:", ":chart_with_downwards_trend:", ":information_source:", \
    ":warning:", ":rotating_light:"


def _tpl(name: str | None, language: str | None) -> str:
    return f"{name or 'A template'} ({language})" if language else (name or "A template")


def _billing(category: str) -> str:
    return f"it will be billed as {category.lower()}"


def template_category(e: ev.TemplateCategory, tz: str = "UTC") -> Alert:
    """A notice (`correct_category` + date: the change to come) or a change (`previous_category` -> new)."""
    tpl = _tpl(e.name, e.language)
    if e.correct_category and e.correct_category != e.new_category:
        now = e.new_category or "its current category"
        when = f" on {day(e.effective_at, tz)}" if e.effective_at else ""
        return WARN, (f"{tpl} is {now} and becomes {e.correct_category}{when}: "
                      f"{_billing(e.correct_category)}")
    new = e.new_category or e.correct_category or "an unnamed category"
    previous = e.previous_category or "its previous category"
    return WARN, f"{tpl} changed category: {previous} → {new}; from now on {_billing(new)}"


TEMPLATE_QUALITY_ADVICE = {
    "YELLOW": "customers are blocking or reporting it: review its content and audience",
    "RED": "it may be paused soon: review its content and audience before sending more",
}
_SCORE_RANK = {"RED": 0, "YELLOW": 1, "UNKNOWN": 1, "GREEN": 2}


def template_quality(e: ev.TemplateQuality) -> Alert:
    score = e.new_score or "UNKNOWN"
    previous = e.previous_score or "UNKNOWN"
    icon = DOWN if _SCORE_RANK.get(score, 1) < _SCORE_RANK.get(previous, 1) else UP \
        if _SCORE_RANK.get(score, 1) > _SCORE_RANK.get(previous, 1) else INFO
    advice = TEMPLATE_QUALITY_ADVICE.get(score)
    return icon, (f"{_tpl(e.name, e.language)} quality changed: {previous} → {score}"
                  + (f"; {advice}" if advice else ""))


_STATUS_WORDS = {
    "APPROVED": ("is approved and can be sent", ":white_check_mark:"),
    "REJECTED": ("was rejected", ":x:"),
    "PENDING": ("is waiting for review", INFO),
    "PAUSED": ("was paused because of low quality", WARN),
    "DISABLED": ("was disabled", SIREN),
    "FLAGGED": ("was flagged for low quality and will be disabled unless it improves", WARN),
    "IN_APPEAL": ("is in appeal", INFO),
    "REINSTATED": ("was reinstated and can be sent again", ":white_check_mark:"),
    "PENDING_DELETION": ("will be deleted", INFO),
    "DELETED": ("was deleted", INFO),
    "LIMIT_EXCEEDED": ("could not be created: the account's template limit is reached", WARN),
    "ARCHIVED": ("was archived", INFO),
}


def template_status(e: ev.TemplateStatus, tz: str = "UTC") -> Alert:
    words, icon = _STATUS_WORDS.get(e.event, (f"is now {e.event}", INFO))
    text = f"{_tpl(e.name, e.language)} {words}"
    if e.reason and e.reason not in {"NONE", "None"}:
        text += f" (reason: {e.reason})"
    details = [p for d in e.details.values() for p in flatten(d, tz)]
    if details:
        text += f". {sentence(details)}"
    return icon, text


def template_components(e: ev.TemplateComponents) -> Alert:
    parts = [f"{_tpl(e.name, e.language)} was edited"]
    if e.title:
        parts.append(f"header: {e.title}")
    if e.element:
        parts.append(f"body: {e.element}")
    if e.footer:
        parts.append(f"footer: {e.footer}")
    buttons = [str(b.get("message_template_button_text") or b.get("text") or "") for b in e.buttons]
    if any(buttons):
        parts.append("buttons: " + ", ".join(b for b in buttons if b))
    return INFO, "; ".join(parts)


QUALITY_ADVICE = {
    "FLAGGED": "Quality is low: slow down marketing, check WhatsApp Manager > Insights for blocks and "
               "reports; if it does not recover the messaging limit will be lowered",
    "DOWNGRADE": "The messaging limit was lowered: plan campaigns for the smaller daily audience",
}
_QUALITY_WORDS = {
    "FLAGGED": ("was flagged for low quality", DOWN),
    "UNFLAGGED": ("is no longer flagged: quality recovered", UP),
    "DOWNGRADE": ("had its messaging limit lowered", DOWN),
    "UPGRADE": ("had its messaging limit raised", UP),
    "ONBOARDING": ("is onboarding: the messaging limit applies once it is done", INFO),
    "THROUGHPUT_UPGRADE": ("can now send faster (throughput raised)", UP),
}
_LIMITS = {
    "TIER_50": "50", "TIER_250": "250", "TIER_1K": "1,000", "TIER_2K": "2,000", "TIER_10K": "10,000",
    "TIER_100K": "100,000", "TIER_UNLIMITED": "unlimited",
}


def _limit(value: str) -> str:
    return f"{_LIMITS[value]} customers a day" if value in _LIMITS else value


def quality(e: ev.QualityUpdate) -> Alert:
    who = e.display_phone_number or "The number"
    words, icon = _QUALITY_WORDS.get(e.event, (f"reported {e.event}", INFO))
    text = f"{who} {words}"
    limit = e.current_limit or e.max_daily_conversations_per_business
    if limit:
        text += f"; messaging limit now {_limit(limit)}"
        if e.old_limit:
            text += f" (was {_limit(e.old_limit)})"
    if e.event in QUALITY_ADVICE:
        text += f". {QUALITY_ADVICE[e.event]}"
    return icon, text


def user_preference(e: ev.UserPreference, tz: str = "UTC", *, in_thread: bool = False) -> Alert:
    """A preference change; `in_thread` words it for the customer's own thread."""
    who = "The customer" if in_thread or e.user_id == e.wa_id else e.wa_id
    at = f" on {day_time(e.timestamp, tz)}" if e.timestamp else ""
    if e.category == "marketing_messages" and e.value in ("stop", "resume"):
        verb = {"stop": "stopped", "resume": "resumed"}[e.value]
        return INFO, f"{who} {verb} marketing messages from WhatsApp's menu{at}: campaigns follow this"
    return INFO, f"{who}: {label(e.category)} {e.value}{at}" + (f" ({e.detail})" if e.detail else "")


_USERNAME_WORDS = {
    "approved": ("was approved: customers will see it once WhatsApp usernames are live", ":white_check_mark:"),
    "reserved": ("is reserved for this number and approved, not yet shown to customers", INFO),
    "deleted": ("was removed: customers see the number again", WARN),
}


def business_username(e: ev.BusinessUsername) -> Alert:
    """The number's own username: approved, reserved or deleted."""
    who = f"WhatsApp number {e.display_phone_number}" if e.display_phone_number else "The WhatsApp number"
    name = f"@{e.username.lstrip('@')}" if e.username else "Its username"
    words, icon = _USERNAME_WORDS.get(e.status.lower(), (f"is now {e.status.lower()}", INFO))
    return icon, f"{who}: username {name} {words}" if e.username else f"{who}: {name.lower()} {words}"


def errors(errs: Sequence[ev.MetaError], where: str) -> Alert:
    """Meta's `errors[]` as sentences: code, title, details and what the code means."""
    lines = []
    for err in errs:
        line = f"Meta error {err.code} ({err.title or err.message or 'no title'})"
        if err.details:
            line += f": {err.details}"
        meaning = explain_reported(err.code, resend_hint=False) if err.code in known_codes() else ""
        if meaning and meaning.lower() not in line.lower():
            line += f". {meaning[:1].upper()}{meaning[1:]}"
        lines.append(line)
    return WARN, (f"{where}: " + " | ".join(lines)) if lines else f"{where}: Meta reported an error"


def parse_problem(e: ev.ParseProblem) -> Alert:
    """A part of a webhook the parser could not read: where, why, and that the rest was applied."""
    source = f"WhatsApp number {e.envelope.display_phone_number}" if e.envelope.display_phone_number \
        else "WhatsApp Business account"
    field = e.envelope.field or "webhook"
    return WARN, (f"{source}: part of a `{field}` webhook could not be read ({e.where}: {e.error[:200]}). The rest "
                  "of the delivery was applied; the raw delivery is kept in the webhook log.")
