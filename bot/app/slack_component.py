"""The Slack bridge as an application component: `/slack/events`, the bolt app and the outbox worker."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

from aiohttp import web

from bot.app.bolt import (
    BOLT,
    build_bolt_app,
    slack_events,
    slack_install_page,
    slack_oauth_redirect,
    start_socket_mode,
)
from bot.app.factory import Component, background
from bot.bridge import message_load, mirror, revisions
from bot.core.loops import forever
from bot.deps import Deps
from bot.handlers import appkeys, slack_install
from bot.onboarding import outbox_kinds
from bot.ops.retention_redaction import RedactionWorker
from bot.slack import reply_ledger
from bot.slack.outbox import Kinds, OutboxWorker
from scheduler.campaigns import progress

log = logging.getLogger(__name__)

OUTBOX = web.AppKey("slack_outbox", OutboxWorker)

def builtin_kinds() -> Kinds:
    """The bridge's own outbox kinds: messages, statuses, notes, alerts, post revisions, and onboarding's."""
    return {**mirror.KINDS, **revisions.KINDS, **outbox_kinds.KINDS}


def make_outbox_worker(deps: Deps, kinds: Kinds | None = None, **options: Any) -> OutboxWorker:
    """The Slack outbox worker for `kinds` (default: the bridge's, onboarding's and campaign progress)."""
    chosen = kinds if kinds is not None else {**builtin_kinds(), **progress.KINDS}
    return OutboxWorker(deps, chosen, ensure_thread=mirror.ensure_thread, prefetch=message_load.prefetch_messages,
                        **options)


def add_outbox_kinds(app: web.Application, kinds: Kinds) -> None:
    """Let this application's outbox worker deliver `kinds` (called by components while mounting)."""
    if appkeys.SLACK_OUTBOX_KINDS not in app:
        app[appkeys.SLACK_OUTBOX_KINDS] = {}
    app[appkeys.SLACK_OUTBOX_KINDS].update(kinds)


def outbox_worker_task(app: web.Application, **outbox_options: Any) -> asyncio.Task[None]:
    """Build this process's outbox worker with the kinds the components added, and run it."""
    added = app.get(appkeys.SLACK_OUTBOX_KINDS)
    outbox_options.setdefault("pacer", app[appkeys.PACER])
    outbox_options.setdefault("concurrency", app[appkeys.SETTINGS].worker.outbox_concurrency)
    worker = make_outbox_worker(app[appkeys.DEPS], added if added is not None else builtin_kinds(),
                                owner=liveness_owner(app), guard=liveness_guard(app), **outbox_options)
    app[OUTBOX] = worker
    app[appkeys.CLAIMS_IN_HAND]["slack_outbox"] = worker.queue.hand
    return asyncio.create_task(worker.run())


def liveness_owner(app: web.Application) -> Callable[[], int | None] | None:
    """This process's worker id, read at each claim, when it runs a heartbeat."""
    heartbeat = app.get(appkeys.HEARTBEAT)
    return (lambda: heartbeat.worker_id) if heartbeat is not None else None


def liveness_guard(app: web.Application) -> Callable[[], Callable[[], bool]] | None:
    """This process's heartbeat guard factory (see storage.liveness.Heartbeat.guard), when it runs one."""
    heartbeat = app.get(appkeys.HEARTBEAT)
    return heartbeat.guard if heartbeat is not None else None


async def _bolt_ctx(app: web.Application) -> AsyncIterator[None]:
    deps = app[appkeys.DEPS]
    bolt = build_bolt_app(deps, app[appkeys.ENGINE])
    app[BOLT] = bolt
    socket: Any = None
    if deps.settings.slack.app_token:
        socket = await start_socket_mode(bolt, deps.settings.slack.app_token)
    yield
    if socket is not None:
        with contextlib.suppress(Exception):
            await socket.close_async()


REPLY_SWEEP_SECONDS = 60.0


def _start_reply_sweep(app: web.Application) -> asyncio.Task[None]:
    deps = app[appkeys.DEPS]

    async def sweep() -> None:
        await reply_ledger.sweep(deps)

    return asyncio.create_task(forever(sweep, REPLY_SWEEP_SECONDS, doing="reply sweep",
                                       monitor=deps.loop_health.loop("reply sweep", log, reported=False)))


def _start_redaction(app: web.Application) -> asyncio.Task[None]:
    """Redact the Slack posts of messages retention deleted, sharing the outbox's pacer (behind its posts)."""
    deps = app[appkeys.DEPS]
    worker = RedactionWorker(deps.sessions, deps.slack_for, app[OUTBOX].pacer, metrics=deps.metrics)
    return asyncio.create_task(worker.run())


def make_slack_component(*, outbox: bool = True, kinds: Kinds | None = None, **outbox_options: Any) -> Component:
    """The component; `kinds` adds outbox kinds, `outbox_options` tune the worker (concurrency, backoff, …)."""

    def component(app: web.Application) -> None:
        app.router.add_post("/slack/events", slack_events)
        if app[appkeys.SETTINGS].slack.many_workspaces:
            app.router.add_get(slack_install.INSTALL_PATH, slack_install_page)
            app.router.add_get(slack_install.REDIRECT_PATH, slack_oauth_redirect)
        app.cleanup_ctx.append(_bolt_ctx)
        if outbox:
            add_outbox_kinds(app, builtin_kinds())
            add_outbox_kinds(app, kinds or {})
            app.cleanup_ctx.append(background("slack-outbox", lambda a: outbox_worker_task(a, **outbox_options)))
            app.cleanup_ctx.append(background("slack-reply-sweep", _start_reply_sweep))
            app.cleanup_ctx.append(background("retention-redaction", _start_redaction))

    return component


slack_component: Component = make_slack_component()
"""Mounts `POST /slack/events` and runs the Slack outbox worker in this process."""
