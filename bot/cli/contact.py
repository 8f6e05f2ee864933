"""`contact export|forget`: a customer's data on request (docs/privacy.md)."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sys
from pathlib import Path
from typing import Any

from sqlalchemy import select

from bot.cli.base import Command, add_command, add_group, run_async, settings_from
from bot.cli.ops import EXIT_FAILED, EXIT_USAGE, Runtime, runtime, slack_pacer
from bot.core.config import Need, Settings


def add_parsers(sub: argparse._SubParsersAction) -> None:
    _, csub = add_group(sub, "contact", help="export or erase one customer's data",
                        description="A customer's data on request (docs/privacy.md): `export` reads the database "
                                    "only; `forget` also redacts their Slack threads with the bot token.")
    export = add_command(csub, "export", help="everything stored about one customer, as JSON or HTML")
    export.add_argument("who", help="the customer's number, user id or username")
    export.add_argument("--channel", default=None, help="only this number's conversations")
    export.add_argument("--workspace", default=None, help="only the numbers of this Slack workspace (T…)")
    export.add_argument("--format", choices=["json", "html"], default=None,
                        help="default: from --out's extension, else json")
    export.add_argument("--out", default=None, help="file to write (default: standard output)")
    forget = add_command(csub, "forget", help="erase one customer's data and redact their Slack threads")
    forget.add_argument("who", nargs="?", default=None, help="the customer's number, user id or username")
    forget.add_argument("--channel", default=None, help="only this number's conversations")
    forget.add_argument("--workspace", default=None, help="only the numbers of this Slack workspace (T…)")
    forget.add_argument("--yes", action="store_true", help="erase (without it: only say what would go)")
    forget.add_argument("--no-slack", action="store_true",
                        help="leave the Slack threads for the server's retention pass to redact (always so with "
                             "many workspaces)")
    forget.add_argument("--resume", action="store_true", help="carry on erasures a stop left unfinished")


async def _scope(rt: Runtime, args: argparse.Namespace) -> list[int] | None:
    """The numbers a command covers: --channel, else --workspace's, else every number."""
    from storage.erasure import workspace_channels
    from storage.models import Channel

    if args.channel is not None:
        rt.settings.channel(args.channel)  # a clear config error for an unknown channel
        async with rt.sessions() as s:
            found = await s.scalar(select(Channel.id).where(Channel.name == args.channel))
        return [found] if found is not None else []
    if args.workspace is not None:
        async with rt.sessions() as s:
            return await workspace_channels(s, args.workspace)
    return None


async def _export(settings: Settings, args: argparse.Namespace) -> dict[str, Any] | None:
    from bot.ops.privacy import PersonNotFound, export_person

    async with runtime(settings) as rt:
        try:
            return await export_person(rt.sessions, settings, args.who, channel_ids=await _scope(rt, args),
                                       exported_by=f"cli:{getpass.getuser()}")
        except PersonNotFound as exc:
            print(f"contact export: {exc}", file=sys.stderr)
            return None


def _write_export(settings: Settings, args: argparse.Namespace) -> int:
    from bot.ops.privacy_export import render_html, render_json

    fmt = args.format or ("html" if args.out and Path(args.out).suffix.lower() in (".html", ".htm") else "json")
    doc = asyncio.run(_export(settings, args))
    if doc is None:
        return EXIT_FAILED
    body = render_html(doc) if fmt == "html" else render_json(doc)
    if args.out:
        Path(args.out).write_text(body, encoding="utf-8")
        print(f"{len(doc['messages'])} messages of {len(doc['conversations'])} conversations written to "
              f"{args.out}", file=sys.stderr)
    else:
        sys.stdout.write(body)
    return 0


async def _forget(settings: Settings, args: argparse.Namespace) -> int:
    from bot.core.identity_hash import salt_of
    from bot.ops.privacy import PersonNotFound, export_person, forget, one_client, resume
    from bot.slack.client import slack_client

    salt_of(settings)  # the one-line config error before anything else
    if not args.resume and not args.who:
        print("contact forget: name the customer (number, user id or username), or --resume", file=sys.stderr)
        return EXIT_USAGE
    # Many workspaces: each thread needs its workspace's token, which the server holds; it redacts them.
    slack = None if args.no_slack or settings.slack.many_workspaces else one_client(slack_client(settings.slack))
    async with runtime(settings) as rt, slack_pacer(settings if slack is not None else None) as pacer:
        if args.resume:
            for outcome in await resume(rt.sessions, settings, slack, pacer=pacer):
                print(outcome.summary())
            return 0
        scope = await _scope(rt, args)
        try:
            if not args.yes:
                doc = await export_person(rt.sessions, settings, args.who, channel_ids=scope)
                print(f"would erase {len(doc['contacts'])} contact(s), {len(doc['conversations'])} conversation(s), "
                      f"{len(doc['messages'])} message(s) and {len(doc['campaign_sends'])} campaign send(s) "
                      "(kept as counts); run again with --yes to erase")
                return EXIT_USAGE
            outcome = await forget(rt.sessions, settings, slack, args.who,
                                   requested_by=f"cli:{getpass.getuser()}", channel_ids=scope, pacer=pacer)
        except PersonNotFound as exc:
            print(f"contact forget: {exc}", file=sys.stderr)
            return EXIT_FAILED
    print(outcome.summary())
    return 0


def cmd_contact(args: argparse.Namespace) -> int:
    if args.contact_command == "export":
        return _write_export(settings_from(args), args)
    return run_async(_forget(settings_from(args, frozenset() if args.no_slack else frozenset({Need.SLACK})), args))


COMMANDS: dict[str, Command] = {"contact": cmd_contact}
