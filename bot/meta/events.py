"""Typed, immutable events decoded from Meta's WhatsApp Business Account webhooks.

The parser in :mod:`bot.meta.parser` turns one webhook delivery into a list of these. Every
class is a frozen dataclass so handlers can pass events around without defensive copies.
Shapes and their sources are listed in docs/meta-webhooks.md.

It is the one catalogue of what a webhook can say; the parser builds these and every
handler dispatches on them, so both sides read the same definitions.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Union

from bot.core.origin import Direction  # which way a message went, as stored

# The kinds a MessageContent can have; anything else Meta sends becomes "unsupported".
CONTENT_KINDS = frozenset(
    {
        "text",
        "image",
        "audio",
        "video",
        "document",
        "sticker",
        "location",
        "contacts",
        "interactive",
        "button",
        "reaction",
        "order",
        "system",
        "revoke",
        "request_welcome",
        "unsupported",
    }
)
MEDIA_KINDS = frozenset({"image", "audio", "video", "document", "sticker"})


@dataclass(frozen=True, slots=True)
class Envelope:
    """Where a change came from: WABA (entry.id), webhook field and, when Meta says, the number."""

    waba_id: str
    field: str
    phone_number_id: str | None
    display_phone_number: str | None
    # entry.time (sent with template/account fields); None when absent.
    entry_time: datetime | None = None


@dataclass(frozen=True, slots=True)
class MetaError:
    code: int
    title: str
    message: str | None
    details: str | None
    href: str | None = None


@dataclass(frozen=True, slots=True)
class Media:
    id: str | None
    mime_type: str | None
    sha256: str | None
    caption: str | None
    filename: str | None
    voice: bool = False
    animated: bool = False
    # Newer webhook versions include a short-lived download URL; the id is what lasts.
    url: str | None = None


@dataclass(frozen=True, slots=True)
class MessageContent:
    kind: str
    original_type: str
    text: str | None
    media: Media | None
    location: dict | None
    contacts: list[dict]
    interactive: dict | None
    button: dict | None
    reaction: dict | None
    order: dict | None
    system: dict | None
    referral: dict | None
    context: dict | None
    errors: list[MetaError]
    # For type "unsupported": the inner `unsupported.type` Meta names (e.g. "edit", "poll").
    unsupported_type: str | None = None
    # Set when the type object was unreadable (missing or wrong shape); kind is then "unsupported".
    problem: str | None = None
    # type "edit": the wamid this content replaces (the content itself is the new version);
    # type "revoke" (kind "revoke"): the wamid the sender deleted.
    edits: str | None = None
    revokes: str | None = None


@dataclass(frozen=True, slots=True)
class InboundMessage:
    envelope: Envelope
    wamid: str
    # The customer's phone number; Meta's business-scoped user id when it withholds the number.
    from_wa_id: str
    profile_name: str | None
    timestamp: datetime
    content: MessageContent
    raw: dict
    user_id: str | None = None  # BSUID ("from_user_id"), when Meta sends one
    username: str | None = None
    phone: str | None = None  # the phone number when Meta sent one ("from" may be empty)
    parent_user_id: str | None = None  # "from_parent_user_id", when parent BSUIDs are enabled
    group_id: str | None = None  # set when the message was written in a group (`from` is the participant)


@dataclass(frozen=True, slots=True)
class MessageEcho:
    """A message the business sent from the WhatsApp Business App (Coexistence)."""

    envelope: Envelope
    wamid: str
    from_number: str
    to_wa_id: str
    timestamp: datetime
    content: MessageContent
    raw: dict
    to_phone: str | None = None
    to_user_id: str | None = None
    username: str | None = None  # the recipient's username, from the change's contacts[]


@dataclass(frozen=True, slots=True)
class CallEvent:
    """One element of the `calls` field: a call connected or ended, or a call status (ringing, ...)."""

    envelope: Envelope
    call_id: str
    event: str  # connect | terminate | status
    direction: str | None  # USER_INITIATED | BUSINESS_INITIATED
    customer: str  # the customer's phone number, or BSUID when Meta withholds the number
    timestamp: datetime
    status: str | None  # terminate: COMPLETED | FAILED; status: RINGING | ACCEPTED | REJECTED
    duration: int | None  # seconds, on terminate
    raw: dict
    customer_user_id: str | None = None
    profile_name: str | None = None
    username: str | None = None


@dataclass(frozen=True, slots=True)
class TemplateComponents:
    """A template's components were edited (field `message_template_components_update`)."""

    envelope: Envelope
    template_id: str | None
    name: str | None
    language: str | None
    element: str | None
    title: str | None
    footer: str | None
    buttons: list[dict]
    raw: dict


@dataclass(frozen=True, slots=True)
class Pricing:
    billable: bool | None
    pricing_model: str | None
    category: str | None
    type: str | None


@dataclass(frozen=True, slots=True)
class StatusUpdate:
    envelope: Envelope
    wamid: str
    status: str
    timestamp: datetime
    recipient_id: str | None
    errors: list[MetaError]
    conversation_id: str | None
    conversation_origin: str | None
    pricing: Pricing | None
    raw: dict
    conversation_expires_at: datetime | None = None
    biz_opaque_callback_data: str | None = None
    recipient_user_id: str | None = None


@dataclass(frozen=True, slots=True)
class ChangeErrors:
    """System-, app- or account-level errors sent as `value.errors` on a change."""

    envelope: Envelope
    errors: list[MetaError]


@dataclass(frozen=True, slots=True)
class TemplateStatus:
    envelope: Envelope
    event: str
    template_id: str | None
    name: str | None
    language: str | None
    reason: str | None
    raw: dict
    category: str | None = None
    # rejection_info / disable_info / other_info, whichever Meta sent.
    details: dict = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class TemplateQuality:
    envelope: Envelope
    template_id: str | None
    name: str | None
    language: str | None
    previous_score: str | None
    new_score: str | None
    raw: dict


@dataclass(frozen=True, slots=True)
class TemplateCategory:
    """A template's category changed, or will change at `effective_at` (then `correct_category`)."""

    envelope: Envelope
    template_id: str | None
    name: str | None
    language: str | None
    previous_category: str | None
    new_category: str | None
    correct_category: str | None
    effective_at: datetime | None
    raw: dict


@dataclass(frozen=True, slots=True)
class QualityUpdate:
    envelope: Envelope
    display_phone_number: str | None
    event: str
    current_limit: str | None
    raw: dict
    old_limit: str | None = None
    max_daily_conversations_per_business: str | None = None


@dataclass(frozen=True, slots=True)
class AccountUpdate:
    envelope: Envelope
    event: str
    phone_number: str | None
    details: dict
    raw: dict


@dataclass(frozen=True, slots=True)
class HistoryMessage:
    wamid: str
    wa_id: str
    direction: Direction
    timestamp: datetime
    content: MessageContent
    status: str | None  # history_context.status, lower-cased (read, delivered, played, error, ...)
    raw: dict = field(default_factory=dict)
    # The customer's other ids (thread `context`, `from_user_id`, the media follow-up's contacts[]).
    phone: str | None = None
    user_id: str | None = None
    username: str | None = None


@dataclass(frozen=True, slots=True)
class HistoryChunk:
    """One element of `value.history[]` (or a media follow-up sent as `value.messages[]`)."""

    envelope: Envelope
    phase: int | None
    chunk_order: int | None
    progress: int | None
    messages: list[HistoryMessage]
    errors: list[MetaError]
    raw: dict


@dataclass(frozen=True, slots=True)
class ContactSync:
    envelope: Envelope
    action: str
    wa_id: str  # the phone number, or the BSUID when the phone app's entry has none
    full_name: str | None
    first_name: str | None
    timestamp: datetime | None
    phone: str | None = None
    user_id: str | None = None
    username: str | None = None


@dataclass(frozen=True, slots=True)
class UserPreference:
    """A customer stopped or resumed a category of messages (field `user_preferences`)."""

    envelope: Envelope
    wa_id: str
    category: str
    value: str  # "stop" | "resume" (marketing_messages); "signup" etc. for other categories
    detail: str | None
    timestamp: datetime | None
    user_id: str | None = None


@dataclass(frozen=True, slots=True)
class UserIdChange:
    """A customer's business-scoped user id was replaced (field `user_id_update`)."""

    envelope: Envelope
    previous_user_id: str
    current_user_id: str
    phone: str | None
    detail: str | None
    timestamp: datetime | None


@dataclass(frozen=True, slots=True)
class BusinessUsername:
    """The business number's own username changed state (field `business_username_updates`)."""

    envelope: Envelope
    display_phone_number: str | None
    username: str | None
    status: str  # approved | reserved | deleted (as Meta sends it)
    raw: dict


@dataclass(frozen=True, slots=True)
class SecurityEvent:
    """A number's two-step verification PIN was changed or a reset asked for (field `security`)."""

    envelope: Envelope
    display_phone_number: str | None
    event: str  # PIN_CHANGED | PIN_RESET_REQUEST | PIN_REQUEST_SUCCESS
    requester: str | None


@dataclass(frozen=True, slots=True)
class AutomaticEvent:
    """A purchase or lead Meta detected in a chat that began with a Click to WhatsApp ad."""

    envelope: Envelope
    wamid: str  # the message Meta detected it in
    event_name: str  # Purchase | LeadSubmitted
    timestamp: datetime | None
    ctwa_clid: str | None
    currency: str | None
    value: int | None  # purchases: the amount x 1000


@dataclass(frozen=True, slots=True)
class GroupMember:
    """A participant as a groups webhook names them (any id may be missing; `input` is what the business sent)."""

    wa_id: str | None
    user_id: str | None = None
    username: str | None = None
    input: str | None = None
    errors: list[MetaError] = field(default_factory=list)

    @property
    def key(self) -> str | None:
        return self.wa_id or self.user_id or self.input


@dataclass(frozen=True, slots=True)
class GroupEvent:
    """One `groups[]` element of group_lifecycle_update, group_participants_update, group_settings_update or
    group_status_update: `type` says which (group_create, group_participants_add, group_suspend, ...)."""

    envelope: Envelope
    group_id: str
    type: str
    timestamp: datetime | None
    subject: str | None = None
    description: str | None = None
    invite_link: str | None = None
    added: list[GroupMember] = field(default_factory=list)
    removed: list[GroupMember] = field(default_factory=list)
    failed: list[GroupMember] = field(default_factory=list)
    member: GroupMember | None = None  # a join request's requester
    initiated_by: str | None = None  # business | participant (removals)
    reason: str | None = None
    request_id: str | None = None
    join_request_id: str | None = None
    settings: dict = field(default_factory=dict)  # group_subject / group_description / profile_picture
    errors: list[MetaError] = field(default_factory=list)
    raw: dict = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class UnknownChange:
    """A change the parser does not understand (unknown field or content); kept, never dropped."""

    envelope: Envelope
    reason: str
    value: object


@dataclass(frozen=True, slots=True)
class ParseProblem:
    """A malformed part of a delivery; `where` is a JSON path such as entry[0].changes[1].value."""

    envelope: Envelope
    where: str
    error: str
    value: object


WebhookEvent = Union[  # noqa: UP007 - a runtime alias others import and isinstance-check against
    InboundMessage,
    MessageEcho,
    StatusUpdate,
    CallEvent,
    ChangeErrors,
    TemplateStatus,
    TemplateQuality,
    TemplateCategory,
    TemplateComponents,
    QualityUpdate,
    AccountUpdate,
    HistoryChunk,
    ContactSync,
    UserPreference,
    UserIdChange,
    BusinessUsername,
    SecurityEvent,
    AutomaticEvent,
    GroupEvent,
    UnknownChange,
    ParseProblem,
]

__all__ = [
    "CONTENT_KINDS",
    "MEDIA_KINDS",
    "AccountUpdate",
    "AutomaticEvent",
    "BusinessUsername",
    "CallEvent",
    "ChangeErrors",
    "ContactSync",
    "Direction",
    "Envelope",
    "GroupEvent",
    "GroupMember",
    "HistoryChunk",
    "HistoryMessage",
    "InboundMessage",
    "Media",
    "MessageContent",
    "MessageEcho",
    "MetaError",
    "ParseProblem",
    "Pricing",
    "QualityUpdate",
    "SecurityEvent",
    "StatusUpdate",
    "TemplateCategory",
    "TemplateComponents",
    "TemplateQuality",
    "TemplateStatus",
    "UnknownChange",
    "UserIdChange",
    "UserPreference",
    "WebhookEvent",
]
