"""`/campaign` in Slack: the create modal (validated inline, then a confirmation with recipients, opted-out
skipped, duration and cost), and `list`, `show`, `pause`, `resume`, `cancel`.

Only `slack.campaign_managers` (user IDs, or user-group IDs whose members count) may create or control
campaigns; anyone may list and show them. Slow work (downloading and importing the audience) happens after
Slack has its answer, and the modal is updated when it is done.
"""

from __future__ import annotations

import asyncio
import io
import logging
import tempfile
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import httpx
from slack_bolt.async_app import AsyncApp
from slack_sdk.errors import SlackApiError
from sqlalchemy import select

from bot.deps import Deps
from bot.handlers.slack_ops import OPS_SUBCOMMANDS, OPS_WORKING, ops_in_background
from bot.onboarding.slack_commands import ONBOARDING_SUBCOMMANDS, onboarding_in_background
from bot.onboarding.slack_commands import WORKING as ONBOARDING_WORKING
from bot.slack import payloads
from bot.slack.errors import slack_reason
from bot.slack.file_fetch import FileOriginRefused, stream_slack_file
from bot.slack.permissions import UNCHECKED, MembershipUnknown, Permissions
from scheduler.campaigns import audience_text
from scheduler.campaigns import records as campaigns
from scheduler.campaigns.audience import find_phone_column, mapped_columns
from scheduler.campaigns.audience_text import AudienceError, open_text, read_header
from scheduler.campaigns.create import CampaignInputError, Request, prepare
from scheduler.campaigns.forms import (
    CONFIRM_CALLBACK,
    CREATE_CALLBACK,
    REFUSAL,
    TEMPLATE_ACTION,
    USAGE,
    Form,
    Summary,
    TemplateChoice,
    campaign_detail,
    campaign_lines,
    confirm_view,
    create_modal,
    parse_command,
    parse_submission,
    preparing_view,
    problem_view,
    selected_channel,
    template_suggestions,
)
from scheduler.campaigns.schedule import describe
from storage.models import Template

log = logging.getLogger(__name__)

HEADER_BYTES = 16384
HEADER_BUDGET = 1.5  # seconds of Slack's 3 spent, at most, reading the file's header before answering


async def manager_refusal(permissions: Permissions, user: str) -> str | None:
    """None for a campaign manager; else what the person is told (refused, or Slack did not say in time)."""
    try:
        return None if await permissions.is_manager(user) else REFUSAL
    except MembershipUnknown:
        return UNCHECKED


async def approved_templates(deps: Deps) -> list[TemplateChoice]:
    """Approved templates of every configured WABA, as synced."""
    wabas = {c.waba_id for c in deps.settings.channels}
    async with deps.sessions() as session:
        rows = (await session.scalars(select(Template).where(
            Template.waba_id.in_(wabas), Template.status == "APPROVED"))).all()
    return [TemplateChoice(t.waba_id, t.name, t.language, t.category, list(t.components or []), t.id)
            for t in rows]


async def _download(deps: Deps, file_id: str, *, limit: int | None = None) -> tuple[bytes | Path, str]:
    """A Slack file's bytes (the first `limit` of them), or the whole file spooled to a temporary path; and
    the file's name, for what is said about it."""
    info = await deps.slack.files_info(file=file_id)
    file = info.get("file") or {}
    name = str(file.get("name") or file.get("title") or "the file")
    url = file.get("url_private_download") or file.get("url_private")
    if not url:
        raise CampaignInputError("audience", "Slack did not give a download link for the file")
    try:
        async with stream_slack_file(deps.settings.slack, str(url), read_timeout=30) as resp:
            return await _save(resp, limit, name), name
    except FileOriginRefused as exc:
        raise CampaignInputError("audience", f"{exc}; share a file uploaded to Slack") from None


async def _save(resp: httpx.Response, limit: int | None, name: str) -> bytes | Path:
    """The first `limit` bytes of the response, or all of it spooled to a temporary path (up to the audience
    file limit, `audience_text.MAX_FILE_BYTES`, the same as from the command line)."""
    if resp.status_code >= 400:
        raise CampaignInputError("audience", f"could not download the file (HTTP {resp.status_code})")
    if limit is not None:
        head = b""
        async for chunk in resp.aiter_bytes():
            head += chunk
            if len(head) >= limit:
                break
        return head[:limit]
    total = 0
    with tempfile.NamedTemporaryFile(prefix="wabridge-audience-", suffix=".csv", delete=False) as out:
        async for chunk in resp.aiter_bytes():
            total += len(chunk)
            if total > audience_text.MAX_FILE_BYTES:
                raise CampaignInputError("audience", audience_text.file_too_large(name))
            out.write(chunk)
        return Path(out.name)


async def _header_problem(deps: Deps, form: Form) -> dict[str, str] | None:
    """Inline errors from the file's first row (phone column, mapped columns), if it can be read in time."""
    try:
        head, _ = await asyncio.wait_for(_download(deps, form.file_id, limit=HEADER_BYTES), timeout=HEADER_BUDGET)
    except (TimeoutError, SlackApiError, httpx.HTTPError, CampaignInputError):
        return None  # the import after the answer reports whatever this could not check
    assert isinstance(head, bytes)
    text = head.decode("utf-8-sig", errors="replace")
    try:
        header, _ = read_header(io.StringIO(text.split("\n", 1)[0] + "\n"))
        find_phone_column(header)
    except AudienceError as exc:
        return {"audience": str(exc)}
    missing = [c for c in mapped_columns(form.variables) if c not in header
               and c.strip().lower() not in {h.strip().lower() for h in header}]
    if missing:
        return {"variables": f"Column(s) not in the file: {', '.join(missing)} (it has: {', '.join(header)})."}
    return None


@dataclass
class _CampaignListeners:
    """What the listeners below share within one app."""

    deps: Deps
    permissions: Permissions
    background: set[asyncio.Task[None]]


def register(bolt: AsyncApp, deps: Deps) -> None:
    """Add `/campaign` and its modals to the bolt app."""
    app = _CampaignListeners(deps, Permissions(deps.settings.slack, deps.slack), set())
    bolt.command("/campaign")(partial(on_command, app))
    bolt.options(TEMPLATE_ACTION)(partial(template_options, app))
    bolt.view(CREATE_CALLBACK)(partial(on_create, app))
    bolt.view(CONFIRM_CALLBACK)(partial(on_confirm, app))
    bolt.view_closed(CONFIRM_CALLBACK)(partial(on_closed, app))


async def on_command(app: _CampaignListeners, ack: Any, body: dict[str, Any], client: Any, respond: Any) -> None:
    deps = app.deps
    cmd = parse_command(str(body.get("text") or ""))
    user = str(body.get("user_id") or "")
    verb, _, rest = str(body.get("text") or "").strip().partition(" ")
    if verb.lower() in OPS_SUBCOMMANDS:  # templates, doctor, spend, export: managers only
        if (refused := await manager_refusal(app.permissions, user)) is not None:
            await ack(text=refused)
            return
        await ack(text=OPS_WORKING)
        ops_in_background(deps, app.background, respond, verb.lower(), rest, user_id=user,
                          slack_channel=str(body.get("channel_id") or "") or None)
        return
    if verb.lower() in ONBOARDING_SUBCOMMANDS:  # connect, history: managers only
        if (refused := await manager_refusal(app.permissions, user)) is not None:
            await ack(text=refused)
            return
        await ack(text=ONBOARDING_WORKING)
        onboarding_in_background(deps, app.background, respond, verb.lower(), rest, user_id=user,
                                 slack_channel=str(body.get("channel_id") or "") or None)
        return
    if cmd.action == "help":
        await ack(text=(f"{cmd.problem}\n\n" if cmd.problem else "") + USAGE)
        return
    if cmd.action == "list":
        await ack(text=campaign_lines(await campaigns.summaries(deps.sessions, limit=15), deps.settings.timezone))
        return
    if cmd.action == "show":
        assert cmd.campaign_id is not None
        try:
            await ack(text=campaign_detail(await campaigns.campaign(deps.sessions, cmd.campaign_id),
                                           deps.settings.timezone))
        except campaigns.ControlError as exc:
            await ack(text=str(exc).capitalize() + ".")
        return
    if (refused := await manager_refusal(app.permissions, user)) is not None:
        await ack(text=refused)
        return
    if cmd.action == "create":
        await ack()
        origin = str(body.get("channel_id") or "")
        view = create_modal(deps.settings, await approved_templates(deps), channel=deps.channel_for_slack(origin),
                            origin=origin)
        await client.views_open(trigger_id=body["trigger_id"], view=view)
        return
    assert cmd.campaign_id is not None
    try:
        if cmd.action == "pause":
            text = await campaigns.pause(deps.sessions, cmd.campaign_id, f"paused by <@{user}>")
        elif cmd.action == "resume":
            text = await campaigns.resume(deps.sessions, cmd.campaign_id)
        else:
            text = await campaigns.cancel(deps.sessions, cmd.campaign_id)
    except campaigns.ControlError as exc:
        text = str(exc)
    await ack(text=text[0].upper() + text[1:] + ".")


async def template_options(app: _CampaignListeners, ack: Any, body: dict[str, Any]) -> None:
    """The create modal's template select asks which templates match what was typed."""
    deps = app.deps
    view = body.get("view") or {}
    if await manager_refusal(app.permissions, str((body.get("user") or {}).get("id") or "")) is not None:
        await ack(options=[])
        return
    await ack(**template_suggestions(deps.settings, await approved_templates(deps), str(body.get("value") or ""),
                                     selected_channel(view)))


async def on_create(app: _CampaignListeners, ack: Any, body: dict[str, Any], view: dict[str, Any]) -> None:
    deps = app.deps
    user = str((body.get("user") or {}).get("id") or "")
    if (refused := await manager_refusal(app.permissions, user)) is not None:
        await ack(response_action="errors", errors={"channel": refused})
        return
    result = parse_submission(view["state"]["values"], deps.settings, await approved_templates(deps))
    if isinstance(result, dict):
        await ack(response_action="errors", errors=result)
        return
    problem = await _header_problem(deps, result)
    if problem:
        await ack(response_action="errors", errors=problem)
        return
    origin = str(payloads.metadata(view.get("private_metadata")).get("origin") or "")
    await ack(response_action="update", view=preparing_view(result, origin))
    task = asyncio.create_task(_prepare(deps, result, user, origin, str(view["id"])))
    app.background.add(task)
    task.add_done_callback(app.background.discard)


async def on_confirm(app: _CampaignListeners, ack: Any, body: dict[str, Any], view: dict[str, Any],
                     client: Any) -> None:
    deps = app.deps
    user = str((body.get("user") or {}).get("id") or "")
    meta = payloads.metadata(view.get("private_metadata"))
    campaign_id = payloads.as_id(meta.get("campaign_id"))
    if (refused := await manager_refusal(app.permissions, user)) is not None:
        await ack(response_action="update", view=problem_view(refused))
        return
    if campaign_id is None:
        await ack()
        return
    try:
        c = await campaigns.activate(deps.sessions, campaign_id)
    except campaigns.ControlError as exc:
        await ack(response_action="update", view=problem_view(str(exc)))
        return
    await ack(response_action="clear")
    origin = meta.get("origin")
    if origin:
        text = (f":white_check_mark: Campaign #{c.id} {c.name} scheduled: {describe(campaigns.schedule_of(c))}. "
                "Its progress will be posted in the number's channel.")
        try:
            await client.chat_postEphemeral(channel=origin, user=user, text=text)
        except SlackApiError as exc:
            log.info("could not confirm campaign %s to %s: %s", c.id, user, slack_reason(exc))


async def on_closed(app: _CampaignListeners, ack: Any, view: dict[str, Any]) -> None:
    deps = app.deps
    await ack()
    campaign_id = payloads.as_id(payloads.metadata(view.get("private_metadata")).get("campaign_id"))
    if campaign_id is not None:
        await campaigns.discard_draft(deps.sessions, campaign_id)


async def _prepare(deps: Deps, form: Form, user: str, origin: str, view_id: str) -> None:
    """Download and import the audience, then show the confirmation (or why it cannot be used)."""
    path: Path | None = None
    try:
        downloaded, name = await _download(deps, form.file_id)
        assert isinstance(downloaded, Path)
        path = downloaded
        request = Request(channel=form.channel, template=form.template, language=form.language,
                          variables=form.variables, schedule=form.schedule, name=form.name, created_by=user,
                          category=form.category)
        with open_text(path) as stream:
            prepared = await prepare(deps.sessions, deps.settings, request, stream, source=name)
        report = prepared.report
        summary = Summary(campaign_id=prepared.campaign_id, form=form, rows=report.rows,
                          recipients=prepared.recipients, opted_out=prepared.opted_out,
                          duplicates=report.duplicates, bad_rows=[(b.line, b.reason) for b in report.bad_rows[:10]],
                          bad_count=report.bad_count, duration_s=prepared.duration_s, cost=prepared.cost,
                          warnings=prepared.warnings)
        view = confirm_view(summary, origin)
    except CampaignInputError as exc:
        view = problem_view(exc.message[0].upper() + exc.message[1:])
    except Exception:
        log.exception("preparing a campaign from Slack failed")
        view = problem_view("Something went wrong while importing the audience; the error is in the logs.")
    finally:
        if path is not None:
            path.unlink(missing_ok=True)
    try:
        await deps.slack.views_update(view_id=view_id, view=view)
    except SlackApiError as exc:
        log.warning("could not update the campaign modal: %s", slack_reason(exc))
