"""The four Groups API fields: lifecycle, participants, settings and status, one event per `groups[]` element."""

from __future__ import annotations

from bot.meta.events import (
    Envelope,
    GroupEvent,
    GroupMember,
    UnknownChange,
    WebhookEvent,
)
from bot.meta.updates.read import (
    Handler,
    Malformed,
    as_dict,
    as_list,
    as_time,
    each,
    errors_of,
    opt_str,
    req_str,
    wa_number,
)


def _member(x: object) -> GroupMember:
    d = as_dict(x)
    return GroupMember(wa_id=wa_number(d.get("wa_id")), user_id=opt_str(d, "user_id") or None,
                       username=opt_str(d, "username") or None, input=wa_number(d.get("input")),
                       errors=errors_of(d.get("errors")))


def _groups(env: Envelope, value: dict, where: str) -> list[WebhookEvent]:
    """The four groups fields: each `groups[]` element is one event, told apart by its `type`."""
    def entry(item: object) -> list[WebhookEvent]:
        if not isinstance(item, dict):
            raise Malformed(f"group entry is a {type(item).__name__}, not an object")
        settings = {k: item[k] for k in ("group_subject", "group_description", "profile_picture")
                    if isinstance(item.get(k), dict)}
        subject = opt_str(item, "subject") or opt_str(as_dict(item.get("group_subject")), "text")
        requester = _member(item) if (item.get("wa_id") or item.get("user_id")) else None
        return [GroupEvent(
            envelope=env, group_id=req_str(item, "group_id"), type=req_str(item, "type"),
            timestamp=as_time(item.get("timestamp")), subject=subject,
            description=opt_str(item, "description") or opt_str(as_dict(item.get("group_description")), "text"),
            invite_link=opt_str(item, "invite_link"),
            added=[_member(m) for m in as_list(item.get("added_participants"))],
            removed=[_member(m) for m in as_list(item.get("removed_participants"))],
            failed=[_member(m) for m in as_list(item.get("failed_participants"))],
            member=requester, initiated_by=opt_str(item, "initiated_by") or opt_str(value, "initiated_by"),
            reason=opt_str(item, "reason"), request_id=opt_str(item, "request_id"),
            join_request_id=opt_str(item, "join_request_id"), settings=settings,
            errors=errors_of(item.get("errors")), raw=item)]

    if "groups" not in value:
        return [UnknownChange(env, f"{env.field} change holds no groups", value)]
    return each(env, value["groups"], f"{where}.groups", entry)


HANDLERS: dict[str, Handler] = {
    "group_lifecycle_update": _groups,
    "group_participants_update": _groups,
    "group_settings_update": _groups,
    "group_status_update": _groups,
}
