"""What Meta's account events mean, in sentences that name the account and its numbers (pure).

`account_update` events, `security` (two-step PIN) and `automatic_events` (purchases and leads Meta detects
after a Click to WhatsApp ad). Each function returns (icon, text); text is plain (the renderer escapes it).
Nested details become sentences of their own, never "Waba info / Waba id".
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from bot.core.readable import day, epoch, label
from bot.meta import events as ev

Alert = tuple[str, str]

OK, INFO, WARN, SIREN = ":white_check_mark:", ":information_source:", ":warning:", ":rotating_light:"

RECONNECT_HOW = ("To reconnect, finish registering the WhatsApp Business app on the phone and keep the "
                 "pre-checked option that reconnects connected products; it usually comes back within minutes")


def who(waba_id: str, numbers: Sequence[str], phone_number: str | None = None) -> str:
    """The account and its numbers, as staff know them."""
    shown = [phone_number] if phone_number else list(numbers)
    on = ""
    if len(shown) == 1:
        on = f" (number {shown[0]})"
    elif shown:
        on = f" (numbers {', '.join(shown)})"
    return f"WhatsApp Business account {waba_id or 'of this app'}{on}"


def _d(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _words(value: object) -> str:
    """An upper-case code of Meta's (RESTRICTED_BIZ_INITIATED_MESSAGING) as lower-case words."""
    return str(value).replace("_", " ").lower()


def _when(value: object, tz: str) -> str:
    at = epoch(value)
    return day(at, tz) if at else str(value)


_RESTRICTIONS = {
    "RESTRICTED_ADD_PHONE_NUMBER_ACTION": "adding phone numbers",
    "RESTRICTED_BIZ_INITIATED_MESSAGING": "messages the business starts (templates)",
    "RESTRICTED_CUSTOMER_INITIATED_MESSAGING": "replies to customers",
    "RESTRICTED_BUSINESS_INITIATED_CALLING": "calls the business starts",
    "RESTRICTED_USER_INITIATED_CALLING": "calls from customers",
}


def _ban(details: Mapping[str, Any], whom: str) -> Alert:
    info = _d(details.get("ban_info"))
    state = str(info.get("waba_ban_state") or "")
    date = f" on {info['waba_ban_date']}" if info.get("waba_ban_date") else ""
    if state == "REINSTATE":
        return OK, f"{whom} was reinstated{date}: it can send and receive again. Nothing to do"
    if state == "SCHEDULE_FOR_DISABLE":
        return SIREN, (f"{whom} will be disabled{date} for breaking WhatsApp's policies unless the violation is "
                       "fixed or appealed in WhatsApp Manager > Account quality")
    if state == "DISABLE":
        return SIREN, (f"{whom} was disabled{date} for breaking WhatsApp's policies: it can no longer send. "
                       "Appeal in WhatsApp Manager > Account quality")
    return SIREN, f"{whom} had its ban state changed to {_words(state or 'unknown')}{date}"


def _restriction(details: Mapping[str, Any], whom: str, tz: str) -> Alert:
    parts = []
    for r in details.get("restriction_info") or []:
        r = _d(r)
        what = _RESTRICTIONS.get(str(r.get("restriction_type")), _words(r.get("restriction_type") or "something"))
        until = f" until {_when(r['expiration'], tz)}" if r.get("expiration") else ""
        parts.append(f"{what}{until}")
    return SIREN, f"{whom} is restricted: " + ("; ".join(parts) or "no details given") + \
        ". Review WhatsApp Manager > Account quality"


def _waba_info(details: Mapping[str, Any]) -> Mapping[str, Any]:
    return _d(details.get("waba_info"))


def account(e: ev.AccountUpdate, numbers: Sequence[str], tz: str = "UTC", *, paused: int = 0,
            resumed: int = 0) -> Alert:
    """One `account_update` event as what happened and, when something must be done, what."""
    whom = who(e.envelope.waba_id, numbers, e.phone_number)
    d = e.details
    info = _waba_info(d)
    match e.event:
        case "ACCOUNT_OFFBOARDED":
            campaigns = f"; {paused} campaign{'s' if paused != 1 else ''} paused" if paused else ""
            return SIREN, (f"{whom} was disconnected from this app (offboarded): the WhatsApp Business app on the "
                           f"phone was moved to another device or registered again. Mirroring and sending stop "
                           f"until it reconnects{campaigns}. {RECONNECT_HOW}")
        case "ACCOUNT_RECONNECTED":
            campaigns = f"; {resumed} paused campaign{'s' if resumed != 1 else ''} resumed" if resumed else ""
            return OK, (f"{whom} is connected again: mirroring and sending resume{campaigns}. Other linked "
                        "devices (such as WhatsApp Web) must be linked again on the phone")
        case "DISABLED_UPDATE":
            return _ban(d, whom)
        case "ACCOUNT_RESTRICTION":
            return _restriction(d, whom, tz)
        case "ACCOUNT_VIOLATION":
            kind = _d(d.get("violation_info")).get("violation_type")
            return SIREN, (f"{whom} broke a WhatsApp policy" + (f" ({_words(kind)})" if kind else "")
                           + ". Review WhatsApp Manager > Account quality before sending more")
        case "ACCOUNT_DELETED":
            return SIREN, f"{whom} was deleted: nothing can be sent or received on it"
        case "AD_ACCOUNT_LINKED":
            ad = info.get("ad_account_id") or info.get("ad_account_linked")
            return INFO, f"{whom} was linked to ad account {ad}" if ad else f"{whom} was linked to an ad account"
        case "PARTNER_CLIENT_CERTIFICATION_STATUS_UPDATE":
            cert = _d(d.get("partner_client_certification_info"))
            status = str(cert.get("status") or "updated")
            reasons = [str(r) for r in cert.get("rejection_reasons") or [] if str(r).upper() != "NONE"]
            icon = OK if status == "APPROVED" else WARN if status in ("FAILED", "REVOKED", "DISCARDED") else INFO
            business = f" (business {cert['client_business_id']})" if cert.get("client_business_id") else ""
            return icon, (f"{whom}: business verification submitted by the partner{business} is {_words(status)}"
                          + (f": {', '.join(r.lower() for r in reasons)}" if reasons else ""))
        case "PARTNER_APP_UNINSTALLED":
            app = f" app {info['partner_app_id']}" if info.get("partner_app_id") else " a partner app"
            return WARN, (f"{whom} removed{app}'s access. If that app is this bridge, messages stop arriving "
                          "until the business connects it again (Embedded Signup or /onboard)")
        case "PARTNER_APP_INSTALLED":
            app = f" app {info['partner_app_id']}" if info.get("partner_app_id") else " a partner app"
            return INFO, f"{whom} gave{app} access"
        case "PARTNER_ADDED":
            owner = f" (owned by business {info['owner_business_id']})" if info.get("owner_business_id") else ""
            return INFO, f"{whom}{owner} was shared with a Solution Partner"
        case "PARTNER_REMOVED":
            why = _d(d.get("disconnection_info")).get("reason")
            return WARN, f"{whom} is no longer shared with a Solution Partner" + (
                f" (reason: {_words(why)})" if why else "")
        case "VOLUME_BASED_PRICING_TIER_UPDATE":
            tier = _d(d.get("volume_tier_info"))
            parts = [f"tier {tier['tier']}" if tier.get("tier") else "a new tier"]
            if tier.get("pricing_category"):
                parts.append(f"for {_words(tier['pricing_category'])} messages")
            if tier.get("region"):
                parts.append(f"in {tier['region']}")
            if tier.get("effective_month"):
                parts.append(f"from {tier['effective_month']}")
            return INFO, f"{whom} moved to volume pricing {' '.join(parts)}"
        case "AUTH_INTL_PRICE_ELIGIBILITY_UPDATE":
            elig = _d(d.get("auth_international_rate_eligibility"))
            start = f" from {_when(elig['start_time'], tz)}" if elig.get("start_time") else ""
            exceptions = [f"{_d(x).get('country_code')} from {_when(_d(x).get('start_time'), tz)}"
                          for x in elig.get("exception_countries") or []]
            return INFO, (f"{whom} pays authentication-international rates{start}"
                          + (f" (other dates: {', '.join(exceptions)})" if exceptions else ""))
        case "BUSINESS_PRIMARY_LOCATION_COUNTRY_UPDATE":
            return INFO, f"{whom} set its primary business country to {d.get('country') or 'a new country'}"
        case "MM_LITE_TERMS_SIGNED":
            return INFO, f"{whom} accepted the Marketing Messages API terms"
        case "VERIFIED_ACCOUNT":
            return OK, f"{whom} is verified"
        case "ACCOUNT_SETTINGS_UPDATE":
            return INFO, f"{whom}: settings changed" + _settings(d, tz)
    return INFO, f"{whom} reported {label(e.event.lower()).lower()}" + _leaves(d, tz)


def _settings(details: Mapping[str, Any], tz: str) -> str:
    """Each group of settings (e.g. `calling`) as 'calling: status enabled, ...'."""
    parts = []
    for key, value in details.items():
        if isinstance(value, Mapping):
            inner = _leaves(value, tz).removeprefix(": ").replace("; ", ", ")
            parts.append(f"{label(str(key)).lower()}: {inner.lower()}" if inner else label(str(key)).lower())
        elif value is not None and value != "":
            parts.append(f"{label(str(key)).lower()} {str(value).lower()}")
    return f" ({'; '.join(parts)})" if parts else ""


def _leaves(details: Mapping[str, Any], tz: str) -> str:
    """Whatever an unfamiliar event carries, as 'name: value' sentences of its leaves."""
    out: list[str] = []

    def walk(v: object, key: str) -> None:
        if isinstance(v, Mapping):
            for k, x in v.items():
                walk(x, str(k))
        elif isinstance(v, list):
            for x in v:
                walk(x, key)
        elif v is not None and v != "":
            shown = _when(v, tz) if any(w in key for w in ("time", "date", "expiration")) else str(v)
            out.append(f"{label(key).lower()} {shown}")

    walk(details, "")
    return f": {'; '.join(out)}" if out else ""


_PIN_WORDS = {
    "PIN_CHANGED": ("the two-step verification PIN was changed", WARN),
    "PIN_RESET_REQUEST": ("someone asked to reset the two-step verification PIN", SIREN),
    "PIN_REQUEST_SUCCESS": ("the two-step verification PIN was reset", WARN),
}


def security(e: ev.SecurityEvent) -> Alert:
    """A PIN change or reset: who should check that it was one of them."""
    number = f"WhatsApp number {e.display_phone_number}" if e.display_phone_number else "A WhatsApp number"
    words, icon = _PIN_WORDS.get(e.event, (f"reported {_words(e.event)}", WARN))
    requester = f" (requested by {e.requester})" if e.requester else ""
    return icon, (f"{number}: {words}{requester}. The account's admins in WhatsApp Manager should confirm it was "
                  "one of them; if not, change the PIN and review who has access")


def automatic_event(e: ev.AutomaticEvent) -> str:
    """The thread note for a purchase or lead Meta detected in the chat (from a Click to WhatsApp ad)."""
    if e.event_name == "Purchase":
        amount = ""
        if e.value is not None:
            shown = f"{e.value / 1000:,.2f}".rstrip("0").rstrip(".")
            amount = f" of {shown} {e.currency or ''}".rstrip()
        return f":moneybag: Meta detected a purchase{amount} in this chat (reported to the ad that brought it)"
    if e.event_name == "LeadSubmitted":
        return ":dart: Meta detected a lead in this chat (reported to the ad that brought it)"
    return f":bar_chart: Meta detected {_words(e.event_name)} in this chat"
