"""The `/campaign` command's pure parts: argument parsing, the create modal, its validation, summaries.

Nothing here does I/O; `bot.handlers.slack_campaign` wires it to Slack and the database.

The modal's blocks, its validation and its summaries name the same block
ids and must change together.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from typing import Any

from bot.core.config import ChannelSettings, Settings
from bot.slack import limits, template_choice
from bot.slack.payloads import as_id
from scheduler.campaigns import estimate
from scheduler.campaigns.schedule import Schedule, ScheduleError, describe, monthly, parse_at, weekly, zone
from scheduler.campaigns.variables import (
    MappingError,
    body_placeholders,
    check_mapping,
    describe_mapping,
    parse_mapping,
)

CREATE_CALLBACK = "wabridge_campaign_create"
CONFIRM_CALLBACK = "wabridge_campaign_confirm"
ACTION = "value"  # every input's action_id; blocks are told apart by block_id
TEMPLATE_ACTION = "wabridge_campaign_template"  # its own action id: Slack asks for its options by it
NAME_MAX = 200  # characters in a campaign name (shown whole in the progress message)
BAD_ROWS_SHOWN = 10
AUDIENCE_TYPES = ("csv", "txt")
CONTROL = ("pause", "resume", "cancel")
USAGE = ("*/campaign* opens the form to create a campaign.\n"
         "*/campaign list* shows recent campaigns; */campaign show ID* shows one.\n"
         "*/campaign pause ID*, */campaign resume ID*, */campaign cancel ID* control one.\n"
         "*/campaign templates*, *doctor*, *spend [YYYY-MM]*, *export @contact-or-number* help run the bridge.\n"
         "*/campaign connect [#channel] [name]* gives a one-time link to connect a WhatsApp Business app number; "
         "*/campaign history @number* posts its imported chat history into the thread.\n"
         "Everything but list and show is for campaign managers.")
REFUSAL = ("Only campaign managers can create or control campaigns. Ask an admin to add you to "
           "`slack.campaign_managers` in app.yaml.")
WHEN_CHOICES = (("now", "Now"), ("at", "Once, at a date and time"), ("weekly", "Every week"),
                ("monthly", "Every month"))
DAY_NAMES = (("mon", "Monday"), ("tue", "Tuesday"), ("wed", "Wednesday"), ("thu", "Thursday"),
             ("fri", "Friday"), ("sat", "Saturday"), ("sun", "Sunday"))


# ---- /campaign arguments ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Command:
    """What `/campaign …` asked for: create, list, show, pause, resume, cancel, or help (with why)."""

    action: str
    campaign_id: int | None = None
    problem: str | None = None


def parse_command(text: str) -> Command:
    """Parse the text after `/campaign` (the operations sub-commands are told apart before this)."""
    words = text.strip().split()
    if not words:
        return Command("create")
    verb = words[0].lower()
    if verb in ("help", "?"):
        return Command("help")
    if verb == "list" and len(words) == 1:
        return Command("list")
    if verb in ("show", *CONTROL):
        number = as_id(words[1]) if len(words) == 2 else None
        if number is None:
            return Command("help", problem=f"`/campaign {verb}` needs a campaign number, e.g. `/campaign {verb} 12`")
        return Command(verb, number)
    return Command("help", problem=f"I don't know `/campaign {escape(text.strip())}`.")


def escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def is_manager(user_id: str, managers: Iterable[str], user_groups: Iterable[str] = ()) -> bool:
    """True when the user, or one of the user groups they belong to, is a campaign manager."""
    allowed = set(managers)
    return user_id in allowed or bool(allowed & set(user_groups))


# ---- the create modal ------------------------------------------------------------------------------


@dataclass(frozen=True)
class TemplateChoice:
    """An approved template of one WABA, as offered in the modal."""

    waba_id: str
    name: str
    language: str
    category: str | None
    components: list[Any] = field(default_factory=list)
    id: int | None = None

    @property
    def value(self) -> str:
        """The option value: the stored template's id (short whatever the name), else waba|name|language."""
        return str(self.id) if self.id is not None else f"{self.waba_id}|{self.name}|{self.language}"

    def choosable(self) -> template_choice.Choosable:
        return template_choice.Choosable(self.id or 0, self.waba_id, self.name, self.language, self.category)


def _text(t: str) -> dict[str, Any]:
    return limits.plain(t, limits.PLACEHOLDER)


def _option(label: str, value: str) -> dict[str, Any]:
    return limits.option(label, value)


def _input(block_id: str, label: str, element: dict[str, Any], *, optional: bool = False,
           hint: str | None = None) -> dict[str, Any]:
    block: dict[str, Any] = {"type": "input", "block_id": block_id, "label": _text(label),
                             "element": {"action_id": ACTION, **element}, "optional": optional}
    if hint:
        block["hint"] = _text(hint)
    return block


def create_modal(settings: Settings, templates: Sequence[TemplateChoice], *, channel: ChannelSettings | None,
                 origin: str) -> dict[str, Any]:
    """The modal `/campaign` opens; origin (the Slack channel it was typed in) rides in private_metadata."""
    channel_options = [_option(c.name + (f" ({c.display_phone_number})" if c.display_phone_number else ""), c.name)
                       for c in settings.channels]
    channel_select: dict[str, Any] = {"type": "static_select", "placeholder": _text("WhatsApp number"),
                                      "options": channel_options}
    if channel is not None:
        channel_select["initial_option"] = next(o for o in channel_options if o["value"] == channel.name)
    blocks: list[dict[str, Any]] = [
        _input("name", "Campaign name", {"type": "plain_text_input", "placeholder": _text("e.g. Fee reminder"),
                                         "max_length": NAME_MAX}, optional=True),
        _input("channel", "Send from", channel_select),
    ]
    if templates:
        blocks.append(_input("template", "Approved template", {
            "type": "external_select", "action_id": TEMPLATE_ACTION, "min_query_length": 0,
            "placeholder": _text("Type to search templates")},
            hint="Templates of the chosen number's WhatsApp Business Account, as last synced."))
    else:
        blocks.append(_input("template", "Template", {
            "type": "plain_text_input", "placeholder": _text("name:language, e.g. fee_reminder:en")},
            hint="No synced templates yet (run `templates sync`): type the approved template's name and language."))
    blocks += [
        _input("audience", "Audience (CSV)", {"type": "file_input", "filetypes": list(AUDIENCE_TYPES),
                                              "max_files": 1},
               hint="A phone column plus any columns for the template's variables. Bad rows are reported."),
        _input("variables", "Variables", {"type": "plain_text_input", "multiline": True,
                                          "placeholder": _text("1=name\n2=text:Monday")},
               optional=True, hint="One per line: {{1}} from a CSV column (1=column) or fixed text (1=text:…)."),
        _input("when", "When", {"type": "radio_buttons", "options": [_option(label, v) for v, label in WHEN_CHOICES],
                                "initial_option": _option(WHEN_CHOICES[0][1], WHEN_CHOICES[0][0])}),
        _input("date", "Date (once)", {"type": "datepicker"}, optional=True),
        _input("time", "Time (once, weekly, monthly)", {"type": "timepicker"}, optional=True),
        _input("days", "Days (weekly)", {"type": "checkboxes",
                                         "options": [_option(label, v) for v, label in DAY_NAMES]}, optional=True),
        _input("monthday", "Day of the month (monthly)", {
            "type": "static_select", "placeholder": _text("Day"),
            "options": [_option(str(d), str(d)) for d in range(1, 32)] + [_option("Last day", "last")]},
            optional=True, hint="Days 29-31 are skipped in shorter months; pick 'Last day' for month ends."),
        _input("timezone", "Timezone", {"type": "plain_text_input", "initial_value": settings.timezone}),
    ]
    return limits.fit_view({"type": "modal", "callback_id": CREATE_CALLBACK, "title": _text("New campaign"),
                            "submit": _text("Next"), "close": _text("Cancel"), "blocks": blocks,
                            "private_metadata": json.dumps({"origin": origin})})


def template_suggestions(settings: Settings, templates: Sequence[TemplateChoice], query: str,
                         channel_name: str | None) -> dict[str, Any]:
    """The template options for what a manager typed: the chosen number's templates, or every WABA's
    (each WABA gets its fair share of Slack's 100 options, labelled with its numbers)."""
    channel = next((c for c in settings.channels if c.name == channel_name), None)
    pool = [t.choosable() for t in templates if t.id is not None
            and (channel is None or t.waba_id == channel.waba_id)]

    def names(waba: str) -> str:
        return ", ".join(c.name for c in settings.channels if c.waba_id == waba) or waba

    return template_choice.suggestions(pool, query, None if channel is not None else names)


# ---- validating a submission -----------------------------------------------------------------------


@dataclass
class Form:
    """A valid create form."""

    name: str
    channel: ChannelSettings
    template: str
    language: str
    category: str | None
    variables: dict[str, Any]
    schedule: Schedule
    file_id: str
    file_name: str


def _value(values: Mapping[str, Any], block: str) -> Any:
    # One element per block; read it whatever its action id.
    actions = values.get(block) or {}
    return actions.get(ACTION) or next(iter(actions.values()), None) or {}


def selected_channel(view: Mapping[str, Any]) -> str | None:
    """The number picked so far in an open create modal (Slack sends the view's state with suggestions)."""
    values = (view.get("state") or {}).get("values") or {}
    return (_value(values, "channel").get("selected_option") or {}).get("value")


def parse_submission(values: Mapping[str, Any], settings: Settings, templates: Sequence[TemplateChoice],
                     now: datetime | None = None) -> Form | dict[str, str]:
    """A Form, or inline errors keyed by block id (Slack's `response_action: errors`)."""
    now = now or datetime.now(UTC)
    errors: dict[str, str] = {}
    name = (_value(values, "name").get("value") or "").strip()
    if len(name) > NAME_MAX:
        errors["name"] = f"At most {NAME_MAX} characters."

    channel_name = (_value(values, "channel").get("selected_option") or {}).get("value")
    channel = next((c for c in settings.channels if c.name == channel_name), None)
    if channel is None:
        errors["channel"] = "Pick the number to send from."

    template: TemplateChoice | None = None
    tvalue = _value(values, "template")
    chosen = (tvalue.get("selected_option") or {}).get("value")
    typed = (tvalue.get("value") or "").strip()
    if chosen:
        # A form opened before the values became ids still carries waba|name|language.
        template = next((t for t in templates if chosen in (t.value, f"{t.waba_id}|{t.name}|{t.language}")), None)
        if template is None:
            errors["template"] = "That template is no longer approved; pick another."
    elif typed:
        tname, _, lang = typed.partition(":")
        if not re.fullmatch(r"[a-z0-9_]+", tname.strip()) or not lang.strip():
            errors["template"] = "Write the template as name:language, e.g. fee_reminder:en."
        else:
            template = TemplateChoice(channel.waba_id if channel else "", tname.strip(), lang.strip(), None)
    else:
        errors["template"] = "Pick a template."
    if template is not None and channel is not None and typed == "" and template.waba_id != channel.waba_id:
        errors["template"] = (f"This template belongs to another WhatsApp Business Account; "
                              f"pick one of {channel.name}'s.")

    variables: dict[str, Any] = {}
    try:
        variables = parse_mapping((_value(values, "variables").get("value") or "").splitlines())
    except MappingError as exc:
        errors["variables"] = str(exc)
    if template is not None and "variables" not in errors and chosen:
        problem = check_mapping(variables, body_placeholders(template.components))
        if problem:
            errors["variables"] = problem[0].upper() + problem[1:] + "."

    files = _value(values, "audience").get("files") or []
    file_id, file_name = "", ""
    if not files:
        errors["audience"] = "Upload the audience as a CSV file."
    else:
        file_id, file_name = str(files[0].get("id") or ""), str(files[0].get("name") or "")
        if file_name.rsplit(".", 1)[-1].lower() not in AUDIENCE_TYPES:
            errors["audience"] = "The audience must be a .csv file (a phone column plus any others)."

    tz = (_value(values, "timezone").get("value") or settings.timezone).strip()
    try:
        zone(tz)
    except ScheduleError as exc:
        errors["timezone"] = str(exc)
        tz = ""
    schedule = _schedule(values, tz, now, errors) if tz else None

    if errors or channel is None or template is None or schedule is None:
        return errors or {"when": "Pick when to send."}
    return Form(name=name, channel=channel, template=template.name, language=template.language,
                category=template.category, variables=variables, schedule=schedule, file_id=file_id,
                file_name=file_name)


def _schedule(values: Mapping[str, Any], tz: str, now: datetime, errors: dict[str, str]) -> Schedule | None:
    when = (_value(values, "when").get("selected_option") or {}).get("value") or "now"
    at_time = _value(values, "time").get("selected_time")
    clock: time | None = None
    if at_time:
        clock = time.fromisoformat(at_time)
    try:
        if when == "now":
            return Schedule("now", tz, run_at=now)
        if when == "at":
            day = _value(values, "date").get("selected_date")
            if not day:
                errors["date"] = "Pick the date to send on."
            if clock is None:
                errors["time"] = "Pick the time to send at."
            if not day or clock is None:
                return None
            run_at = parse_at(f"{date.fromisoformat(day).isoformat()}T{clock.isoformat()}", tz)
            if run_at < now:
                errors["date"] = "That date and time has passed."
                return None
            return Schedule("at", tz, run_at=run_at)
        if clock is None:
            errors["time"] = "Pick the time of day to send at."
        if when == "weekly":
            days = [o["value"] for o in _value(values, "days").get("selected_options") or []]
            if not days:
                errors["days"] = "Pick at least one day of the week."
            if not days or clock is None:
                return None
            return Schedule("cron", tz, cron=weekly(days, clock))
        if when == "monthly":
            day_of_month = (_value(values, "monthday").get("selected_option") or {}).get("value")
            if not day_of_month:
                errors["monthday"] = "Pick the day of the month."
            if not day_of_month or clock is None:
                return None
            return Schedule("cron", tz, cron=monthly(day_of_month, clock))
    except ScheduleError as exc:
        errors["when"] = str(exc)
        return None
    errors["when"] = "Pick when to send."
    return None


# ---- the views around it ---------------------------------------------------------------------------


def _section(text: str) -> dict[str, Any]:
    return limits.section(text)


def preparing_view(form: Form, origin: str) -> dict[str, Any]:
    """Shown while the audience is downloaded and imported."""
    return limits.fit_view({"type": "modal", "callback_id": CONFIRM_CALLBACK, "title": _text("New campaign"),
                            "close": _text("Cancel"), "notify_on_close": True,
                            "private_metadata": json.dumps({"origin": origin}),
                            "blocks": [_section(f":hourglass_flowing_sand: Importing "
                                                f"*{escape(limits.clip(form.file_name, 200))}*…")]})


@dataclass(frozen=True)
class Summary:
    """What the confirmation shows."""

    campaign_id: int
    form: Form
    rows: int
    recipients: int
    opted_out: int
    duplicates: int
    bad_rows: list[tuple[int, str]]
    bad_count: int
    duration_s: float
    cost: estimate.Cost
    warnings: list[str]


def confirm_view(s: Summary, origin: str) -> dict[str, Any]:
    """The last step: recipients, opted-out skipped, duration and cost, then Schedule."""
    f = s.form
    marketing = f.category is None or f.category.upper() == "MARKETING"
    lines = [
        f"*{escape(f.name or f.template)}*: template *{escape(f.template)}* ({escape(f.language)}) "
        f"from *{escape(f.channel.name)}*",
        f"*When:* {describe(f.schedule)}",
        f"*Variables:* {escape(describe_mapping(f.variables))}",
        f"*Recipients:* {s.recipients:,} from {s.rows:,} rows"
        + (f" ({s.duplicates:,} duplicates dropped)" if s.duplicates else ""),
        f"*Opted out, skipped:* {s.opted_out:,}" + ("" if marketing else " (not marketing: none skipped)"),
        f"*Estimated duration:* {estimate.format_duration(s.duration_s)} at {f.channel.mps} messages/s",
        f"*Estimated cost:* {s.cost.text()}",
    ]
    blocks = [_section("\n".join(lines))]
    if s.bad_count:
        blocks.append(_section(bad_rows_text(s.bad_rows, s.bad_count)))
    for w in s.warnings:
        blocks.append(limits.context(f":information_source: {escape(w)}"))
    return limits.fit_view({"type": "modal", "callback_id": CONFIRM_CALLBACK, "title": _text("Confirm campaign"),
                            "submit": _text("Schedule"), "close": _text("Cancel"), "notify_on_close": True,
                            "private_metadata": json.dumps({"origin": origin, "campaign_id": s.campaign_id}),
                            "blocks": blocks})


def bad_rows_text(bad_rows: Sequence[tuple[int, str]], bad_count: int) -> str:
    """The skipped rows: the first ten, each shortened to a line, and always how many more there are."""
    shown = bad_rows[:BAD_ROWS_SHOWN]
    head = f":warning: *{bad_count:,} rows skipped:*"
    more = f"… and {bad_count - len(shown):,} more" if bad_count > len(shown) else ""
    room = (limits.SECTION_TEXT - len(head) - len(more) - 2) // max(len(shown), 1) - 1
    lines = [limits.clip(f"line {line}: {escape(reason)}", room) for line, reason in shown]
    return "\n".join([head, *lines, *([more] if more else [])])


def problem_view(message: str) -> dict[str, Any]:
    """The audience could not be used: say why (the form has to be started again)."""
    tail = "\n\nFix the file and run `/campaign` again."
    said = limits.clip(f":x: {escape(message)}", limits.SECTION_TEXT - len(tail))
    return limits.fit_view({"type": "modal", "callback_id": CONFIRM_CALLBACK, "title": _text("New campaign"),
                            "close": _text("Close"), "blocks": [_section(said + tail)]})


def campaign_lines(rows: Sequence[Any], tz: str) -> str:
    """`/campaign list` as text."""
    if not rows:
        return "No campaigns yet. `/campaign` creates one."
    out = []
    for c in rows:
        nxt = f", next {c.next_fire.astimezone(zone(tz)):%d %b %H:%M}" if c.next_fire else ""
        last = ""
        if c.runs:
            counts = c.runs[0].counts
            done = sum(v for k, v in counts.items() if k not in ("pending", "sending"))
            last = f", last run {done:,}/{sum(counts.values()):,}"
        out.append(f"*#{c.id}* {escape(c.name)} ({escape(c.template)} from {escape(c.channel)}): *{c.status}*, "
                   f"{c.audience:,} recipients, {escape(c.schedule)}{nxt}{last}")
    return "\n".join(out)


def campaign_detail(c: Any, tz: str) -> str:
    """`/campaign show ID` as text."""
    # The pause reason is the bridge's own words (or an operator's), and may mention who paused: not escaped.
    lines = [f"*#{c.id} {escape(c.name)}*: *{c.status}*" + (f" ({c.pause_reason})" if c.pause_reason else ""),
             f"Template {escape(c.template)} ({escape(c.language)}) from {escape(c.channel)} to {c.audience:,}",
             f"Schedule: {escape(c.schedule)}"
             + (f"; next {c.next_fire.astimezone(zone(tz)):%d %b %Y %H:%M}" if c.next_fire else "")]
    for r in c.runs:
        counts = ", ".join(f"{k} {v:,}" for k, v in sorted(r.counts.items())) or "no recipients"
        lines.append(f"• run for {r.scheduled_for.astimezone(zone(tz)):%d %b %Y %H:%M}: {r.status}; {counts}")
    return "\n".join(lines)
