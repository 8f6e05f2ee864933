"""`wabridge campaign create|list|show|pause|resume|cancel|resend-unknown`: campaigns from a terminal.

A campaign created here is a row in the database; a running `serve` picks it up within a second (its
scheduler re-reads the campaigns table every second), so no restart is needed.
"""

from __future__ import annotations

import argparse
import sys
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from bot.cli.base import Command, add_command, add_group, run_async, settings_from
from bot.core.config import Settings
from bot.core.readable import day_time

EXIT_FAILED = 1
MAX_BAD_ROWS_SHOWN = 20


def add_parsers(sub: argparse._SubParsersAction) -> None:
    _, csub = add_group(sub, "campaign", help="create, list and control template campaigns",
                        description="Create, list and control template campaigns. A running `serve` picks up "
                                    "changes within a second. Needs database_url only.")
    create = add_command(csub, "create", help="create a campaign from a CSV audience")
    create.add_argument("--channel", required=True, help="channel (WhatsApp number) name from app.yaml")
    create.add_argument("--template", required=True, help="approved template name")
    create.add_argument("--language", required=True, help="template language code, e.g. en or en_US")
    create.add_argument("--audience", required=True, help="CSV file: a phone column plus any others")
    when = create.add_mutually_exclusive_group()
    when.add_argument("--at", default=None, help="send once at this ISO-8601 time (default: now)")
    when.add_argument("--cron", default=None, help='repeat on a crontab schedule, e.g. "0 9 * * 1"')
    create.add_argument("--timezone", default=None, help="for --at without offset and --cron (default: "
                                                         "the configured timezone)")
    create.add_argument("--var", action="append", default=[], metavar="N=COLUMN",
                        help="template variable {{N}} from a CSV column (N=column) or fixed text (N=text:…)")
    create.add_argument("--name", default="", help="campaign name (default: template and date)")
    create.add_argument("--category", default=None, choices=["marketing", "utility", "authentication"],
                        help="template category when the template has not been synced")
    listing = add_command(csub, "list", help="recent campaigns, newest first")
    listing.add_argument("--limit", type=int, default=20, help="how many to show (default 20)")
    for name, text in (("show", "one campaign and its runs"), ("pause", "stop sending and firing"),
                       ("resume", "continue a paused or missed campaign"), ("cancel", "stop for good")):
        p = add_command(csub, name, help=text)
        p.add_argument("id", type=int, help="campaign number (see `campaign list`)")
        if name == "pause":
            p.add_argument("--reason", default="paused from the command line",
                           help="shown with the campaign's status")
    resend = add_command(csub, "resend-unknown", help="send again to recipients Meta never reported on")
    resend.add_argument("id", type=int, help="campaign number (see `campaign list`)")


def cmd_campaign(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    return run_async(_dispatch(settings, args))


async def _dispatch(settings: Settings, args: argparse.Namespace) -> int:
    from storage.db import make_engine, make_sessionmaker, migrate
    from storage.repository import sync_channels

    await migrate(settings.database_url)
    engine = make_engine(settings.database_url)
    try:
        sessions = make_sessionmaker(engine)
        await sync_channels(sessions, settings.channels, settings.workspace_of)
        sub = args.campaign_command
        if sub == "create":
            return await _create(settings, sessions, args)
        if sub == "list":
            return await _list(settings, sessions, args.limit)
        if sub == "resend-unknown":
            return await _resend_unknown(sessions, args.id)
        return await _control(settings, sessions, sub, args)
    finally:
        await engine.dispose()


def _err(text: str) -> int:
    print(f"error: {text}", file=sys.stderr)
    return EXIT_FAILED


async def _create(settings: Settings, sessions: Any, args: argparse.Namespace) -> int:
    from scheduler.campaigns import estimate
    from scheduler.campaigns import records as campaigns
    from scheduler.campaigns.audience_text import open_text
    from scheduler.campaigns.create import CampaignInputError, Request, prepare
    from scheduler.campaigns.schedule import Schedule, ScheduleError, describe, parse_at
    from scheduler.campaigns.variables import MappingError, describe_mapping, parse_mapping

    channel = settings.channel(args.channel)
    tz = args.timezone or settings.timezone
    try:
        if args.at:
            schedule = Schedule("at", tz, run_at=parse_at(args.at, tz))
        elif args.cron:
            schedule = Schedule("cron", tz, cron=args.cron)
        else:
            schedule = Schedule("now", tz, run_at=datetime.now(ZoneInfo("UTC")))
        variables = parse_mapping(args.var)
    except (ScheduleError, MappingError) as exc:
        return _err(str(exc))
    request = Request(channel=channel, template=args.template, language=args.language, variables=variables,
                      schedule=schedule, name=args.name, created_by="cli",
                      category=args.category.upper() if args.category else None)
    try:
        with open_text(args.audience) as stream:
            prepared = await prepare(sessions, settings, request, stream, source=str(args.audience))
    except FileNotFoundError:
        return _err(f"audience file not found: {args.audience}")
    except CampaignInputError as exc:
        return _err(f"{exc.field}: {exc.message}")
    for warning in prepared.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    report = prepared.report
    for bad in report.bad_rows[:MAX_BAD_ROWS_SHOWN]:
        print(f"{args.audience}:{bad.line}: {bad.reason}", file=sys.stderr)
    if report.bad_count > MAX_BAD_ROWS_SHOWN:
        print(f"… and {report.bad_count - MAX_BAD_ROWS_SHOWN} more bad rows", file=sys.stderr)
    c = await campaigns.activate(sessions, prepared.campaign_id)
    print(f"campaign #{c.id} scheduled: {describe(campaigns.schedule_of(c))}")
    print(f"  template {c.template_name} ({c.language}) from {channel.name}; {describe_mapping(variables)}")
    print(f"  {report.summary()}")
    print(f"  {prepared.recipients} recipients, {prepared.opted_out} opted out (skipped), "
          f"about {estimate.format_duration(prepared.duration_s)} at {channel.mps}/s, "
          f"estimated cost {prepared.cost.text()}")
    return 0


def _when(at: datetime | None, tz: str) -> str:
    return "-" if at is None else day_time(at, tz)


async def _list(settings: Settings, sessions: Any, limit: int) -> int:
    from scheduler.campaigns import records as campaigns

    rows = await campaigns.summaries(sessions, limit=limit)
    if not rows:
        print("no campaigns")
        return 0
    print(f"{'ID':>5}  {'STATUS':<10} {'CHANNEL':<12} {'TEMPLATE':<24} {'AUDIENCE':>8}  {'NEXT':<21}  SCHEDULE")
    for c in rows:
        print(f"{c.id:>5}  {c.status:<10} {c.channel[:12]:<12} {c.template[:24]:<24} {c.audience:>8}  "
              f"{_when(c.next_fire, settings.timezone):<21}  {c.schedule}")
    return 0


async def _resend_unknown(sessions: Any, campaign_id: int) -> int:
    from scheduler.campaigns.unknown_store import resend_unknown
    from storage.models import Campaign

    async with sessions() as session, session.begin():
        if await session.get(Campaign, campaign_id) is None:
            return _err(f"no campaign #{campaign_id}")
        n = await resend_unknown(session, campaign_id)
    if not n:
        print(f"campaign #{campaign_id}: no recipient is unknown; nothing to send again")
        return 0
    print(f"campaign #{campaign_id}: {n} unknown recipient{'s' if n != 1 else ''} will be sent again")
    return 0


async def _control(settings: Settings, sessions: Any, sub: str, args: argparse.Namespace) -> int:
    from scheduler.campaigns import records as campaigns

    try:
        if sub == "show":
            c = await campaigns.campaign(sessions, args.id)
            print(f"campaign #{c.id} {c.name}: {c.status}" + (f" ({c.pause_reason})" if c.pause_reason else ""))
            print(f"  template {c.template} ({c.language}) from {c.channel}, audience {c.audience}")
            print(f"  schedule {c.schedule}; next {_when(c.next_fire, settings.timezone)}")
            for r in c.runs:
                counts = ", ".join(f"{k} {v}" for k, v in sorted(r.counts.items())) or "no recipients"
                print(f"  run #{r.id} for {_when(r.scheduled_for, settings.timezone)}: {r.status}; {counts}")
            return 0
        action = {"pause": lambda: campaigns.pause(sessions, args.id, args.reason),
                  "resume": lambda: campaigns.resume(sessions, args.id),
                  "cancel": lambda: campaigns.cancel(sessions, args.id)}[sub]
        print(await action())
        return 0
    except campaigns.ControlError as exc:
        return _err(str(exc))


COMMANDS: dict[str, Command] = {"campaign": cmd_campaign}
