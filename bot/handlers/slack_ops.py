"""Manager sub-commands of `/campaign`: templates, doctor, spend [month], export @contact-or-number.

Each function does the work after the command was acknowledged and returns what to show the requester
(text plus Block Kit blocks); `export` also uploads the transcript files to the requester's DM. Permission
checks (managers only) belong to the dispatcher.
"""

from __future__ import annotations

import asyncio
import logging
import shlex
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from slack_sdk.errors import SlackApiError

from bot.core.config import ChannelSettings
from bot.deps import Deps
from bot.meta.graph import GraphError
from bot.ops.doctor import DoctorEnv, Severity, all_passed, run_doctor
from bot.ops.export import ExportError, Format, Transcript, load_transcript, render, slack_users, with_slack_names
from bot.ops.spend import money, render_text, spend_for_month
from bot.ops.templates import channels_by_waba, describe, stored_templates, sync_templates
from bot.slack import limits
from bot.slack.display_names import shown_name
from bot.slack.errors import slack_reason
from bot.slack.names import UserNames

log = logging.getLogger(__name__)

OPS_SUBCOMMANDS = ("templates", "doctor", "spend", "export")
OPS_WORKING = "Working on it…"
SECTION_LIMIT = 2900  # Block Kit allows 3,000 characters per section; leave room for markup
RESPONSES = 5  # a slash command's response_url takes five answers


@dataclass(frozen=True)
class OpsReply:
    """What to show the requester: fallback text and blocks."""

    text: str
    blocks: list[dict[str, Any]] = field(default_factory=list)


def slack_title(transcript: Transcript) -> str:
    """The transcript's title as shown in Slack: the customer's name cleaned and isolated (the file keeps it)."""
    return replace(transcript, contact_name=shown_name(transcript.contact_name) or "").title


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _sections(lines: Sequence[str], *, code: bool = False) -> list[dict[str, Any]]:
    """Lines packed into as few sections as Block Kit's per-section limit allows."""
    blocks: list[dict[str, Any]] = []
    chunk: list[str] = []
    size = 0
    wrap = 6 if code else 0

    def flush() -> None:
        if chunk:
            body = "\n".join(chunk)
            blocks.append({"type": "section", "text": {"type": "mrkdwn",
                                                       "text": f"```{body}```" if code else body}})

    for line in lines:
        line = limits.clip(line, SECTION_LIMIT - wrap)
        if size + len(line) + 1 + wrap > SECTION_LIMIT:
            flush()
            chunk, size = [], 0
        chunk.append(line)
        size += len(line) + 1
    flush()
    return blocks


def _header(text: str) -> dict[str, Any]:
    return {"type": "header", "text": limits.plain(text, limits.HEADER_TEXT)}


def _cap(blocks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """As many blocks as the five answers a response_url takes can carry; then how many were left out."""
    packs = limits.pack_blocks(blocks)
    if len(packs) <= RESPONSES:
        return blocks
    kept = [b for pack in packs[:RESPONSES] for b in pack][:-1]
    return [*kept, limits.context(f"… {len(blocks) - len(kept):,} more sections not shown")]


def _channels_for(deps: Deps, slack_channel: str | None) -> list[ChannelSettings]:
    bridged = deps.channel_for_slack(slack_channel) if slack_channel else None
    return [bridged] if bridged else list(deps.settings.channels)


# ---- templates ----------------------------------------------------------------------------------


async def templates_reply(deps: Deps, *, slack_channel: str | None = None) -> OpsReply:
    """Templates with status, freshly synced from Meta (the stored list if Meta cannot be reached)."""
    channels = _channels_for(deps, slack_channel)
    note = ""
    try:
        await sync_templates(deps.sessions, deps.graph, channels)
    except GraphError as exc:
        note = f"Could not refresh from Meta ({_escape(exc.explanation)}); showing the last synced list."
    blocks: list[dict[str, Any]] = [_header("Message templates")]
    text_lines = []
    for waba_id, group in channels_by_waba(channels).items():
        rows = await stored_templates(deps.sessions, waba_id)
        title = f"*{', '.join(_escape(c.name) for c in group)}* (WABA {waba_id}): {len(rows)} templates"
        lines = [title] + [f"• {_escape(describe(t))}" for t in rows]
        blocks.extend(_sections(lines))
        text_lines.append(f"{', '.join(c.name for c in group)}: {len(rows)} templates")
    if note:
        blocks.append(limits.context(note))
    return OpsReply("Templates: " + "; ".join(text_lines), _cap(blocks))


# ---- doctor -------------------------------------------------------------------------------------


async def doctor_reply(deps: Deps, *, channel: str | None = None) -> OpsReply:
    """Every doctor check; failures and warnings with their fixes first."""
    results = await run_doctor(DoctorEnv(deps.settings, deps.sessions, deps.graph, deps.slack), channel)
    ok = all_passed(results)
    icon = {Severity.OK: ":white_check_mark:", Severity.WARN: ":warning:", Severity.FAIL: ":x:"}
    problems = [r for r in results if r.level is not Severity.OK]
    fine = [r for r in results if r.level is Severity.OK]
    lines = [f"{icon[r.level]} *{_escape(r.name)}*: {_escape(r.detail)}\n      _fix:_ {_escape(r.fix)}"
             for r in problems]
    lines += [f"{icon[r.level]} {_escape(r.name)}: {_escape(r.detail)}" for r in fine]
    failures = sum(1 for r in results if not r.ok)
    summary = "All checks passed" if ok else f"{failures} check(s) failed"
    blocks = [_header(f"Doctor: {summary.lower()}"), *_sections(lines)]
    return OpsReply(f"Doctor: {summary}", _cap(blocks))


# ---- spend --------------------------------------------------------------------------------------


async def spend_reply(deps: Deps, month: str | None = None) -> OpsReply:
    """Messages and estimated cost by channel and category for one month (default: this month)."""
    settings = deps.settings
    try:
        label, report = await spend_for_month(deps.sessions, settings.pricing, settings.timezone, month,
                                              default_region=settings.default_region)
    except ValueError as exc:
        return OpsReply(f"{exc}. Usage: /campaign spend [YYYY-MM]")
    table = render_text(report, label).splitlines()
    by_channel = ", ".join(f"{name} {money(total, report.currency)}" for name, total in
                           report.by_channel().items())
    text = f"Spend {label}: {money(report.total, report.currency)}" + (f" ({by_channel})" if by_channel else "")
    blocks = [_header(f"Spend {label} (estimate)"), *_sections(table, code=True)]
    return OpsReply(text, _cap(blocks))


# ---- export -------------------------------------------------------------------------------------


async def _slack_names(deps: Deps, user_ids: Sequence[str]) -> dict[str, str]:
    return await UserNames(deps.slack).of(user_ids)


async def export_reply(deps: Deps, *, user_id: str, query: str, slack_channel: str | None = None,
                       formats: Sequence[Format] = (Format.CSV, Format.HTML)) -> OpsReply:
    """Find the conversation, render it, and upload the files to the requester's DM."""
    settings = deps.settings
    query = query.strip()
    if not query:
        return OpsReply("Usage: /campaign export @contact-or-number")
    transcripts = []
    errors = []
    for ch in _channels_for(deps, slack_channel):
        try:
            transcripts.append(await load_transcript(deps.sessions, ch.name, query,
                                                     default_region=settings.default_region,
                                                     timezone=settings.timezone, exported_by=user_id))
        except ExportError as exc:
            errors.append(str(exc))
    if not transcripts:
        return OpsReply(f"Nothing to export: {errors[0] if errors else 'no channel configured'}")
    if len(transcripts) > 1:
        names = ", ".join(t.channel for t in transcripts)
        return OpsReply(f"{query} has conversations on {names}: run the command in that number's Slack "
                        "channel")
    transcript = transcripts[0]
    transcript = with_slack_names(transcript, await _slack_names(deps, [*slack_users(transcript), user_id]))
    try:
        opened = await deps.slack.conversations_open(users=user_id)
        dm = str((opened.get("channel") or {}).get("id"))
        await deps.slack.files_upload_v2(
            channel=dm, initial_comment=_escape(f"{slack_title(transcript)}: {len(transcript.lines)} messages"),
            file_uploads=[{"content": render(transcript, fmt).encode(), "filename": transcript.filename(fmt),
                           "title": f"{slack_title(transcript)} ({fmt.value})"} for fmt in formats])
    except SlackApiError as exc:
        error = slack_reason(exc)
        log.warning("transcript upload failed: %s", error)
        return OpsReply(f"Could not send the transcript: Slack said {error}")
    return OpsReply(f"Sent you the transcript of {_escape(slack_title(transcript))} ({len(transcript.lines)} messages) "
                    "as a direct message.")


# ---- dispatch -----------------------------------------------------------------------------------


async def run_ops_command(deps: Deps, name: str, args: str, *, user_id: str,
                          slack_channel: str | None = None) -> OpsReply:
    """Run one ops sub-command (name in OPS_SUBCOMMANDS) with the rest of the command text."""
    try:
        words = shlex.split(args)
    except ValueError:
        words = args.split()
    if name == "templates":
        return await templates_reply(deps, slack_channel=slack_channel)
    if name == "doctor":
        bridged = deps.channel_for_slack(slack_channel) if slack_channel else None
        wanted = words[0] if words else None
        return await doctor_reply(deps, channel=wanted if wanted in {c.name for c in deps.settings.channels}
                                  else bridged.name if bridged else None)
    if name == "spend":
        return await spend_reply(deps, words[0] if words else None)
    if name == "export":
        return await export_reply(deps, user_id=user_id, query=" ".join(words), slack_channel=slack_channel)
    raise ValueError(f"not an ops sub-command: {name}")


Respond = Callable[..., Awaitable[Any]]


async def respond_with_ops(deps: Deps, respond: Respond, name: str, args: str, *, user_id: str,
                           slack_channel: str | None = None) -> None:
    """Run a sub-command and answer through the command's response_url (visible to the requester only)."""
    try:
        reply = await run_ops_command(deps, name, args, user_id=user_id, slack_channel=slack_channel)
    except Exception:
        log.exception("/campaign %s failed", name)
        reply = OpsReply(f"Something went wrong running /campaign {name}; the error is in the logs.")
    packs = limits.pack_blocks(reply.blocks) if reply.blocks else [[]]
    for i, pack in enumerate(packs[:RESPONSES]):
        text = reply.text if len(packs) == 1 else f"({i + 1} of {len(packs)}) {reply.text}"
        await respond(text=limits.summary(text) if pack else text, blocks=pack or None, response_type="ephemeral",
                      replace_original=False)


def ops_in_background(deps: Deps, tasks: set[asyncio.Task[None]], respond: Respond, name: str, args: str, *,
                      user_id: str, slack_channel: str | None = None) -> None:
    """Start a sub-command after the command was acknowledged; tasks keeps it referenced until done."""
    task = asyncio.create_task(respond_with_ops(deps, respond, name, args, user_id=user_id,
                                                slack_channel=slack_channel))
    tasks.add(task)
    task.add_done_callback(tasks.discard)
