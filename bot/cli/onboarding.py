"""`wabridge connect --slack-channel C123 [--name NAME]`: a one-time /onboard link from a terminal."""

from __future__ import annotations

import argparse
import sys
from datetime import timedelta

from bot.cli.base import Command, add_command, run_async, settings_from
from bot.core.config import Settings
from bot.core.readable import day_time
from bot.core.workspace import DEFAULT_WORKSPACE, is_workspace_id


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = add_command(sub, "connect", help="print a one-time link that connects a WhatsApp Business app number",
                    description="Print a one-time /onboard link: the shop owner opens it and connects the "
                                "number they use in the WhatsApp Business app (Coexistence). Needs "
                                "server.public_url, meta.app_id, meta.embedded_signup_config_id and "
                                "meta.token_key for the page to work.")
    p.add_argument("--slack-channel", required=True, help="Slack channel ID the number's chats go to (C…)")
    p.add_argument("--name", default=None, help="channel name (default: from the business's name)")
    p.add_argument("--valid-minutes", type=int, default=60, help="how long the link works (default 60)")
    p.add_argument("--team", default=None, help="many workspaces (slack.client_id): the workspace (T…) the "
                                                "number will belong to; its Slack channel must be in it")



def cmd_connect(args: argparse.Namespace) -> int:
    return run_async(_connect(settings_from(args), args))


async def _connect(settings: Settings, args: argparse.Namespace) -> int:
    from bot.onboarding.links import create_link, link_url
    from bot.onboarding.slack_commands import parse_connect
    from storage.db import make_engine, make_sessionmaker, migrate

    parsed = parse_connect(" ".join(filter(None, [args.slack_channel, args.name])), None)
    if isinstance(parsed, str):
        print(f"error: {parsed}", file=sys.stderr)
        return 1
    if settings.slack.many_workspaces and not (args.team and is_workspace_id(args.team)):
        print("error: --team T… is required with slack.client_id: the workspace the number belongs to",
              file=sys.stderr)
        return 1
    team = args.team if settings.slack.many_workspaces else DEFAULT_WORKSPACE
    if args.valid_minutes <= 0:
        print("error: --valid-minutes must be positive", file=sys.stderr)
        return 1
    meta = settings.meta
    missing = [k for k, v in (("meta.app_id", meta.app_id),
                              ("meta.embedded_signup_config_id", meta.embedded_signup_config_id),
                              ("meta.token_key", meta.token_key)) if not v]
    if missing:
        print(f"warning: the page will not work until {', '.join(missing)} are set", file=sys.stderr)
    await migrate(settings.database_url)
    engine = make_engine(settings.database_url)
    try:
        token, expires = await create_link(make_sessionmaker(engine), slack_channel=parsed[0],
                                           channel_name=parsed[1], requested_by="cli",
                                           valid_for=timedelta(minutes=args.valid_minutes), slack_team=team)
    finally:
        await engine.dispose()
    print(link_url(settings, token))
    print(f"works once, until {day_time(expires, settings.timezone)}", file=sys.stderr)
    return 0


COMMANDS: dict[str, Command] = {"connect": cmd_connect}
