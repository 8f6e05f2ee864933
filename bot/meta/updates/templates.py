"""Template updates: status, quality, category and components."""

from __future__ import annotations

from bot.meta.events import (
    Envelope,
    TemplateCategory,
    TemplateComponents,
    TemplateQuality,
    TemplateStatus,
    WebhookEvent,
)
from bot.meta.updates.read import (
    Handler,
    as_id,
    as_list,
    as_time,
    opt_str,
    req_str,
)


def _template_quality(env: Envelope, value: dict, where: str) -> list[WebhookEvent]:
    return [
        TemplateQuality(
            envelope=env,
            template_id=as_id(value.get("message_template_id")),
            name=opt_str(value, "message_template_name"),
            language=opt_str(value, "message_template_language"),
            previous_score=opt_str(value, "previous_quality_score"),
            new_score=opt_str(value, "new_quality_score"),
            raw=value,
        )
    ]


def _template_status(env: Envelope, value: dict, where: str) -> list[WebhookEvent]:
    if "event" not in value and "new_quality_score" in value:
        # Meta's own quality-update example is labelled with this field; read it as what it is.
        return _template_quality(env, value, where)
    details = {
        k: value[k]
        for k in ("rejection_info", "disable_info", "other_info")
        if isinstance(value.get(k), dict)
    }
    return [
        TemplateStatus(
            envelope=env,
            event=req_str(value, "event"),
            template_id=as_id(value.get("message_template_id")),
            name=opt_str(value, "message_template_name"),
            language=opt_str(value, "message_template_language"),
            reason=opt_str(value, "reason"),
            raw=value,
            category=opt_str(value, "message_template_category"),
            details=details,
        )
    ]


def _template_category(env: Envelope, value: dict, where: str) -> list[WebhookEvent]:
    return [
        TemplateCategory(
            envelope=env,
            template_id=as_id(value.get("message_template_id")),
            name=opt_str(value, "message_template_name"),
            language=opt_str(value, "message_template_language"),
            previous_category=opt_str(value, "previous_category"),
            new_category=opt_str(value, "new_category"),
            correct_category=opt_str(value, "correct_category"),
            effective_at=as_time(value.get("category_update_timestamp")),
            raw=value,
        )
    ]


def _template_components(env: Envelope, value: dict, where: str) -> list[WebhookEvent]:
    return [
        TemplateComponents(
            envelope=env,
            template_id=as_id(value.get("message_template_id")),
            name=opt_str(value, "message_template_name"),
            language=opt_str(value, "message_template_language"),
            element=opt_str(value, "message_template_element"),
            title=opt_str(value, "message_template_title"),
            footer=opt_str(value, "message_template_footer"),
            buttons=[b for b in as_list(value.get("message_template_buttons")) if isinstance(b, dict)],
            raw=value,
        )
    ]


HANDLERS: dict[str, Handler] = {
    "message_template_status_update": _template_status,
    "message_template_quality_update": _template_quality,
    "template_category_update": _template_category,
    "message_template_components_update": _template_components,
}
