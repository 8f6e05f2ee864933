"""`wabridge report [--since 7d] [--channel NAME] [--format text|csv|json]`: the managers' figures for scripts."""

from __future__ import annotations

import argparse
import sys

from bot.cli.base import Command, add_command, run_async, settings_from, slack_names
from bot.core.config import Settings
from bot.ops.report import Format

EXIT_USAGE = 2


def add_parsers(sub: argparse._SubParsersAction) -> None:
    report = add_command(
        sub, "report", help="first-response times, unanswered conversations, replies per responder, inbox changes",
        description="The managers' figures (as on the Home tab) for a period, times in the configured "
                    "timezone. Needs database_url; responders are named when slack.bot_token is set and Slack "
                    "answers, else their Slack ids stay.")
    report.add_argument("--since", default="7d",
                        help="a span (7d, 24h, 90m, 2w) or a date/time, in the configured timezone unless it "
                             "gives an offset (default: 7d)")
    report.add_argument("--channel", default=None, help="only this channel (default: every channel)")
    report.add_argument("--label", default=None, help="only conversations with this label (one of inbox.labels)")
    report.add_argument("--format", choices=[f.value for f in Format], default=Format.TEXT.value,
                        help="text (default), csv or json")


def cmd_report(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    if args.channel:
        settings.channel(args.channel)  # a clear config error for an unknown channel
    if args.label is not None and args.label not in settings.inbox.labels:
        known = ", ".join(settings.inbox.labels) or "none are set up (inbox.labels)"
        print(f"report: no label {args.label!r}; the labels: {known}", file=sys.stderr)
        return EXIT_USAGE
    return run_async(_report(settings, args.since, args.channel, Format(args.format), args.label))


async def _report(settings: Settings, since_text: str, channel: str | None, fmt: Format,
                  label: str | None = None) -> int:
    from bot.cli.ops import runtime
    from bot.ops.csat_figures import load_surveys, per_staff
    from bot.ops.inbox_audit import changes_in, people_in
    from bot.ops.insights_store import period_figures
    from bot.ops.report import as_dict, parse_since, render
    from bot.ops.sla import elapsed_by_channel, elapsed_for
    from storage.models import utcnow

    now = utcnow()
    try:
        since = parse_since(since_text, now, settings.timezone)
    except ValueError as exc:
        print(f"report: {exc}", file=sys.stderr)
        return EXIT_USAGE
    async with runtime(settings) as rt:
        figures = await period_figures(rt.sessions, since=since, now=now,
                                       channels=[channel] if channel else None, elapsed=elapsed_for(settings),
                                       elapsed_of=elapsed_by_channel(settings), label=label)
        changes = await changes_in(rt.sessions, since=since, now=now, channels=[channel] if channel else None,
                                   label=label)
        scores = per_staff(await load_surveys(rt.sessions, since=since, until=now,
                                              channels=[channel] if channel else None, label=label))
    names = await slack_names(settings, [*figures.replies, *sorted(people_in(changes)),
                                         *(s.staff for s in scores if s.staff)])
    sys.stdout.write(render(as_dict(figures, names, channel, settings.timezone, changes, scores, label), fmt))
    return 0


COMMANDS: dict[str, Command] = {"report": cmd_report}
