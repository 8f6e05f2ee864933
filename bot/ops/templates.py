"""Message templates: mirror each WABA's templates into the database, and copy them between WABAs.

Templates belong to one WhatsApp Business Account, so a second number on another WABA needs its own
copies, each reviewed by Meta again. The payload helpers are pure; sync and copy do the I/O.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.core.config import ChannelSettings, ConfigError, Settings
from bot.meta.graph import DEFAULT_TEMPLATE_FIELDS, GraphClient, GraphError
from storage.models import Template, utcnow
from storage.upsert import insert_ignore

SYNC_FIELDS = (*DEFAULT_TEMPLATE_FIELDS, "quality_score", "rejected_reason", "parameter_format")
_NAMED_PARAM = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
# Statuses that mean the template no longer exists in a usable form on its WABA.
GONE_STATUSES = frozenset({"DELETED", "PENDING_DELETION"})


# ---- pure helpers -------------------------------------------------------------------------------


def quality_of(raw: Mapping[str, Any]) -> str | None:
    """A listed template's quality (GREEN, YELLOW, RED, UNKNOWN) from `quality_score`, if present."""
    score = raw.get("quality_score")
    if isinstance(score, Mapping):
        value = score.get("score")
        return str(value) if value else None
    return str(score) if score else None


def row_values(raw: Mapping[str, Any]) -> dict[str, Any]:
    """The stored columns for one template as GET /{waba_id}/message_templates lists it."""
    components = raw.get("components")
    return {
        "meta_id": str(raw["id"]) if raw.get("id") is not None else None,
        "name": str(raw["name"]),
        "language": str(raw["language"]),
        "category": str(raw["category"]).upper() if raw.get("category") else None,
        "status": str(raw["status"]).upper() if raw.get("status") else None,
        "quality": quality_of(raw),
        "components": list(components) if isinstance(components, list) else [],
        "rejected_reason": _reason(raw.get("rejected_reason")),
    }


def _reason(value: Any) -> str | None:
    if not value or str(value).upper() == "NONE":
        return None
    return str(value)[:500]


def uses_named_parameters(components: Iterable[Mapping[str, Any]]) -> bool:
    """True when any text uses {{name}} placeholders rather than {{1}} (Meta's parameter_format NAMED)."""
    for component in components:
        if _NAMED_PARAM.search(str(component.get("text") or "")):
            return True
    return False


def _auth_components(components: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Authentication templates are created from presets, not text (Meta: copy code authentication
    templates): body keeps add_security_recommendation, footer code_expiration_minutes, and the OTP
    button that a GET shows as type URL is submitted as type OTP again."""
    out: list[dict[str, Any]] = []
    for component in components:
        kind = str(component.get("type", "")).upper()
        if kind == "BODY":
            body: dict[str, Any] = {"type": "BODY"}
            if "add_security_recommendation" in component:
                body["add_security_recommendation"] = bool(component["add_security_recommendation"])
            out.append(body)
        elif kind == "FOOTER":
            if component.get("code_expiration_minutes") is not None:
                out.append({"type": "FOOTER", "code_expiration_minutes": component["code_expiration_minutes"]})
        elif kind == "BUTTONS":
            buttons = []
            for button in component.get("buttons") or []:
                otp_type = str(button.get("otp_type") or "COPY_CODE").upper()
                new: dict[str, Any] = {"type": "OTP", "otp_type": otp_type}
                if button.get("text"):
                    new["text"] = button["text"]
                for key in ("autofill_text", "package_name", "signature_hash", "supported_apps",
                            "zero_tap_terms_accepted"):
                    if key in button:
                        new[key] = button[key]
                buttons.append(new)
            out.append({"type": "BUTTONS", "buttons": buttons})
    return out


def create_payload(template: Template | Mapping[str, Any]) -> dict[str, Any]:
    """The POST /{waba_id}/message_templates body that re-submits a stored template on another WABA."""
    if isinstance(template, Template):
        name, language = template.name, template.language
        category, components = template.category, template.components
    else:
        name, language = str(template["name"]), str(template["language"])
        category, components = template.get("category"), template.get("components") or []
    category = (category or "UTILITY").upper()
    parts = [copy.deepcopy(dict(c)) for c in components]
    if category == "AUTHENTICATION":
        parts = _auth_components(parts)
    payload: dict[str, Any] = {"name": name, "language": language, "category": category,
                               "components": parts}
    if uses_named_parameters(parts):
        payload["parameter_format"] = "NAMED"
    return payload


def media_header_format(template: Template) -> str | None:
    """IMAGE/VIDEO/DOCUMENT when the header needs a sample upload: its stored example URL is not a handle
    the other WABA can use, so Meta will likely refuse the copy until a new sample is uploaded."""
    for component in template.components or []:
        if str(component.get("type", "")).upper() == "HEADER":
            fmt = str(component.get("format", "")).upper()
            if fmt in {"IMAGE", "VIDEO", "DOCUMENT"}:
                return fmt
    return None


def meta_message(exc: GraphError) -> str:
    """What Meta said about a refused call, in its most human form."""
    return exc.user_message or exc.details or exc.message or exc.title or str(exc)


# ---- sync ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SyncResult:
    """One WABA's template sync."""

    waba_id: str
    channels: tuple[str, ...]
    fetched: int
    created: int
    updated: int
    removed: int


def channels_by_waba(channels: Iterable[ChannelSettings]) -> dict[str, list[ChannelSettings]]:
    """Channels grouped by WABA (several numbers may share one account and so one template list)."""
    out: dict[str, list[ChannelSettings]] = {}
    for ch in channels:
        out.setdefault(ch.waba_id, []).append(ch)
    return out


def select_channels(settings: Settings, name: str | None) -> list[ChannelSettings]:
    """The named channel, or every configured one."""
    return [settings.channel(name)] if name else list(settings.channels)


async def fetch_templates(graph: GraphClient, waba_id: str, token: str, *, page_size: int = 100
                          ) -> list[dict[str, Any]]:
    """Every template of a WABA, all pages."""
    return [t async for t in graph.list_templates(waba_id, token, fields=SYNC_FIELDS, limit=page_size)]


async def store_templates(session: AsyncSession, waba_id: str, listed: Sequence[Mapping[str, Any]]
                          ) -> tuple[int, int, int]:
    """Upsert a WABA's full listing (waba + name + language) and drop rows Meta no longer lists.

    Returns (created, updated, removed)."""
    existing = {(t.name, t.language): t for t in
                (await session.scalars(select(Template).where(Template.waba_id == waba_id))).all()}
    created = updated = 0
    seen: set[tuple[str, str]] = set()
    for raw in listed:
        if not raw.get("name") or not raw.get("language"):
            continue
        values = row_values(raw)
        key = (values["name"], values["language"])
        seen.add(key)
        row = existing.get(key)
        if row is None:
            existing[key] = Template(waba_id=waba_id, updated_at=utcnow(), **values)
            session.add(existing[key])
            created += 1
            continue
        changed = False
        for column, value in values.items():
            if getattr(row, column) != value:
                setattr(row, column, value)
                changed = True
        if changed:
            row.updated_at = utcnow()
            updated += 1
    gone = [key for key in existing if key not in seen]
    for name, language in gone:
        await session.execute(delete(Template).where(
            Template.waba_id == waba_id, Template.name == name, Template.language == language))
    return created, updated, len(gone)


async def sync_templates(sessions: async_sessionmaker[AsyncSession], graph: GraphClient,
                         channels: Iterable[ChannelSettings], *, page_size: int = 100) -> list[SyncResult]:
    """Mirror the templates of each channel's WABA into the templates table (one call chain per WABA)."""
    results = []
    for waba_id, group in channels_by_waba(channels).items():
        listed = await fetch_templates(graph, waba_id, group[0].access_token, page_size=page_size)
        async with sessions() as session, session.begin():
            created, updated, removed = await store_templates(session, waba_id, listed)
        results.append(SyncResult(waba_id, tuple(c.name for c in group), len(listed), created, updated,
                                  removed))
    return results


async def stored_templates(sessions: async_sessionmaker[AsyncSession], waba_id: str) -> list[Template]:
    """A WABA's stored templates, by name then language."""
    async with sessions() as session:
        return list((await session.scalars(select(Template).where(Template.waba_id == waba_id)
                                           .order_by(Template.name, Template.language))).all())


# ---- copy ---------------------------------------------------------------------------------------


class CopyOutcome(StrEnum):
    CREATED = "created"
    EXISTS = "exists"
    FAILED = "failed"


@dataclass(frozen=True)
class CopyResult:
    """What happened to one template on the destination WABA."""

    name: str
    language: str
    outcome: CopyOutcome
    detail: str = ""  # Meta's status for a new one, or its message for a refusal

    def line(self) -> str:
        tail = f": {self.detail}" if self.detail else ""
        return f"{self.name} ({self.language}): {self.outcome.value}{tail}"


Progress = Callable[[int, int, CopyResult], Awaitable[None] | None]


async def copy_templates(sessions: async_sessionmaker[AsyncSession], graph: GraphClient,
                         source: ChannelSettings, dest: ChannelSettings,
                         progress: Progress | None = None) -> list[CopyResult]:
    """Submit each of source's templates as a new template on dest's WABA, skipping those dest has.

    Both WABAs are synced first, so the comparison uses what Meta holds now; a refusal by Meta is
    reported for that template and the rest go on."""
    if source.waba_id == dest.waba_id:
        raise ConfigError("channels", f"{source.name} and {dest.name} share WABA {source.waba_id}: "
                                      "templates are already shared")
    await sync_templates(sessions, graph, [source, dest])
    have = {(t.name, t.language) for t in await stored_templates(sessions, dest.waba_id)}
    todo = [t for t in await stored_templates(sessions, source.waba_id)
            if (t.status or "").upper() not in GONE_STATUSES]
    results: list[CopyResult] = []
    for i, template in enumerate(todo, start=1):
        result = await _copy_one(sessions, graph, template, dest, have)
        results.append(result)
        if progress is not None:
            maybe = progress(i, len(todo), result)
            if maybe is not None:
                await maybe
    return results


async def _copy_one(sessions: async_sessionmaker[AsyncSession], graph: GraphClient, template: Template,
                    dest: ChannelSettings, have: set[tuple[str, str]]) -> CopyResult:
    key = (template.name, template.language)
    if key in have:
        return CopyResult(template.name, template.language, CopyOutcome.EXISTS)
    payload = create_payload(template)
    try:
        answer = await graph.create_template(dest.waba_id, dest.access_token, payload)
    except GraphError as exc:
        detail = meta_message(exc)
        fmt = media_header_format(template)
        if fmt:
            detail += f" ({fmt.lower()} header: upload a new sample on the destination and submit it there)"
        return CopyResult(template.name, template.language, CopyOutcome.FAILED, detail)
    status = str(answer.get("status") or "PENDING").upper()
    async with sessions() as session, session.begin():
        # A sync running at the same time may have stored it already; either row is right.
        await insert_ignore(session, Template, {
            "waba_id": dest.waba_id, "meta_id": str(answer.get("id") or "") or None, "name": template.name,
            "language": template.language, "status": status, "components": payload["components"],
            "category": str(answer.get("category") or payload["category"]).upper(), "updated_at": utcnow()},
            ["waba_id", "name", "language"])
    have.add(key)
    return CopyResult(template.name, template.language, CopyOutcome.CREATED, status)


# ---- listing ------------------------------------------------------------------------------------


def describe(template: Template) -> str:
    """One line per template: name (language) category STATUS [quality] and a rejection reason."""
    parts = [f"{template.name} ({template.language})", (template.category or "?").lower(),
             template.status or "?"]
    if template.quality and template.quality.upper() != "UNKNOWN":
        parts.append(f"quality {template.quality}")
    line = " · ".join(parts)
    if template.rejected_reason:
        line += f": {template.rejected_reason}"
    return line
