"""Installing in many workspaces: bolt's OAuth v2 flow, and what an uninstall or a revoked token does.

An install (or reinstall) files the workspace as active, and its held work resumes. `app_uninstalled` and
`tokens_revoked` delete the workspace's tokens from the installation store and pause its work: its posts stay
in the outbox, its numbers keep storing what customers write, and nothing is tried with the dead token until
the workspace installs again. Both say so in the log; `wabridge doctor` lists paused workspaces.
"""

from __future__ import annotations

import logging
from functools import partial
from typing import Any

from slack_bolt.async_app import AsyncApp, AsyncBoltContext
from slack_bolt.authorization.async_authorize import AsyncInstallationStoreAuthorize
from slack_bolt.oauth.async_callback_options import AsyncCallbackOptions, AsyncFailureArgs, AsyncSuccessArgs
from slack_bolt.oauth.async_oauth_settings import AsyncOAuthSettings
from slack_bolt.response import BoltResponse
from slack_sdk.oauth.installation_store.async_installation_store import AsyncInstallationStore
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.core.loops import SLACK_OUTBOX
from bot.core.workspace import workspace_key
from bot.deps import Deps
from storage.installations import oauth_state_store
from storage.workspaces import REVOKED, UNINSTALLED, held_posts, record_install, record_removal

log = logging.getLogger(__name__)

INSTALL_PATH = "/slack/install"
REDIRECT_PATH = "/slack/oauth_redirect"
STATE_SECONDS = 600
# What slack-manifest.yaml asks for (tests/test_manifest.py keeps the two in step).
DEFAULT_SCOPES = ("channels:history", "groups:history", "channels:read", "groups:read", "chat:write",
                  "chat:write.customize", "commands", "files:read", "files:write", "im:write", "reactions:read",
                  "reactions:write", "users:read", "usergroups:read")


def authorization_url(api_url: str) -> str:
    """Slack's approval page beside its Web API (https://slack.com/api/ → https://slack.com/oauth/v2/authorize)."""
    base = api_url.rstrip("/").removesuffix("/api")
    return f"{base}/oauth/v2/authorize"


def oauth_settings(deps: Deps, engine: AsyncEngine) -> AsyncOAuthSettings:
    """bolt's OAuth settings: our sealed installation store, states in the database, callbacks that file the
    workspace; token rotation and the code exchange go to `slack.api_url` through the shared client."""
    settings = deps.settings
    store = deps.installations
    if store is None:
        raise RuntimeError("many-workspace mode without an installation store")
    public = settings.server.public_url.rstrip("/")
    oauth_log = logging.getLogger("bot.slack.oauth")
    oauth = AsyncOAuthSettings(
        client_id=settings.slack.client_id,
        client_secret=settings.slack.client_secret,
        scopes=list(settings.slack.scopes or DEFAULT_SCOPES),
        user_scopes=[],
        redirect_uri=f"{public}{REDIRECT_PATH}" if public else None,
        install_path=INSTALL_PATH,
        redirect_uri_path=REDIRECT_PATH,
        authorization_url=authorization_url(settings.slack.api_url),
        installation_store=store,
        installation_store_bot_only=True,
        state_store=oauth_state_store(engine, STATE_SECONDS),
        state_expiration_seconds=STATE_SECONDS,
        callback_options=AsyncCallbackOptions(success=partial(_installed, deps), failure=_failed),
        logger=oauth_log,
    )
    # bolt builds its authorize without a client, so its token rotator would call slack.com whatever
    # slack.api_url says; this one rotates through the shared client.
    oauth.authorize = AsyncInstallationStoreAuthorize(
        logger=oauth_log, installation_store=store, client_id=oauth.client_id,
        client_secret=oauth.client_secret, token_rotation_expiration_minutes=oauth.token_rotation_expiration_minutes,
        bot_only=True, client=deps.slack)
    return oauth


async def _installed(deps: Deps, args: AsyncSuccessArgs) -> BoltResponse:
    installation = args.installation
    team = workspace_key(installation.team_id, installation.enterprise_id, installation.is_enterprise_install)
    name = installation.enterprise_name if installation.is_enterprise_install else installation.team_name
    async with deps.sessions() as session, session.begin():
        resumed = await record_install(session, team, enterprise_id=installation.enterprise_id, name=name)
    if deps.workspaces is not None:
        deps.workspaces.forget(team)
    if resumed:
        log.warning("workspace %s (%s) installed the app again: its held work resumes", team, name)
    else:
        log.info("workspace %s (%s) installed the app", team, name)
    deps.wakes.wake(SLACK_OUTBOX)
    return await args.default.success(args)


async def _failed(args: AsyncFailureArgs) -> BoltResponse:
    log.warning("Slack install failed: %s (%s)", args.reason, args.error)
    return await args.default.failure(args)


def register(bolt: AsyncApp, deps: Deps) -> None:
    if deps.installations is None:
        return  # single-workspace mode: the one token is the operator's to revoke and replace
    bolt.event("app_uninstalled")(partial(on_removed, deps, UNINSTALLED))
    bolt.event("tokens_revoked")(partial(on_removed, deps, REVOKED))


async def on_removed(deps: Deps, state: str, ack: Any, event: dict[str, Any], context: AsyncBoltContext) -> None:
    await ack()
    if state == REVOKED and not (event.get("tokens") or {}).get("bot"):
        return  # only user tokens went: the bot's work goes on
    org = bool(context.is_enterprise_install)
    team = workspace_key(context.team_id, context.enterprise_id, org)
    store: AsyncInstallationStore | None = deps.installations
    if store is not None:
        await store.async_delete_all(enterprise_id=context.enterprise_id, team_id=None if org else context.team_id)
    if deps.workspaces is not None:
        deps.workspaces.forget(team)
    async with deps.sessions() as session, session.begin():
        await record_removal(session, team, state)
        held = await held_posts(session, team)
    log.warning("workspace %s %s: its tokens are deleted and its work paused (%d Slack posts held) until it "
                "installs the app again at %s", team, "uninstalled the app" if state == UNINSTALLED
                else "revoked the bot token", held, INSTALL_PATH)
