"""Doctor's checks of Meta's side: each number's token, webhook subscriptions and fields, throughput."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from bot.core.config import ChannelSettings, Mode, Settings
from bot.meta.graph import GraphError
from bot.ops.checks import CheckResult, failed, passed, warned
from bot.ops.checks import all_passed as all_passed  # re-exported for the commands that run doctor
from bot.ops.doctor_env import DoctorEnv, unreachable

# Webhook fields the bridge needs on the app's whatsapp_business_account subscription.
REQUIRED_FIELDS = ("messages", "message_template_status_update")


COEXISTENCE_FIELDS = ("smb_message_echoes",)


# Fields the bridge uses when present; missing ones are a warning.
USEFUL_FIELDS = ("phone_number_quality_update", "account_update", "message_template_quality_update",
                 "template_category_update", "history", "smb_app_state_sync")


WABA_OBJECT = "whatsapp_business_account"


REQUIRED_TOKEN_SCOPES = ("whatsapp_business_messaging", "whatsapp_business_management")


# Meta's documented throughput per number (Throughput page): 80 by default, 1,000 after the automatic
# upgrade, and a fixed 20 for numbers shared with the WhatsApp Business app (Coexistence).
THROUGHPUT_MPS = {"STANDARD": 80, "HIGH": 1000}


COEXISTENCE_MPS = 20


def app_token_for(settings: Settings) -> str:
    """The app access token: meta.app_token, else Meta's `app_id|app_secret` form."""
    meta = settings.meta
    if meta.app_token:
        return meta.app_token
    return f"{meta.app_id}|{meta.app_secret}" if meta.app_id else ""


def subscribe_fix(settings: Settings, fields: Sequence[str]) -> str:
    """How to add webhook fields to the app, by hand or with one Graph call."""
    meta = settings.meta
    all_fields = ",".join(dict.fromkeys([*REQUIRED_FIELDS, *COEXISTENCE_FIELDS, *USEFUL_FIELDS]))
    callback = (settings.server.public_url.rstrip("/") or "https://YOUR-HOST") + "/webhooks/meta"
    return (f"App Dashboard > WhatsApp > Configuration > Webhook fields: subscribe {', '.join(fields)}. "
            f"Or: curl -X POST '{meta.graph_url.rstrip('/')}/{meta.api_version}/{meta.app_id or 'APP_ID'}"
            f"/subscriptions' -d object={WABA_OBJECT} -d callback_url={callback} "
            f"-d verify_token=$META_VERIFY_TOKEN -d fields={all_fields} "
            "-d access_token='APP_ID|APP_SECRET'")


def check_fields(subscriptions: Sequence[Mapping[str, Any]], need_echoes: bool,
                 settings: Settings) -> CheckResult:
    """The app's whatsapp_business_account subscription covers the fields the bridge needs."""
    name = "webhook fields"
    sub = next((s for s in subscriptions if s.get("object") == WABA_OBJECT), None)
    if sub is None:
        required = [*REQUIRED_FIELDS, *(COEXISTENCE_FIELDS if need_echoes else ())]
        return failed(name, f"the app has no {WABA_OBJECT} webhook subscription",
                      subscribe_fix(settings, required))
    have = {str(f.get("name") if isinstance(f, Mapping) else f) for f in sub.get("fields") or []}
    required = [*REQUIRED_FIELDS, *(COEXISTENCE_FIELDS if need_echoes else ())]
    missing = [f for f in required if f not in have]
    if sub.get("active") is False:
        return failed(name, "the app's webhook subscription is inactive",
                      "App Dashboard > WhatsApp > Configuration: verify and save the callback URL")
    if missing:
        why = " (echoes of messages sent from the WhatsApp Business app)" if "smb_message_echoes" in missing \
            else ""
        return failed(name, f"missing webhook field{'s' if len(missing) > 1 else ''}: "
                            f"{', '.join(missing)}{why}", subscribe_fix(settings, missing))
    optional = [f for f in USEFUL_FIELDS if f not in have]
    if optional:
        return warned(name, f"subscribed: {', '.join(sorted(have & set(required)))}; "
                            f"not subscribed: {', '.join(optional)}", subscribe_fix(settings, optional))
    return passed(name, f"subscribed: {', '.join(required)}")


def check_throughput(channel: ChannelSettings, number: Mapping[str, Any]) -> CheckResult:
    """Configured mps against what Meta allows this number."""
    name = f"{channel.name}: throughput"
    throughput = number.get("throughput")
    level = str(throughput.get("level") or "").upper() if isinstance(throughput, Mapping) else ""
    shared = channel.mode is Mode.COEXISTENCE or bool(number.get("is_on_biz_app"))
    meta_mps = COEXISTENCE_MPS if shared else THROUGHPUT_MPS.get(level)
    basis = ("Meta documents a fixed 20 mps for numbers shared with the WhatsApp Business app"
             if shared else f"throughput level {level or 'unknown'}")
    if meta_mps is None:
        return warned(name, f"Meta reports throughput level {level or 'none'}; configured {channel.mps} mps",
                      "check the number in WhatsApp Manager > Phone numbers")
    if channel.mps > meta_mps:
        return failed(name, f"configured {channel.mps} mps but {basis} ({meta_mps} mps): sends will hit "
                            "130429", f"set channels[{channel.name}].mps to {meta_mps} or less")
    if channel.mps < meta_mps:
        note = " (Wabridge defaults Coexistence numbers to 5)" if shared else ""
        return passed(name, f"configured {channel.mps} mps, below Meta's {meta_mps} ({basis}){note}; "
                            "raise mps in app.yaml to send faster")
    return passed(name, f"configured {channel.mps} mps = Meta's {meta_mps} ({basis})")


async def check_token(env: DoctorEnv, channel: ChannelSettings) -> CheckResult:
    """The channel's token is valid, carries the WhatsApp scopes and reaches the WABA."""
    name = f"{channel.name}: access token"
    fix = (f"Business Settings > System users: generate a token with whatsapp_business_messaging and "
           f"whatsapp_business_management for WABA {channel.waba_id}, then update channels[{channel.name}]"
           ".access_token")
    app_token = app_token_for(env.settings)
    if app_token:
        try:
            info = await env.graph.debug_token(channel.access_token, app_token)
        except GraphError as exc:
            return unreachable(name, "Meta's Graph API", env.settings.meta.graph_url, exc) or failed(
                name, f"could not inspect the token: {exc}", "check meta.app_id and meta.app_token (or "
                                                             "meta.app_secret)")
        if not info.get("is_valid"):
            reason = (info.get("error") or {}).get("message") if isinstance(info.get("error"), dict) else None
            return failed(name, f"invalid{': ' + reason if reason else ''}", fix)
        scopes = {str(s) for s in info.get("scopes") or []}
        missing = [s for s in REQUIRED_TOKEN_SCOPES if s not in scopes]
        if missing:
            return failed(name, f"token lacks {', '.join(missing)}", fix)
        targets = {str(t) for g in info.get("granular_scopes") or [] if isinstance(g, dict)
                   for t in g.get("target_ids") or []}
        if targets and channel.waba_id not in targets:
            return failed(name, f"token is not granted WABA {channel.waba_id}", fix)
        expires = info.get("expires_at")
        tail = "never expires" if not expires else \
            f"expires {datetime.fromtimestamp(int(expires), UTC):%Y-%m-%d}"
        return passed(name, f"valid, scoped for WhatsApp, {tail}")
    try:
        await env.graph.get_phone_number(channel.phone_number_id, channel.access_token, fields=("id",))
    except GraphError as exc:
        return unreachable(name, "Meta's Graph API", env.settings.meta.graph_url, exc) or failed(name, str(exc), fix)
    return passed(name, "valid (number readable; to also check its scopes: "
                        f"{env.settings.how_to_set('meta.app_id')})")


async def check_waba_subscription(env: DoctorEnv, channel: ChannelSettings) -> CheckResult:
    """The app is subscribed to the channel's WABA (else Meta sends it no webhooks for that WABA)."""
    name = f"{channel.name}: app subscribed to WABA"
    meta = env.settings.meta
    fix = (f"curl -X POST '{meta.graph_url.rstrip('/')}/{meta.api_version}/{channel.waba_id}/subscribed_apps' "
           f"-H 'Authorization: Bearer <channel token>'")
    try:
        apps = await env.graph.get_subscribed_apps(channel.waba_id, channel.access_token)
    except GraphError as exc:
        return unreachable(name, "Meta's Graph API", meta.graph_url, exc) or failed(name, str(exc), fix)
    ids = {str((a.get("whatsapp_business_api_data") or {}).get("id") or a.get("id") or "") for a in apps}
    if meta.app_id and meta.app_id in ids:
        return passed(name, f"app {meta.app_id} subscribed")
    if not meta.app_id and apps:
        return passed(name, f"{len(apps)} app(s) subscribed (to check it is this one: "
                            f"{env.settings.how_to_set('meta.app_id')})")
    return failed(name, f"app {meta.app_id or '?'} is not subscribed to WABA {channel.waba_id}", fix)


async def check_app_fields(env: DoctorEnv, channels: Sequence[ChannelSettings]) -> CheckResult:
    """GET /{app_id}/subscriptions: the fields the app receives."""
    settings = env.settings
    if not settings.meta.app_id:
        return failed("webhook fields", "meta.app_id is not set, so the app's webhook fields cannot be read",
                      f"{settings.how_to_set('meta.app_id')} (the App ID at the top of the App Dashboard); "
                      "meta.app_secret or meta.app_token then reads the fields")
    try:
        subs = await env.graph.get_app_subscriptions(settings.meta.app_id, app_token_for(settings))
    except GraphError as exc:
        return unreachable("webhook fields", "Meta's Graph API", settings.meta.graph_url, exc) or failed(
            "webhook fields", f"could not read the app's subscriptions: {exc}",
            "check meta.app_id and meta.app_token (an app token: APP_ID|APP_SECRET)")
    need_echoes = any(c.mode is Mode.COEXISTENCE for c in channels)
    return check_fields(subs, need_echoes, settings)


async def check_number(env: DoctorEnv, channel: ChannelSettings) -> CheckResult:
    """Throughput from the Graph API against the configured mps."""
    try:
        number = await env.graph.get_phone_number(
            channel.phone_number_id, channel.access_token,
            fields=("id", "throughput", "platform_type", "is_on_biz_app", "quality_rating"))
    except GraphError as exc:
        name = f"{channel.name}: throughput"
        return unreachable(name, "Meta's Graph API", env.settings.meta.graph_url, exc) or failed(
            name, f"could not read the number: {exc}", "check phone_number_id and the token")
    return check_throughput(channel, number)
