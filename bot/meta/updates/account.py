"""Account and customer updates: quality, account events and settings, security, the business username,
customers' preferences and user-id changes, and Click-to-WhatsApp automatic events."""

from __future__ import annotations

from bot.meta.events import (
    AccountUpdate,
    AutomaticEvent,
    BusinessUsername,
    Envelope,
    QualityUpdate,
    SecurityEvent,
    UnknownChange,
    UserIdChange,
    UserPreference,
    WebhookEvent,
)
from bot.meta.updates.read import (
    Handler,
    Malformed,
    as_dict,
    as_int,
    as_time,
    each,
    opt_str,
    req_obj,
    req_str,
    wa_number,
)


def _user_preferences(env: Envelope, value: dict, where: str) -> list[WebhookEvent]:
    def entry(item: object) -> list[WebhookEvent]:
        if not isinstance(item, dict):
            raise Malformed(f"user_preferences entry is a {type(item).__name__}, not an object")
        user_id = opt_str(item, "user_id") or None
        wa_id = wa_number(item.get("wa_id")) or user_id
        if not wa_id:
            raise Malformed("user_preferences entry has no wa_id or user_id")
        return [UserPreference(envelope=env, wa_id=wa_id, category=req_str(item, "category"),
                               value=req_str(item, "value"), detail=opt_str(item, "detail"),
                               timestamp=as_time(item.get("timestamp")), user_id=user_id)]

    if "user_preferences" not in value:
        return [UnknownChange(env, "user_preferences change holds no user_preferences", value)]
    return each(env, value["user_preferences"], f"{where}.user_preferences", entry)


def _user_id_update(env: Envelope, value: dict, where: str) -> list[WebhookEvent]:
    """`user_id_update[]`: a customer's BSUID was replaced (`user_id.previous` -> `user_id.current`)."""
    def entry(item: object) -> list[WebhookEvent]:
        if not isinstance(item, dict):
            raise Malformed(f"user_id_update entry is a {type(item).__name__}, not an object")
        ids = req_obj(item, "user_id")
        return [UserIdChange(envelope=env, previous_user_id=req_str(ids, "previous"),
                             current_user_id=req_str(ids, "current"), phone=wa_number(item.get("wa_id")),
                             detail=opt_str(item, "detail"), timestamp=as_time(item.get("timestamp")))]

    if "user_id_update" not in value:
        return [UnknownChange(env, "user_id_update change holds no user_id_update", value)]
    return each(env, value["user_id_update"], f"{where}.user_id_update", entry)


def _business_username(env: Envelope, value: dict, where: str) -> list[WebhookEvent]:
    """`business_username_updates`: the number's own username was approved, reserved or deleted."""
    return [BusinessUsername(envelope=env, display_phone_number=wa_number(value.get("display_phone_number")),
                             username=opt_str(value, "username") or None, status=req_str(value, "status"),
                             raw=value)]


def _account_settings(env: Envelope, value: dict, where: str) -> list[WebhookEvent]:
    """`account_settings_update`: a number's settings (e.g. calling) changed; read as an account event whose
    details are the settings Meta sent, whatever their names."""
    details = {k: v for k, v in value.items() if k not in ("messaging_product", "metadata")}
    return [AccountUpdate(envelope=env, event="ACCOUNT_SETTINGS_UPDATE",
                          phone_number=env.display_phone_number, details=details, raw=value)]


def _security(env: Envelope, value: dict, where: str) -> list[WebhookEvent]:
    return [SecurityEvent(envelope=env, display_phone_number=wa_number(value.get("display_phone_number")),
                          event=req_str(value, "event"), requester=opt_str(value, "requester") or None)]


def _automatic_events(env: Envelope, value: dict, where: str) -> list[WebhookEvent]:
    def entry(item: object) -> list[WebhookEvent]:
        if not isinstance(item, dict):
            raise Malformed(f"automatic event is a {type(item).__name__}, not an object")
        data = as_dict(item.get("custom_data"))
        return [AutomaticEvent(envelope=env, wamid=req_str(item, "id"), event_name=req_str(item, "event_name"),
                               timestamp=as_time(item.get("timestamp")), ctwa_clid=opt_str(item, "ctwa_clid"),
                               currency=opt_str(data, "currency"), value=as_int(data.get("value")))]

    if "automatic_events" not in value:
        return [UnknownChange(env, "automatic_events change holds no automatic_events", value)]
    return each(env, value["automatic_events"], f"{where}.automatic_events", entry)



def _quality(env: Envelope, value: dict, where: str) -> list[WebhookEvent]:
    return [
        QualityUpdate(
            envelope=env,
            display_phone_number=wa_number(value.get("display_phone_number")),
            event=req_str(value, "event"),
            current_limit=opt_str(value, "current_limit"),
            raw=value,
            old_limit=opt_str(value, "old_limit"),
            max_daily_conversations_per_business=opt_str(value, "max_daily_conversations_per_business"),
        )
    ]


def _account(env: Envelope, value: dict, where: str) -> list[WebhookEvent]:
    return [
        AccountUpdate(
            envelope=env,
            event=req_str(value, "event"),
            phone_number=wa_number(value.get("phone_number")),
            details={k: v for k, v in value.items() if k not in ("event", "phone_number")},
            raw=value,
        )
    ]


HANDLERS: dict[str, Handler] = {
    "phone_number_quality_update": _quality,
    "account_update": _account,
    "user_preferences": _user_preferences,
    "user_id_update": _user_id_update,
    "security": _security,
    "account_settings_update": _account_settings,
    "automatic_events": _automatic_events,
    "business_username_updates": _business_username,
    "business_username_update": _business_username,  # the singular some samples use
}
