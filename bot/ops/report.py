"""`wabridge report` output: the managers' figures as text, CSV or JSON (pure)."""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo

from bot.core.readable import day_time
from bot.ops.csat_figures import StaffScore
from bot.ops.inbox_audit import AuditEntry
from bot.ops.insights import PHONE_APP, Figures, humanize
from bot.slack.display_names import unisolated
from storage.inbox import CUSTOMER

_SPAN = re.compile(r"^(?P<n>\d+)\s*(?P<unit>[mhdw])$")
_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


class Format(StrEnum):
    TEXT = "text"
    CSV = "csv"
    JSON = "json"


def parse_since(value: str, now: datetime, tz: str = "UTC") -> datetime:
    """`7d`, `24h`, `90m`, `2w`, or an ISO date/time (in `tz` unless it says otherwise); ValueError otherwise."""
    text = value.strip().lower()
    m = _SPAN.match(text)
    if m:
        n = int(m.group("n"))
        if n <= 0:
            raise ValueError(f"--since {value!r}: the span must be positive")
        return now - timedelta(**{_UNITS[m.group("unit")]: n})
    try:
        at = datetime.fromisoformat(value.strip())
    except ValueError:
        raise ValueError(f"--since {value!r}: give a span such as 7d, 24h, 90m, 2w or a date such as "
                         "2026-11-01") from None
    if at.tzinfo is None:
        at = at.replace(tzinfo=ZoneInfo(tz))
    if at >= now:
        raise ValueError(f"--since {value!r} is not in the past")
    return at


def _minutes(span: timedelta | None) -> float | None:
    return None if span is None else round(span.total_seconds() / 60, 1)


def _name(responder: str, names: Mapping[str, str]) -> str:
    return responder if responder == PHONE_APP else names.get(responder, responder)


def as_dict(f: Figures, names: Mapping[str, str], channel: str | None = None, tz: str = "UTC",
            changes: Sequence[AuditEntry] = (), satisfaction: Sequence[StaffScore] = (),
            label: str | None = None) -> dict[str, Any]:
    """The report as plain data (what JSON shows; text and CSV are drawn from it); times in `tz`; `changes` are
    the inbox's audit rows of the period, `satisfaction` the surveys per staff member.

    Names come without the isolates Slack needs: a leading FSI would hide a formula from `_safe`.
    """
    zone = ZoneInfo(tz)

    def at(when: datetime) -> str:
        return when.astimezone(zone).isoformat(timespec="seconds")

    return {
        "since": at(f.since), "until": at(f.now), "timezone": tz, "channel": channel, "label": label,
        "first_response": {"answered": len(f.first_responses), "p50_minutes": _minutes(f.p50),
                           "p90_minutes": _minutes(f.p90)},
        "unanswered": [{"channel": w.channel, "customer": unisolated(w.customer), "waiting_since": at(w.since),
                        "waiting_minutes": _minutes(w.waited),
                        "window_closes_at": at(w.window_closes_at),
                        "window_closing_soon": w in f.closing} for w in f.waiting],
        "replies": [{"responder": _name(r, names), "id": None if r == PHONE_APP else r, "replies": n}
                    for r, n in f.replies.items()],
        "inbox_changes": [{"at": at(c.at), "channel": c.channel, "customer": unisolated(c.customer),
                           "action": c.action, "by": _person(c.actor, names), "by_id": _id(c.actor),
                           "assignee": _person(c.assignee, names) if c.assignee else None,
                           "assignee_id": _id(c.assignee) if c.assignee else None, "detail": c.detail}
                          for c in changes],
        "satisfaction": [{**s.as_dict(), "staff": names.get(s.staff, s.staff) if s.staff else "nobody",
                          "id": s.staff or None} for s in satisfaction],
    }


def _person(user: str, names: Mapping[str, str]) -> str:
    return "the customer" if user == CUSTOMER else names.get(user, user)


def _id(user: str) -> str | None:
    return None if user == CUSTOMER else user


def _readable(iso: str, tz: str) -> str:
    """`29 Nov 2026 17:56 IST` from the ISO time as_dict wrote."""
    return day_time(datetime.fromisoformat(iso), tz)


def render_text(data: Mapping[str, Any]) -> str:
    fr = data["first_response"]
    scope = f" in {data['channel']}" if data["channel"] else ""
    if data.get("label"):
        scope += f" (conversations labelled {data['label']})"
    tz = data["timezone"]
    lines = [f"Report{scope} from {_readable(data['since'], tz)} to {_readable(data['until'], tz)}", ""]
    if fr["answered"]:
        lines.append(f"First response: p50 {_span(fr['p50_minutes'])}, p90 {_span(fr['p90_minutes'])} "
                     f"({fr['answered']} answered)")
    else:
        lines.append("First response: nothing answered in this period")
    lines += ["", f"Unanswered: {len(data['unanswered'])}"]
    for w in data["unanswered"]:
        closing = ", window closes soon" if w["window_closing_soon"] else ""
        lines.append(f"  {w['channel']}: {w['customer']}, waiting {_span(w['waiting_minutes'])} (since "
                     f"{_readable(w['waiting_since'], tz)}){closing}")
    lines += ["", "Replies per responder:"]
    lines += [f"  {r['responder']}: {r['replies']}" for r in data["replies"]] or ["  none"]
    changes = data.get("inbox_changes") or []
    lines += ["", f"Inbox changes: {len(changes)}"]
    lines += [f"  {_readable(c['at'], tz)} {c['channel']}: {c['customer']}: {_change_text(c)}" for c in changes]
    lines += ["", "Satisfaction surveys (credited to the owner when resolved):"]
    lines += [f"  {c['staff']}: {c['answered']} of {c['sent']} answered" + (
        f", average {c['average']:.2f} of 3, {c['best_share']:.0%} best" if c["answered"] else "")
        for c in data.get("satisfaction", [])] or ["  none sent"]
    return "\n".join(lines) + "\n"


def _change_text(change: Mapping[str, Any]) -> str:
    """`Asha Verma assigned it to Ravi`, `reopened by the customer`."""
    by, action, assignee = change["by"], change["action"], change["assignee"] or "?"
    detail = change.get("detail") or "?"
    return {"take": f"{by} took it", "assign": f"{by} assigned it to {assignee}",
            "unassign": f"{by} unassigned {assignee}", "resolve": f"{by} resolved it",
            "reopen": f"reopened by {by}", "snooze": f"{by} snoozed it until {detail}",
            "wake": "back from snooze", "label": f"{by} changed the labels: {detail}",
            }.get(action, f"{action} by {by}")


def _span(minutes: float) -> str:
    return humanize(timedelta(minutes=minutes))


CSV_COLUMNS = ("section", "channel", "name", "minutes", "count", "since", "window_closes_at", "action", "by",
               "assignee")


def render_csv(data: Mapping[str, Any]) -> str:
    """One table for spreadsheets; the `section` column says which figure a row is."""
    out = io.StringIO()
    w = csv.writer(out)
    w.writerow(CSV_COLUMNS)
    fr = data["first_response"]
    scope = data["channel"] or ""
    w.writerow(["first_response", scope, "p50", _cell(fr["p50_minutes"]), fr["answered"], data["since"], ""])
    w.writerow(["first_response", scope, "p90", _cell(fr["p90_minutes"]), fr["answered"], data["since"], ""])
    for u in data["unanswered"]:
        w.writerow(["unanswered", u["channel"], _safe(u["customer"]), u["waiting_minutes"], "", u["waiting_since"],
                    u["window_closes_at"]])
    for r in data["replies"]:
        w.writerow(["replies", scope, _safe(r["responder"]), "", r["replies"], data["since"], ""])
    # An inbox change: `since` is when it was made, `name` the customer.
    for c in data.get("inbox_changes") or []:
        w.writerow(["inbox", c["channel"], _safe(c["customer"]), "", "", c["at"], "", c["action"], _safe(c["by"]),
                    _safe(c["assignee"] or "")])
    for c in data.get("satisfaction", []):  # minutes: the average score (1-3); count: answered
        w.writerow(["satisfaction", scope, _safe(c["staff"]), _cell(c["average"]), c["answered"], data["since"],
                    ""])
    return out.getvalue()


def _cell(value: float | None) -> str:
    return "" if value is None else str(value)


def _safe(text: str) -> str:
    # Customer and profile names are untrusted: a leading =, +, - or @ would run as a spreadsheet formula.
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def render(data: Mapping[str, Any], fmt: Format) -> str:
    if fmt is Format.JSON:
        return json.dumps(data, indent=2, ensure_ascii=False) + "\n"
    if fmt is Format.CSV:
        return render_csv(data)
    return render_text(data)
