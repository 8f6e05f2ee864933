"""What the server does with an embedded-signup result: exchange the code for a business token, store the
channel (token encrypted), subscribe the app to the WABA, then ask Meta for the contact and history syncs.

A coexistence number is already registered on the WhatsApp Business app, so /register is never called.
Each step's failure is told in words a shop owner understands; the technical detail goes to the logs and to
Slack, never the token.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from typing import cast

from sqlalchemy import select

from bot.core.config import ChannelSettings, Mode, Settings
from bot.core.workspace import as_setting
from bot.deps import Deps
from bot.meta.errors import GraphError
from bot.meta.graph import SyncType
from bot.onboarding import syncs
from bot.onboarding.channels import COEXISTENCE_MPS, apply_channels, is_onboarded, store_channel
from bot.onboarding.crypto import TokenBox, TokenKeyMissing, token_box
from bot.onboarding.links import Link
from bot.onboarding.signin import token_failure_message
from storage.models import Channel, OnboardedChannel, utcnow
from storage.outbox_kinds import OnboardingNotice, enqueue
from storage.repository import sync_channels

log = logging.getLogger(__name__)

PHONE_FIELDS = ("id", "display_phone_number", "verified_name")


class RedactSecrets(logging.Filter):
    """Masks secrets in logged URLs: httpx logs each request's URL, and the code exchange carries the app
    secret and the signup code in its query (the token itself only ever comes back in a response body)."""

    _SECRET = re.compile(r"((?:client_secret|code|access_token|input_token)=)[^&\s\"']+")

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = self._SECRET.sub(r"\1***", message)
        if redacted != message:
            record.msg, record.args = redacted, ()
        return True


_httpx_log = logging.getLogger("httpx")
if not any(isinstance(f, RedactSecrets) for f in _httpx_log.filters):
    _httpx_log.addFilter(RedactSecrets())
_IDS = re.compile(r"^\d{1,32}$")


@dataclass(frozen=True)
class SignupResult:
    """What the page posts back from Meta's embedded signup."""

    code: str
    waba_id: str
    phone_number_id: str


@dataclass(frozen=True)
class Step:
    """One step's outcome: `message` is for the shop owner, `detail` for the operator."""

    name: str
    ok: bool
    message: str
    detail: str = ""


@dataclass
class Outcome:
    steps: list[Step] = field(default_factory=list)
    channel: ChannelSettings | None = None

    @property
    def connected(self) -> bool:
        """The number is stored and the app subscribed: messages will flow."""
        return self.channel is not None and all(s.ok for s in self.steps if s.name in ("store", "subscribe"))

    @property
    def ok(self) -> bool:
        return self.channel is not None and all(s.ok for s in self.steps)

    @property
    def stored(self) -> bool:
        return self.channel is not None


class InvalidSignup(ValueError):
    """The page sent something that is not an embedded-signup result."""


def parse_signup(data: object) -> SignupResult:
    """Validate the JSON the page posted: code, waba_id and phone_number_id."""
    if not isinstance(data, dict):
        raise InvalidSignup("expected a JSON object")
    code = str(data.get("code") or "").strip()
    waba, pnid = str(data.get("waba_id") or "").strip(), str(data.get("phone_number_id") or "").strip()
    if not code or len(code) > 4096:
        raise InvalidSignup("Facebook did not return a sign-in code")
    if not _IDS.match(waba):
        raise InvalidSignup("Facebook did not say which WhatsApp Business account was chosen")
    if not _IDS.match(pnid):
        raise InvalidSignup("Facebook did not say which phone number was connected")
    return SignupResult(code, waba, pnid)


def channel_name(wanted: str | None, verified_name: str | None, display: str, taken: set[str]) -> str:
    """A channel name: the one asked for, else the business's name, else its number; made unique."""
    base = (wanted or "").strip()
    if not base:
        base = re.sub(r"[^a-z0-9]+", "-", (verified_name or "").lower()).strip("-")[:40]
    if not base:
        digits = re.sub(r"\D", "", display)
        base = f"wa-{digits}" if digits else "whatsapp"
    name, n = base[:90], 2
    while name in taken:
        name, n = f"{base[:85]}-{n}", n + 1
    return name


def _graph_detail(exc: GraphError) -> str:
    return f"{exc} ({exc.explanation})" if exc.code is not None else str(exc)


async def onboard(deps: Deps, link: Link, signup: SignupResult) -> Outcome:
    """Run every step it can; stops early only when nothing further can work."""
    settings, graph, meta = deps.settings, deps.graph, deps.settings.meta
    out = Outcome()
    try:
        box = token_box(settings)
    except TokenKeyMissing:
        out.steps.append(Step("token", False, "Wabridge is not set up to keep your connection safely yet. "
                              "Please tell the person who sent you this link.", "meta.token_key is not set"))
        return out
    # 1. The code -> a business token (it lives in memory and, encrypted, in the database only).
    try:
        token = await graph.exchange_code(meta.app_id, meta.app_secret, signup.code)
    except GraphError as exc:
        out.steps.append(Step("token", False, token_failure_message(exc), _graph_detail(exc)))
        return out
    out.steps.append(Step("token", True, "Signed in with Facebook."))
    # 2. The number, read with that token: proves access and gives the number and business name.
    try:
        number = await graph.get_phone_number(signup.phone_number_id, token, fields=PHONE_FIELDS)
    except GraphError as exc:
        out.steps.append(Step("number", False, "We could not open your WhatsApp number with the permissions "
                              "Facebook gave us. Please connect again and, when Facebook asks, choose your "
                              "business's WhatsApp number and allow access to it.", _graph_detail(exc)))
        return out
    display = str(number.get("display_phone_number") or "")
    out.steps.append(Step("number", True, f"Found your WhatsApp number {display}".rstrip() + "."))
    # 3. Store it (token encrypted) and start using it in this process at once.
    channel = await _store(deps, link, signup, token, display, number.get("verified_name"), box)
    if isinstance(channel, Step):
        out.steps.append(channel)
        return out
    out.channel = channel
    out.steps.append(Step("store", True, "Your number is connected to Wabridge."))
    # 4. Webhooks for this WABA come to this app. No /register: the Business App keeps the number.
    try:
        await graph.subscribe_app(signup.waba_id, token)
        out.steps.append(Step("subscribe", True, "Messages will now arrive in Slack."))
    except GraphError as exc:
        out.steps.append(Step("subscribe", False, "Your number is connected, but Facebook did not let us "
                              "switch on message delivery. We will look into it; you do not need to do "
                              "anything now.", _graph_detail(exc)))
    # 5. The two syncs Meta allows once, within 24 hours of signup.
    for sync_type, done, failed in (
        (syncs.SYNC_CONTACTS, "Your contacts' names are being copied from the app.",
         "We could not copy your contacts' names from the app."),
        (syncs.SYNC_HISTORY, "Your chat history is being copied (if you agreed to share it in the app).",
         "We could not copy your earlier chats from the app."),
    ):
        out.steps.append(await _request_sync(deps, channel, sync_type, token, done, failed))
    return out


async def _store(deps: Deps, link: Link, signup: SignupResult, token: str, display: str,
                 verified_name: object, box: TokenBox) -> ChannelSettings | Step:
    settings = deps.settings
    existing = settings.channel_by_phone_number_id(signup.phone_number_id)
    if existing is not None and not is_onboarded(settings, signup.phone_number_id):
        return Step("store", False, "This WhatsApp number is already connected to Wabridge.",
                    f"phone_number_id {signup.phone_number_id} is configured in app.yaml as {existing.name}")
    async with deps.sessions() as session, session.begin():
        row = await session.scalar(select(OnboardedChannel).where(
            OnboardedChannel.phone_number_id == signup.phone_number_id))
        taken = {c.name for c in settings.channels} | set((await session.scalars(select(Channel.name))).all())
        if row is not None:
            name = row.name  # connected again: keep its name and history
        else:
            name = channel_name(link.channel_name, str(verified_name or ""), display, taken)
        channel = ChannelSettings(name=name, phone_number_id=signup.phone_number_id, waba_id=signup.waba_id,
                                  display_phone_number=display, mode=Mode.COEXISTENCE, mps=COEXISTENCE_MPS,
                                  access_token=token, slack_channel=link.slack_channel,
                                  slack_team=as_setting(link.slack_team))
        await store_channel(session, box, channel, link.requested_by)
    deps.channel_ids.update(await sync_channels(deps.sessions, [channel], deps.settings.workspace_of))
    apply_channels(settings, [channel])
    log.info("channel %s (%s) connected through /onboard", channel.name, channel.phone_number_id)
    return channel


async def _request_sync(deps: Deps, channel: ChannelSettings, sync_type: str, token: str, done: str,
                        failed: str) -> Step:
    channel_id = deps.channel_ids[channel.phone_number_id]
    try:
        request_id = await deps.graph.smb_app_data(channel.phone_number_id, token, cast(SyncType, sync_type))
        error = None
    except GraphError as exc:
        request_id, error = None, _graph_detail(exc)
    async with deps.sessions() as session, session.begin():
        await syncs.record_request(session, channel_id=channel_id, sync_type=sync_type, request_id=request_id,
                                   error=error)
    if error:
        return Step(f"sync:{sync_type}", False, failed + " Everything else works; new messages are not affected.",
                    error)
    return Step(f"sync:{sync_type}", True, done)


def slack_report(outcome: Outcome, link: Link, settings: Settings) -> str:
    """The Slack message about an onboarding: each failed step in plain words plus its technical detail."""
    who = f" (asked for by <@{link.requested_by}>)" if link.requested_by and link.requested_by.startswith("U") else ""
    ch = outcome.channel
    if ch is not None:
        name = f"*{ch.name}* {ch.display_phone_number}".rstrip()
        head = (f":white_check_mark: WhatsApp number {name} connected{who}; it is bridged into <#{ch.slack_channel}>."
                if outcome.connected else f":warning: WhatsApp number {name} connected with problems{who}.")
    else:
        head = f":x: Connecting a WhatsApp number failed{who}."
    lines = [head]
    for step in outcome.steps:
        if not step.ok:
            lines.append(f"• {step.message}" + (f"\n    _{_escape(step.detail)}_" if step.detail else ""))
    if ch is not None and outcome.ok:
        lines.append("Contacts and chat history are being imported; progress appears in this channel.")
    return "\n".join(lines)


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


async def owe_report(deps: Deps, outcome: Outcome, link: Link) -> None:
    """Queue the Slack report (alerts channel, else the channel the number was meant for)."""
    async with deps.sessions() as session, session.begin():
        notice = OnboardingNotice(slack_report(outcome, link, deps.settings), link.slack_channel, link_id=link.id)
        await enqueue(session, notice, dedupe_key=f"onboarding:{link.id}:{utcnow().isoformat()}",
                      slack_team=link.slack_team)
