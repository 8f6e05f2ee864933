"""The Slack bridge as an application component: `/slack/events`, the bolt app and the outbox worker."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

from aiohttp import web

from bot.app.bolt import BOLT, build_bolt_app, slack_events, start_socket_mode
from bot.app.factory import Component, background
from bot.bridge import mirror
from bot.deps import Deps
from bot.handlers import appkeys
from bot.onboarding import outbox_kinds
from bot.slack.outbox import OutboxWorker
from scheduler.campaigns import progress, unknown_notice

log = logging.getLogger(__name__)

OUTBOX = web.AppKey("slack_outbox", OutboxWorker)

# The modules whose outbox kinds this process delivers: the bridge's and onboarding's kinds are declared
# with `outbox_kind` in them (imported above); campaign progress and unknown-recipient notices are added here.
KIND_MODULES = (mirror, outbox_kinds, progress, unknown_notice)


def make_outbox_worker(deps: Deps, **options: Any) -> OutboxWorker:
    """The Slack outbox worker with every kind the bridge, onboarding and campaigns post."""
    progress.register()
    unknown_notice.register()
    return OutboxWorker(deps, ensure_thread=mirror.ensure_thread, **options)


def liveness_owner(app: web.Application) -> Callable[[], int | None] | None:
    """This process's worker id, read at each claim, when it runs a heartbeat."""
    heartbeat = app.get(appkeys.HEARTBEAT)
    return (lambda: heartbeat.worker_id) if heartbeat is not None else None


def _chain_wake(app: web.Application, worker: OutboxWorker) -> None:
    """Wake the outbox whenever the webhook worker has committed a batch (new rows are then visible)."""
    webhook_worker = app.get(appkeys.WEBHOOK_WORKER)
    if webhook_worker is not None:
        webhook_worker.on_processed(worker.wake)


async def _bolt_ctx(app: web.Application) -> AsyncIterator[None]:
    deps = app[appkeys.DEPS]
    bolt = build_bolt_app(deps)
    app[BOLT] = bolt
    socket: Any = None
    if deps.settings.slack.app_token:
        socket = await start_socket_mode(bolt, deps.settings.slack.app_token)
    yield
    if socket is not None:
        with contextlib.suppress(Exception):
            await socket.close_async()


def make_slack_component(*, outbox: bool = True, **outbox_options: Any) -> Component:
    """The component; `outbox_options` tune the worker (concurrency, backoff_base, backoff_cap, …)."""

    def start_outbox(app: web.Application) -> asyncio.Task[None]:
        worker = make_outbox_worker(app[appkeys.DEPS], owner=liveness_owner(app), **outbox_options)
        app[OUTBOX] = worker
        _chain_wake(app, worker)
        return asyncio.create_task(worker.run())

    def component(app: web.Application) -> None:
        app.router.add_post("/slack/events", slack_events)
        app.cleanup_ctx.append(_bolt_ctx)
        if outbox:
            app.cleanup_ctx.append(background("slack-outbox", start_outbox))

    return component


slack_component: Component = make_slack_component()
"""Mounts `POST /slack/events` and runs the Slack outbox worker in this process."""
