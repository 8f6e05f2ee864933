"""Operations sub-commands: `templates sync|copy|list`, `doctor`, `export`, `spend`."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.cli.base import Command, add_command, add_group, run_async, settings_from, slack_names
from bot.core.config import Need, Settings
from bot.meta.graph import GraphClient, GraphError

if TYPE_CHECKING:
    from bot.ops.export import Transcript
    from bot.slack.pacer import Pacer

EXIT_FAILED = 1
EXIT_USAGE = 2


@dataclass
class Runtime:
    settings: Settings
    sessions: async_sessionmaker[AsyncSession]
    graph: GraphClient


@asynccontextmanager
async def slack_pacer(settings: Settings | None) -> AsyncIterator[Pacer | None]:
    """A Slack pacer for a command's calls: with `redis_url`, the buckets the servers use (their calls and the
    command's share Slack's allowance); else this process's own. None without settings (no Slack calls)."""
    from redis import asyncio as aioredis

    from bot.slack.pacer import make_pacer

    if settings is None:
        yield None
        return
    client = aioredis.from_url(settings.redis_url) if settings.redis_url else None
    try:
        yield make_pacer(client)
    finally:
        if client is not None:
            await client.aclose()


@asynccontextmanager
async def runtime(settings: Settings, *, migrate_first: bool = False) -> AsyncIterator[Runtime]:
    """Database sessions and a Graph client for one command, closed afterwards."""
    from storage.db import make_engine, make_sessionmaker, migrate

    if migrate_first:
        await migrate(settings.database_url)
    engine = make_engine(settings.database_url)
    graph = GraphClient(settings.meta.graph_url, settings.meta.api_version)
    try:
        yield Runtime(settings, make_sessionmaker(engine), graph)
    finally:
        await graph.aclose()
        await engine.dispose()


def add_parsers(sub: argparse._SubParsersAction) -> None:
    _, tsub = add_group(sub, "templates", help="sync, list or copy message templates",
                        description="Message templates of each channel's WABA: `sync` and `copy` call the "
                                    "Graph API with the channels' access tokens; `list` reads the database only.")
    sync = add_command(tsub, "sync", help="store every template of each channel's WABA")
    sync.add_argument("--channel", default=None, help="only this channel's WABA (default: every channel)")
    listing = add_command(tsub, "list", help="show stored templates with status")
    listing.add_argument("--channel", default=None, help="only this channel's WABA (default: every channel)")
    cp = add_command(tsub, "copy", help="submit one channel's templates on another channel's WABA")
    cp.add_argument("--from", dest="source", required=True, help="channel whose templates are copied")
    cp.add_argument("--to", dest="dest", required=True, help="channel whose WABA receives them")

    doctor = add_command(
        sub, "doctor", help="check tokens, webhooks, traffic, Slack, database and Redis",
        description="Check the set-up end to end: database, Redis, each channel's token and number, the app's "
                    "webhook fields, recent traffic and errors, Slack's token and scopes, who may run /campaign. "
                    "Each problem comes with its fix; unset secrets are findings, not a refusal to run. Exit "
                    "code 1 when a check fails.")
    doctor.add_argument("--channel", default=None, help="check only this channel (default: every channel)")
    doctor.add_argument("--team", default=None, help="many workspaces: check only this workspace (T…) and its "
                                                     "numbers")

    export = add_command(
        sub, "export", help="write one conversation's transcript",
        description="Write one conversation's audit transcript (every message, edit, deletion, note and status) "
                    "as CSV, Markdown or HTML, times in the configured timezone. Needs database_url; Slack "
                    "authors are named when slack.bot_token is set and Slack answers.")
    export.add_argument("--channel", required=True, help="channel (WhatsApp number) name from app.yaml")
    export.add_argument("--contact", required=True, help="the customer's number (or saved name)")
    export.add_argument("--format", choices=["csv", "md", "html"], default=None,
                        help="default: from --out's extension, else csv")
    export.add_argument("--out", default=None, help="file to write (default: standard output)")

    spend = add_command(sub, "spend", help="estimated spend by month, channel and category")
    spend.add_argument("month", nargs="?", default=None, help="YYYY-MM (default: this month)")
    spend.add_argument("--channel", default=None, help="only this channel (default: every channel)")


# ---- templates ----------------------------------------------------------------------------------


def cmd_templates(args: argparse.Namespace) -> int:
    settings = settings_from(args, frozenset() if args.templates_command == "list" else frozenset({Need.CHANNELS}))
    handlers = {"sync": _templates_sync, "list": _templates_list, "copy": _templates_copy}
    return run_async(handlers[args.templates_command](settings, args))


async def _templates_sync(settings: Settings, args: argparse.Namespace) -> int:
    from bot.ops.templates import select_channels, sync_templates

    channels = select_channels(settings, args.channel)
    async with runtime(settings, migrate_first=True) as rt:
        try:
            results = await sync_templates(rt.sessions, rt.graph, channels)
        except GraphError as exc:
            print(f"template sync failed: {exc}", file=sys.stderr)
            return EXIT_FAILED
    for r in results:
        print(f"WABA {r.waba_id} ({', '.join(r.channels)}): {r.fetched} templates, {r.created} new, "
              f"{r.updated} changed, {r.removed} removed")
    return 0


async def _templates_list(settings: Settings, args: argparse.Namespace) -> int:
    from bot.ops.templates import channels_by_waba, describe, select_channels, stored_templates

    async with runtime(settings) as rt:
        for waba_id, group in channels_by_waba(select_channels(settings, args.channel)).items():
            print(f"WABA {waba_id} ({', '.join(c.name for c in group)}):")
            rows = await stored_templates(rt.sessions, waba_id)
            for t in rows:
                print(f"  {describe(t)}")
            if not rows:
                print("  none stored: run `wabridge templates sync`")
    return 0


async def _templates_copy(settings: Settings, args: argparse.Namespace) -> int:
    from bot.ops.templates import CopyOutcome, CopyResult, copy_templates

    source, dest = settings.channel(args.source), settings.channel(args.dest)

    def progress(i: int, total: int, result: CopyResult) -> None:
        print(f"[{i}/{total}] {result.line()}", flush=True)

    async with runtime(settings, migrate_first=True) as rt:
        print(f"copying templates of {source.name} (WABA {source.waba_id}) to {dest.name} "
              f"(WABA {dest.waba_id})", flush=True)
        try:
            results = await copy_templates(rt.sessions, rt.graph, source, dest, progress)
        except GraphError as exc:
            print(f"template copy failed: {exc}", file=sys.stderr)
            return EXIT_FAILED
    counts = {o: sum(1 for r in results if r.outcome is o) for o in CopyOutcome}
    print(", ".join(f"{n} {o.value}" for o, n in counts.items()))
    return EXIT_FAILED if counts[CopyOutcome.FAILED] else 0


# ---- doctor -------------------------------------------------------------------------------------


def cmd_doctor(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    return run_async(_doctor(settings, args.channel, args.team))


async def _doctor(settings: Settings, channel: str | None, team: str | None = None) -> int:
    from bot.ops.doctor import DoctorEnv, all_passed, render_text, run_doctor
    from bot.slack.client import slack_client

    slack = slack_client(settings.slack, timeout=10)
    async with runtime(settings) as rt:
        results = await run_doctor(DoctorEnv(settings, rt.sessions, rt.graph, slack), channel, team=team)
    print(render_text(results))
    return 0 if all_passed(results) else EXIT_FAILED


# ---- export -------------------------------------------------------------------------------------


def cmd_export(args: argparse.Namespace) -> int:
    from bot.ops.export import ExportError, Format, render

    settings = settings_from(args)
    settings.channel(args.channel)  # a clear config error for an unknown channel
    fmt = Format(export_format(args.format, args.out))
    try:
        transcript = asyncio.run(_load_transcript(settings, args.channel, args.contact))
    except ExportError as exc:
        print(f"export: {exc}", file=sys.stderr)
        return EXIT_FAILED
    body = render(transcript, fmt)
    if args.out:
        Path(args.out).write_text(body, encoding="utf-8")
        print(f"{len(transcript.lines)} messages written to {args.out}", file=sys.stderr)
    else:
        sys.stdout.write(body)
    return 0


def export_format(fmt: str | None, out: str | None) -> str:
    """--format, else the extension of --out (csv, md, html), else csv."""
    if fmt:
        return fmt
    suffix = Path(out).suffix.lower().lstrip(".") if out else ""
    return {"csv": "csv", "md": "md", "markdown": "md", "html": "html", "htm": "html"}.get(suffix, "csv")


async def _load_transcript(settings: Settings, channel: str, contact: str) -> Transcript:
    from bot.ops.export import load_transcript, slack_users, with_slack_names

    async with runtime(settings) as rt:
        transcript = await load_transcript(rt.sessions, channel, contact, default_region=settings.default_region,
                                           timezone=settings.timezone,
                                           exported_by=f"{getpass.getuser()} (command line)")
    return with_slack_names(transcript, await slack_names(settings, slack_users(transcript)))


# ---- spend --------------------------------------------------------------------------------------


def cmd_spend(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    return run_async(_spend(settings, args.month, args.channel))


async def _spend(settings: Settings, month: str | None, channel: str | None) -> int:
    from bot.ops.spend import render_text, spend_for_month

    if channel:
        settings.channel(channel)
    async with runtime(settings) as rt:
        try:
            label, report = await spend_for_month(rt.sessions, settings.pricing, settings.timezone, month,
                                                  channel=channel, default_region=settings.default_region)
        except ValueError as exc:
            print(f"spend: {exc}", file=sys.stderr)
            return EXIT_USAGE
    print(render_text(report, label))
    return 0


COMMANDS: dict[str, Command] = {
    "templates": cmd_templates, "doctor": cmd_doctor, "export": cmd_export, "spend": cmd_spend,
}
