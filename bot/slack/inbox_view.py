"""What a thread parent shows of the team inbox: owner, status (who resolved it, when) and the buttons.

Buttons carry only the conversation id; the listeners (bot.handlers.slack_inbox) look the conversation up
in the request's workspace, so a forged id of another workspace acts on nothing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from bot.slack import limits, saved_replies
from bot.slack.render import format_time
from bot.slack.snooze import CHOICES

TAKE_ACTION = "wabridge_inbox_take"
ASSIGN_ACTION = "wabridge_inbox_assign"
UNASSIGN_ACTION = "wabridge_inbox_unassign"
SNOOZE_ACTION = "wabridge_inbox_snooze"
SNOOZE_DATE_ACTION = "wabridge_inbox_snooze_date"
UNSNOOZE_ACTION = "wabridge_inbox_unsnooze"
LABELS_ACTION = "wabridge_inbox_labels"
MORE_BLOCK = "wabridge_inbox_more"
RESOLVE_ACTION = "wabridge_inbox_resolve"
REOPEN_ACTION = "wabridge_inbox_reopen"
ACTIONS_BLOCK = "wabridge_inbox"
CUSTOMER = "customer"


@dataclass(frozen=True)
class InboxView:
    """A conversation's inbox state as the parent shows it."""

    conversation_id: int
    owner: str | None = None
    status: str = "open"
    status_by: str | None = None
    status_at: datetime | None = None
    snoozed_until: datetime | None = None
    labels: tuple[str, ...] = ()
    choices: tuple[str, ...] = ()  # the configured labels (inbox.labels): the picker's options

    @property
    def resolved(self) -> bool:
        return self.status == "resolved"

    @property
    def snoozed(self) -> bool:
        return self.snoozed_until is not None and not self.resolved


def who(actor: str) -> str:
    """A person as Slack shows them (a mention renders as their name); the customer in words."""
    return "the customer" if actor == CUSTOMER else f"<@{actor}>"


def status_line(view: InboxView, tz: str) -> str:
    """`Owner: @Asha · Resolved by @Ravi, 6 Dec 15:04 IST`, or open and who reopened it."""
    owner = f"Owner: {who(view.owner)}" if view.owner else "Owner: nobody yet"
    when = f", {format_time(view.status_at, tz)}" if view.status_at is not None else ""
    if view.resolved:
        state = f":white_check_mark: *Resolved* by {who(view.status_by or '?')}{when}"
    elif view.status_by:
        reopened = "Reopened by the customer" if view.status_by == CUSTOMER else f"Reopened by {who(view.status_by)}"
        state = f":inbox_tray: *Open* · {reopened}{when}"
    else:
        state = ":inbox_tray: *Open*"
    if view.snoozed and view.snoozed_until is not None:
        state += f" · :zzz: Snoozed until {format_time(view.snoozed_until, tz)}"
    if view.labels:
        state += " · :label: " + ", ".join(view.labels)
    return f"{owner} · {state}"


def _button(text: str, action_id: str, value: str, style: str | None = None) -> dict[str, Any]:
    button: dict[str, Any] = {"type": "button", "action_id": action_id, "value": value,
                              "text": limits.plain(text, limits.BUTTON_TEXT)}
    if style:
        button["style"] = style
    return button


def inbox_blocks(view: InboxView, tz: str) -> list[dict[str, Any]]:
    """The parent's inbox line and its buttons: Take it, Assign…, Unassign (when owned), Resolve or Reopen, and
    Saved reply."""
    value = json.dumps({"conversation_id": view.conversation_id})
    assign: dict[str, Any] = {"type": "users_select", "action_id": ASSIGN_ACTION,
                              "placeholder": limits.plain("Assign…", limits.PLACEHOLDER)}
    if view.owner:
        assign["initial_user"] = view.owner
    status = (_button("Reopen", REOPEN_ACTION, value) if view.resolved
              else _button("Resolve", RESOLVE_ACTION, value, "primary"))
    unassign = [_button("Unassign", UNASSIGN_ACTION, value)] if view.owner else []
    # The conversation rides in the block id: a users_select has no value of its own.
    blocks = [limits.context(status_line(view, tz)),
              {"type": "actions", "block_id": f"{ACTIONS_BLOCK}:{view.conversation_id}",
               "elements": [_button("Take it", TAKE_ACTION, value), assign, *unassign, status,
                            _button("Saved reply", saved_replies.OPEN_ACTION, value)]}]
    more = [*([] if view.resolved else snooze_elements(view, value)), *label_elements(view)]
    if more:
        blocks.append({"type": "actions", "block_id": f"{MORE_BLOCK}:{view.conversation_id}", "elements": more})
    return blocks


def label_elements(view: InboxView) -> list[dict[str, Any]]:
    """Labels… (a multi-select of the configured labels, the conversation's chosen), when labels are set up."""
    if not view.choices:
        return []
    picker: dict[str, Any] = {"type": "multi_static_select", "action_id": LABELS_ACTION,
                              "placeholder": limits.plain("Labels…", limits.PLACEHOLDER),
                              "options": [limits.option(label, label) for label in view.choices]}
    chosen = [limits.option(label, label) for label in view.labels if label in view.choices]
    if chosen:
        picker["initial_options"] = chosen
    return [picker]


def snooze_elements(view: InboxView, value: str) -> list[dict[str, Any]]:
    """Snooze… (a menu), a date picker, and Unsnooze while snoozed."""
    menu = {"type": "static_select", "action_id": SNOOZE_ACTION,
            "placeholder": limits.plain("Snooze…", limits.PLACEHOLDER),
            "options": [limits.option(label, choice) for choice, label in CHOICES]}
    picker = {"type": "datepicker", "action_id": SNOOZE_DATE_ACTION,
              "placeholder": limits.plain("Snooze until a date", limits.PLACEHOLDER)}
    unsnooze = [_button("Unsnooze", UNSNOOZE_ACTION, value)] if view.snoozed else []
    return [menu, picker, *unsnooze]


def with_inbox(blocks: list[dict[str, Any]], view: InboxView | None, tz: str) -> list[dict[str, Any]]:
    """A parent's header blocks followed by the inbox's (unchanged without a view)."""
    return blocks if view is None else [*blocks, *inbox_blocks(view, tz)]
