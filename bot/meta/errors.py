"""Meta (WhatsApp Cloud API) error codes: what a sender should do about each, and how to say it in Slack.

Pure logic, no I/O. The table follows Meta's "Cloud API error codes" page
(developers.facebook.com/docs/whatsapp/cloud-api/support/error-codes); codes it does not list fall back
to the HTTP status.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class SendAction(StrEnum):
    """What the sending side does after a failed send."""

    THROTTLE = "throttle"  # slow the whole number down, retry the same recipient
    RETRY_RECIPIENT_LATER = "retry_recipient_later"  # per-recipient pair limit: this one later, others now
    WINDOW_CLOSED = "window_closed"  # free-form text outside the 24-hour window: a template is needed
    FAIL_RECIPIENT = "fail_recipient"  # permanent for this recipient or this request: do not retry
    OPT_OUT = "opt_out"  # the user stopped marketing messages
    PAUSE_AND_ALERT = "pause_and_alert"  # account/token/template problem: every further send would fail
    RETRY_BACKOFF = "retry_backoff"  # transient: retry with exponential backoff


@dataclass(frozen=True)
class _Entry:
    action: SendAction
    explanation: str


_A = SendAction

# One row per code Meta documents (or that the bridge meets). The explanation is shown to Slack users,
# so it names the fix, not the internals.
_TABLE: Mapping[int, _Entry] = {
    # Authorization
    0: _Entry(_A.PAUSE_AND_ALERT, "authentication failed: generate a new access token"),
    3: _Entry(_A.PAUSE_AND_ALERT, "the app lacks a capability or permission: check the token's permissions"),
    10: _Entry(
        _A.PAUSE_AND_ALERT, "permission denied: the token lacks whatsapp_business_messaging/management"
    ),
    104: _Entry(_A.PAUSE_AND_ALERT, "no access token was sent: configure the channel's access token"),
    190: _Entry(
        _A.PAUSE_AND_ALERT, "access token invalid or expired: generate a new token and update the config"
    ),
    # Throttling
    4: _Entry(_A.THROTTLE, "the app hit its Graph API call limit: backing off"),
    80007: _Entry(_A.THROTTLE, "the WhatsApp Business Account hit its API rate limit: backing off"),
    130429: _Entry(_A.THROTTLE, "throughput limit for this number reached: slowing down and retrying"),
    131056: _Entry(
        _A.RETRY_RECIPIENT_LATER,
        "too many messages to this customer in a short time: retrying this customer shortly",
    ),
    131048: _Entry(
        _A.PAUSE_AND_ALERT,
        "spam rate limit: too many messages were blocked or reported; check quality in WhatsApp Manager",
    ),
    # Integrity
    368: _Entry(_A.PAUSE_AND_ALERT, "the account is temporarily blocked for a policy violation"),
    131031: _Entry(_A.PAUSE_AND_ALERT, "the business account is locked: check Business Support Home"),
    130497: _Entry(_A.FAIL_RECIPIENT, "the business may not message users in this customer's country"),
    # Sending
    1: _Entry(_A.RETRY_BACKOFF, "unknown Graph API error: retrying"),
    2: _Entry(_A.RETRY_BACKOFF, "WhatsApp is temporarily unavailable: retrying"),
    33: _Entry(_A.PAUSE_AND_ALERT, "the business phone number was deleted or is not accessible"),
    100: _Entry(_A.FAIL_RECIPIENT, "invalid parameter in the request"),
    130472: _Entry(_A.FAIL_RECIPIENT, "the customer is part of a Meta marketing experiment: not delivered"),
    131000: _Entry(_A.RETRY_BACKOFF, "something went wrong at WhatsApp: retrying"),
    131005: _Entry(_A.PAUSE_AND_ALERT, "access denied: the token lacks permission for this number"),
    131008: _Entry(_A.FAIL_RECIPIENT, "a required parameter is missing"),
    131009: _Entry(_A.FAIL_RECIPIENT, "a parameter value is not valid"),
    131016: _Entry(_A.RETRY_BACKOFF, "a WhatsApp service is temporarily unavailable: retrying"),
    131021: _Entry(_A.FAIL_RECIPIENT, "the recipient is the business number itself"),
    131026: _Entry(
        _A.FAIL_RECIPIENT,
        "message undeliverable: not on WhatsApp, an outdated app, or terms not accepted",
    ),
    131030: _Entry(_A.FAIL_RECIPIENT, "the recipient is not in the test number's allowed list"),
    131042: _Entry(_A.PAUSE_AND_ALERT, "payment problem: add a payment method in WhatsApp Manager"),
    131045: _Entry(_A.PAUSE_AND_ALERT, "the number's registration is incomplete (certificate error)"),
    131047: _Entry(_A.WINDOW_CLOSED, "outside the 24-hour window: send a template"),
    131049: _Entry(
        _A.FAIL_RECIPIENT,
        "not delivered to keep ecosystem engagement healthy (per-user marketing limit): try much later",
    ),
    131050: _Entry(_A.OPT_OUT, "the customer stopped marketing messages from this business"),
    131051: _Entry(_A.FAIL_RECIPIENT, "unsupported message type"),
    131052: _Entry(_A.FAIL_RECIPIENT, "the customer's media could not be downloaded"),
    131053: _Entry(_A.FAIL_RECIPIENT, "the media could not be uploaded: check its type and size"),
    131062: _Entry(_A.FAIL_RECIPIENT, "this message needs the customer's phone number, and only their WhatsApp user id "
                                      "is known (authentication templates cannot go to a user id)"),
    131057: _Entry(_A.RETRY_BACKOFF, "the business account is in maintenance mode: retrying later"),
    133010: _Entry(_A.PAUSE_AND_ALERT, "the phone number is not registered on the Cloud API"),
    # Templates
    132000: _Entry(_A.FAIL_RECIPIENT, "template variable count does not match the template"),
    132001: _Entry(
        _A.PAUSE_AND_ALERT,
        "template missing in this language or not approved: sync templates and check the name",
    ),
    132005: _Entry(_A.FAIL_RECIPIENT, "template text too long once the variables are filled in"),
    132007: _Entry(_A.FAIL_RECIPIENT, "template variable content breaks a WhatsApp policy"),
    132008: _Entry(_A.FAIL_RECIPIENT, "a template variable has the wrong type"),
    132012: _Entry(_A.FAIL_RECIPIENT, "template variables are in the wrong format"),
    132015: _Entry(_A.PAUSE_AND_ALERT, "template paused by Meta for low quality: pick another template"),
    132016: _Entry(_A.PAUSE_AND_ALERT, "template disabled by Meta for low quality: pick another template"),
    135000: _Entry(_A.FAIL_RECIPIENT, "generic user error in the request parameters"),
}

# Graph API permission codes 200-299 share one meaning.
_PERMISSION_RANGE = range(200, 300)
_PERMISSION_ENTRY = _Entry(_A.PAUSE_AND_ALERT, "API permission missing: check the token's permissions")

# code 100 with subcode 33: "object does not exist or cannot be loaded due to missing permissions";
# every send with this token would fail the same way, so it is an account problem, not a recipient one.
_SUBCODE_OVERRIDES: Mapping[tuple[int, int], _Entry] = {
    (100, 33): _Entry(
        _A.PAUSE_AND_ALERT,
        "the phone number or account ID is wrong or the token cannot access it",
    ),
}


def _entry(code: int | None, subcode: int | None = None) -> _Entry | None:
    if code is None:
        return None
    if subcode is not None and (code, subcode) in _SUBCODE_OVERRIDES:
        return _SUBCODE_OVERRIDES[(code, subcode)]
    if code in _TABLE:
        return _TABLE[code]
    if code in _PERMISSION_RANGE:
        return _PERMISSION_ENTRY
    return None


def classify(code: int | None, http_status: int | None = None, subcode: int | None = None) -> SendAction:
    """Decide what a sender does about a failed send, from Meta's error code, else from the HTTP status.

    `code` None with `http_status` None means no answer at all (network error, timeout).
    """
    entry = _entry(code, subcode)
    if entry is not None:
        return entry.action
    if http_status is None or http_status >= 500 or http_status in (408, 425):
        return SendAction.RETRY_BACKOFF
    if http_status == 429:
        return SendAction.THROTTLE
    if http_status in (401, 403):
        return SendAction.PAUSE_AND_ALERT
    if 400 <= http_status < 500:
        # An unknown code on a 4xx is a problem with this request; retrying it would repeat it.
        return SendAction.FAIL_RECIPIENT
    return SendAction.RETRY_BACKOFF


def explain(code: int | None, subcode: int | None = None) -> str:
    """Short human text for Slack describing a Meta error code and its fix."""
    entry = _entry(code, subcode)
    if entry is not None:
        return entry.explanation
    if code is None:
        return "no answer from Meta (network error or timeout): retrying"
    return f"WhatsApp error {code}"


_RETRIED = frozenset({SendAction.RETRY_BACKOFF, SendAction.THROTTLE, SendAction.RETRY_RECIPIENT_LATER})


def explain_reported(code: int | None, *, resend_hint: bool = True) -> str:
    """What an error Meta *reports* (a webhook) means. Nothing retries a reported error, so the sender's
    "retrying" is replaced by what happened (and, with `resend_hint`, what a person can do)."""
    entry = _entry(code)
    if entry is None:
        return "no reason given" if code is None else f"WhatsApp error {code}"
    if entry.action in _RETRIED:
        what = entry.explanation.split(":")[0]
        return what + "; it is not retried: send it again if it still matters" if resend_hint else what
    return entry.explanation


def known_codes() -> frozenset[int]:
    """Every code with its own row in the table (for documentation and tests)."""
    return frozenset(_TABLE)


_MESSAGE_PREFIX = re.compile(r"^\(#\d+\)\s*")


@dataclass(eq=False)
class GraphError(Exception):
    """A failed Graph API call: Meta's error body parsed, or a network failure (code None)."""

    http_status: int | None
    code: int | None
    subcode: int | None = None
    title: str | None = None
    message: str = ""
    details: str | None = None
    fbtrace_id: str | None = None
    retry_after: float | None = None
    error_type: str | None = None
    user_message: str | None = None
    raw: dict[str, Any] | None = field(default=None, repr=False)
    # The request was written and no answer came: Meta may have accepted it, so it must not be sent again.
    maybe_delivered: bool = False

    def __post_init__(self) -> None:
        super().__init__(str(self))

    def __str__(self) -> str:
        where = f"HTTP {self.http_status}" if self.http_status is not None else "no response"
        code = f"#{self.code}" if self.code is not None else "no code"
        text = self.details or self.message or self.title or ""
        return f"Graph API error ({where}, {code}): {text}".rstrip(": ")

    @property
    def action(self) -> SendAction:
        """What a sender should do about this error."""
        return classify(self.code, self.http_status, self.subcode)

    @property
    def explanation(self) -> str:
        """Human text for Slack."""
        if self.code is None and self.http_status is not None:
            return f"Meta answered HTTP {self.http_status} without an error code"
        return explain(self.code, self.subcode)


def _as_int(value: Any) -> int | None:
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (only the delta-seconds form is used by Meta and Slack)."""
    if value is None:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None
    return seconds if seconds >= 0 else None


def parse_error_body(http_status: int | None, body: Any, retry_after: str | None = None) -> GraphError:
    """Build a GraphError from Meta's JSON error body (any shape tolerated)."""
    error = body.get("error") if isinstance(body, dict) else None
    retry = parse_retry_after(retry_after)
    if not isinstance(error, dict):
        text = body if isinstance(body, str) else ""
        return GraphError(http_status, None, message=text[:500], retry_after=retry)
    message = str(error.get("message") or "")
    data = error.get("error_data")
    details = data.get("details") if isinstance(data, dict) else (data if isinstance(data, str) else None)
    title = error.get("error_user_title") or _MESSAGE_PREFIX.sub("", message) or None
    return GraphError(
        http_status=http_status,
        code=_as_int(error.get("code")),
        subcode=_as_int(error.get("error_subcode")),
        title=title,
        message=message,
        details=details,
        fbtrace_id=error.get("fbtrace_id"),
        retry_after=retry,
        error_type=error.get("type"),
        user_message=error.get("error_user_msg"),
        raw=error,
    )
