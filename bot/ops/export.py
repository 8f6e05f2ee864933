"""Audit export: one conversation's transcript (who said what, from where, when, and what became of it).

`load_transcript` reads the database; `render_csv`, `render_markdown` and `render_html` are pure and
shared by `python -m bot export` and the `/campaign export` Slack command.
"""

from __future__ import annotations

import csv
import html
import io
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo

import phonenumbers
from sqlalchemy import func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.core.origin import Source
from bot.core.readable import flow_answers, sentence
from bot.meta.errors import explain
from bot.ops.export_content import full_text
from bot.ops.export_safety import csv_cell, export_csp, markdown_text
from storage.models import Channel, Contact, Conversation, Message, as_utc


class Format(StrEnum):
    CSV = "csv"
    MD = "md"
    HTML = "html"


CONTENT_TYPES = {Format.CSV: "text/csv", Format.MD: "text/markdown", Format.HTML: "text/html"}
SOURCE_LABELS = {
    Source.CUSTOMER: "customer",
    Source.PHONE_APP: "phone app",
    Source.SLACK: "Slack user",
    Source.CAMPAIGN: "campaign",
    Source.API: "api",
}
COLUMNS = ("time", "direction", "source", "author", "type", "text", "status", "status history", "error",
           "wamid", "remark", "exported at", "exported by")
_MENTION = re.compile(r"<@([UW][A-Z0-9]+)>")
NOTE_REMARK = "Internal note written in Slack: never sent to the customer."


class ExportError(Exception):
    """The conversation asked for cannot be found; the message says why."""


# ---- pure ---------------------------------------------------------------------------------------


def normalize_number(text: str, default_region: str) -> str:
    """A WhatsApp ID (country code + number, digits only) from how a person types a number."""
    raw = text.strip()
    digits = re.sub(r"\D", "", raw)
    if not digits:
        raise ValueError(f"{text!r} is not a phone number")
    if raw.startswith("+") or raw.startswith("00"):
        return digits.removeprefix("00") if raw.startswith("00") else digits
    try:
        number = phonenumbers.parse(raw, default_region)
    except phonenumbers.NumberParseException:
        return digits
    if phonenumbers.is_valid_number(number):
        return f"{number.country_code}{number.national_number}"
    return digits


@dataclass(frozen=True)
class TranscriptLine:
    at: datetime
    direction: str
    source: str  # customer / phone app / Slack user / campaign / api
    author: str
    kind: str
    text: str
    status: str
    status_history: str
    error: str
    wamid: str
    note: bool = False
    history: bool = False
    slack_user: str = ""  # the Slack user ID behind a message sent from Slack
    failure: str = ""  # what a failed send's error means, in plain words

    @property
    def failed(self) -> bool:
        return self.status == "failed" or bool(self.failure)

    @property
    def remark(self) -> str:
        """Why this line is not an ordinary delivered message, in plain words (empty when it is)."""
        if self.note:
            return NOTE_REMARK
        if self.failed:
            return f"Not delivered: {self.failure or 'WhatsApp reported a failure'}"
        if self.history:
            return "Imported from the WhatsApp Business app's chat history."
        return ""


@dataclass(frozen=True)
class Transcript:
    channel: str
    business_number: str
    wa_id: str
    contact_name: str
    timezone: str
    lines: tuple[TranscriptLine, ...]
    exported_at: datetime | None = None
    exported_by: str = ""  # who asked for the export (a Slack name, or the CLI's user)

    def provenance(self) -> str:
        """'Exported 2026-01-01 10:00:00 Asia/Kolkata by Asha', or '' when unknown."""
        if self.exported_at is None:
            return ""
        when = _fmt_time(self.exported_at, ZoneInfo(self.timezone))
        return f"Exported {when} {self.timezone}" + (f" by {self.exported_by}" if self.exported_by else "")

    @property
    def title(self) -> str:
        # A business-scoped user id (it holds letters) is not a number: no '+' in front of it.
        number = self.wa_id if any(ch.isalpha() for ch in self.wa_id) else f"+{self.wa_id}"
        who = f"{self.contact_name} ({number})" if self.contact_name else number
        return f"Conversation with {who} on {self.channel}"

    def filename(self, fmt: Format) -> str:
        return f"transcript-{self.channel}-{self.wa_id}.{fmt.value}"


def slack_users(t: Transcript) -> list[str]:
    """Slack user IDs that wrote in the transcript, in first-seen order."""
    found = []
    for line in t.lines:
        found += [line.slack_user] if line.slack_user else []
        found += _MENTION.findall(line.text)
    return list(dict.fromkeys(found))


def with_slack_names(t: Transcript, names: Mapping[str, str]) -> Transcript:
    """The transcript with Slack authors shown as 'Name (U123)', and `<@U123>` mentions as '@Name'."""
    def mentions(text: str) -> str:
        return _MENTION.sub(lambda m: f"@{names.get(m.group(1), m.group(1))}", text)

    lines = tuple(
        replace(line, author=f"{names[line.slack_user]} ({line.slack_user})" if line.slack_user in names
                else line.author, text=mentions(line.text)) for line in t.lines)
    exporter = names.get(t.exported_by, t.exported_by)
    return replace(t, lines=lines, exported_by=exporter)


def describe_content(kind: str, text: str | None, content: Mapping[str, Any] | None) -> str:
    """Readable text for any message type, with Flow answers, earlier versions and deletion marks."""
    content = content or {}
    described = full_text(kind, text, content)
    interactive = content.get("interactive") if isinstance(content.get("interactive"), Mapping) else None
    if interactive and interactive.get("type") == "nfm_reply":
        answers = sentence(flow_answers(interactive.get("response_json")))
        described = f"[form] {answers}" if answers else described
    versions = [v for v in content.get("versions") or [] if isinstance(v, Mapping)]
    if versions:
        earlier = " | ".join(f"{v.get('replaced_at', '')}: {_version(kind, v)}" for v in versions)
        described += f" [edited; earlier versions: {earlier}]"
    if content.get("revoked_at"):
        described = f"[deleted by the sender at {content['revoked_at']}] {described}"
    return described


def _version(kind: str, version: Mapping[str, Any]) -> str:
    inner = version.get("content")
    content: Mapping[str, Any] = inner if isinstance(inner, Mapping) else {}
    return full_text(str(content.get("kind") or kind), content.get("text"), content)


def _describe(kind: str, text: str | None, content: Mapping[str, Any]) -> str:
    if text:
        if kind in ("text", "button", "interactive"):
            return text
        return f"[{kind}] {text}"
    media = content.get("media") if isinstance(content.get("media"), Mapping) else None
    if media:
        label = media.get("filename") or media.get("mime_type") or ""
        return f"[{kind}{': ' + str(label) if label else ''}]"
    if kind == "location" and isinstance(content.get("location"), Mapping):
        loc = content["location"]
        where = loc.get("name") or loc.get("address") or f"{loc.get('latitude')},{loc.get('longitude')}"
        return f"[location: {where}]"
    if kind == "reaction" and isinstance(content.get("reaction"), Mapping):
        emoji = content["reaction"].get("emoji")
        return f"[reaction {emoji}]" if emoji else "[reaction removed]"
    template = content.get("template") if isinstance(content.get("template"), Mapping) else None
    if kind == "template" or template:
        name = (template or {}).get("name") or content.get("name") or ""
        return f"[template {name}]".replace(" ]", "]")
    return f"[{kind}]"


def _fmt_time(at: datetime, tz: ZoneInfo) -> str:
    return at.astimezone(tz).strftime("%Y-%m-%d %H:%M:%S")


def history_text(history: Sequence[Mapping[str, Any]], tz: ZoneInfo) -> str:
    """'sent 10:00:01, delivered 10:00:05' from a message's status history."""
    parts = []
    for item in history:
        at = item.get("at")
        when = ""
        if at:
            try:
                when = " " + datetime.fromisoformat(str(at)).astimezone(tz).strftime("%H:%M:%S")
            except ValueError:
                when = ""
        code = f" ({item['error_code']})" if item.get("error_code") else ""
        parts.append(f"{item.get('status')}{when}{code}")
    return ", ".join(parts)


def render_csv(t: Transcript) -> str:
    """One row per message, in order, with a header row; every row says when and by whom it was exported
    (a line above the header would break the readers that take the first row for the columns)."""
    buf = io.StringIO()
    # Every cell quoted: a lone carriage return in customer text must not end the row for any reader.
    writer = csv.writer(buf, lineterminator="\n", quoting=csv.QUOTE_ALL)
    writer.writerow(COLUMNS)
    tz = ZoneInfo(t.timezone)
    exported_at = f"{_fmt_time(t.exported_at, tz)} {t.timezone}" if t.exported_at else ""
    for line in t.lines:
        writer.writerow([csv_cell(cell) for cell in (
            _fmt_time(line.at, tz), line.direction, line.source, line.author, line.kind, line.text, line.status,
            line.status_history, line.error, line.wamid, line.remark, exported_at, t.exported_by)])
    return buf.getvalue()


def who_of(line: TranscriptLine) -> str:
    """'customer (Ravi)', 'phone app', 'Slack user: Asha (U123)', 'campaign: #3'."""
    if line.source == "customer":
        return f"customer ({line.author})" if line.author else "customer"
    if line.author and line.author != line.source:
        return f"{line.source}: {line.author}"
    return line.source


def _md_cell(value: str) -> str:
    return markdown_text(value)


def render_markdown(t: Transcript) -> str:
    """A readable Markdown document: heading, then a table in time order (customer text shown inert)."""
    tz = ZoneInfo(t.timezone)
    facts = [f"Business number: {t.business_number or '?'}", f"times in {t.timezone}", f"{len(t.lines)} messages"]
    if t.provenance():
        facts.append(t.provenance())
    out = [f"# {_md_cell(t.title)}", "", _md_cell(" · ".join(facts)), "",
           "| time | from | message | status |", "|---|---|---|---|"]
    for line in t.lines:
        who = who_of(line)
        status = line.status + (f" ({line.error})" if line.error else "")
        if line.remark:
            status = f"{status}: {line.remark}" if status else line.remark
        flags = " (history)" if line.history else ""
        out.append(f"| {_md_cell(_fmt_time(line.at, tz))} | {_md_cell(who + flags)} | {_md_cell(line.text)} | "
                   f"{_md_cell(status)} |")
    return "\n".join(out) + "\n"


_HTML_STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:48em;margin:1em auto;padding:0 .8em;color:#1f1f1f;"
    "line-height:1.45;overflow-wrap:anywhere}h1{font-size:1.3em}"
    ".msg{margin:.6em 0;padding:.5em .8em;border-radius:8px;max-width:80%;border:1px solid transparent}"
    ".inbound{background:#f1f1f1}.outbound{background:#dcf8c6;margin-left:auto}"
    ".note{background:#fff8d6;border:1px dashed #8a6d00;margin-left:auto;margin-right:auto}"
    ".failed{background:#fde7e7;border-color:#b3261e}"
    ".remark{font-weight:600;font-size:.85em;color:#7a1d14}.note .remark{color:#5c4700}"
    ".meta,.status{font-size:.8em;color:#4a4a4a}.text{white-space:pre-wrap}"
    "@media (max-width:30em){.msg{max-width:100%}}"
)


def render_html(t: Transcript) -> str:
    """A standalone, inert HTML page readable on a phone: inbound on the left, outbound on the right,
    failed sends and internal notes marked as such with a plain explanation."""
    tz = ZoneInfo(t.timezone)
    e = html.escape
    rows = []
    for line in t.lines:
        who = who_of(line)
        classes = ["msg", "note" if line.note else line.direction] + (["failed"] if line.failed else [])
        flags = " · history" if line.history else ""
        status = e(line.status_history or line.status) + (f" · {e(line.error)}" if line.error else "")
        remark = f'<div class="remark">{e(line.remark)}</div>' if line.remark and not line.history else ""
        rows.append(
            f'<div class="{" ".join(classes)}"><div class="meta">{e(_fmt_time(line.at, tz))} · '
            f"{e(who)}{e(flags)}</div>{remark}<div class=\"text\">{e(line.text)}</div>"
            f'<div class="status">{status}</div></div>')
    facts = [f"Business number {t.business_number or '?'}", f"times in {t.timezone}", f"{len(t.lines)} messages"]
    if t.provenance():
        facts.append(t.provenance())
    return ("<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<meta http-equiv=\"Content-Security-Policy\" content=\"{e(export_csp(_HTML_STYLE))}\">"
            "<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">"
            "<meta name=\"referrer\" content=\"no-referrer\">"
            f"<title>{e(t.title)}</title><style>{_HTML_STYLE}</style></head><body>\n<h1>{e(t.title)}</h1>\n"
            f"<p>{e(' · '.join(facts))}</p>\n" + "\n".join(rows) + "\n</body></html>\n")


def render(t: Transcript, fmt: Format) -> str:
    """The transcript in the requested format."""
    return {Format.CSV: render_csv, Format.MD: render_markdown, Format.HTML: render_html}[fmt](t)


# ---- query --------------------------------------------------------------------------------------


def _aware(value: datetime) -> datetime:
    return as_utc(value)


def _author(msg: Message, contact: Contact, slack_names: Mapping[str, str]) -> str:
    if msg.source == Source.CUSTOMER:
        return contact.profile_name or contact.address_book_name or ""
    if msg.source == Source.SLACK:
        user = msg.slack_user or ""
        name = slack_names.get(user)
        return f"{name} ({user})" if name and user else name or user
    if msg.source == Source.CAMPAIGN:
        return f"#{msg.campaign_id}" if msg.campaign_id else ""
    return SOURCE_LABELS.get(msg.source, msg.source)


async def find_contacts(session: AsyncSession, query: str, default_region: str) -> list[Contact]:
    """Contacts matching a number, or a name (profile or address book, case-insensitive)."""
    text = query.strip().lstrip("@")
    if re.sub(r"[\s\-()+.]", "", text).isdigit():
        wa_id = normalize_number(text, default_region)
        return list((await session.scalars(select(Contact).where(Contact.wa_id == wa_id))).all())
    pattern = text.lower()
    return list((await session.scalars(select(Contact).where(or_(
        func.lower(Contact.profile_name) == pattern, func.lower(Contact.address_book_name) == pattern)))).all())


async def load_transcript(sessions: async_sessionmaker[AsyncSession], channel: str, contact: str, *,
                          default_region: str = "IN", timezone: str = "UTC",
                          slack_names: Mapping[str, str] | None = None, exported_by: str = "") -> Transcript:
    """The conversation of channel (by name) with contact (number or name), every message in order."""
    names = slack_names or {}
    async with sessions() as session:
        ch = await session.scalar(select(Channel).where(Channel.name == channel))
        if ch is None:
            raise ExportError(f"no channel named {channel!r}")
        matches = await find_contacts(session, contact, default_region)
        if not matches:
            raise ExportError(f"no contact {contact!r}")
        convs = {}
        for c in matches:
            conv = await session.scalar(select(Conversation).where(
                Conversation.channel_id == ch.id, Conversation.contact_id == c.id))
            if conv is not None:
                convs[c.id] = (c, conv)
        if not convs:
            raise ExportError(f"{contact} has no conversation on {channel}")
        if len(convs) > 1:
            numbers = ", ".join(f"+{c.wa_id}" for c, _ in convs.values())
            raise ExportError(f"{contact!r} matches several contacts ({numbers}): give the number")
        person, conv = next(iter(convs.values()))
        messages = (await session.scalars(select(Message).where(Message.conversation_id == conv.id)
                                          .order_by(Message.wa_timestamp, Message.id))).all()
    tz = ZoneInfo(timezone)
    lines = tuple(
        TranscriptLine(
            at=_aware(m.wa_timestamp), direction=m.direction,
            source=SOURCE_LABELS.get(m.source, m.source) if not m.is_note else "Slack note",
            author=_author(m, person, names), kind=m.type,
            text=describe_content(m.type, m.text, m.content), status=m.status or "",
            status_history=history_text(m.status_history or [], tz),
            error=(f"{m.error_code} {m.error_title or ''}".strip() if m.error_code else ""),
            wamid=m.wamid or "", note=m.is_note, history=m.is_history, slack_user=m.slack_user or "",
            failure=_failure(m),
        ) for m in messages)
    return Transcript(channel=ch.name, business_number=ch.display_phone_number, wa_id=person.wa_id,
                      contact_name=person.profile_name or person.address_book_name or "",
                      timezone=timezone, lines=lines, exported_at=datetime.now(UTC), exported_by=exported_by)


def _failure(m: Message) -> str:
    if m.status != "failed" and not m.error_code:
        return ""
    meaning = explain(m.error_code) if m.error_code else ""
    return meaning or (m.error_title or "")
