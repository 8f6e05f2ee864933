"""Slack's side of OAuth v2 distribution for the Slack stand-in: workspaces, installs and their tokens.

What it plays (docs.slack.dev: "Installing with OAuth", `oauth.v2.access`, "Token rotation"):
- `GET /oauth/v2/authorize?client_id=…&scope=…&state=…[&redirect_uri=…][&team=T…]` is the page where a
  workspace admin approves the app; here it approves at once for the workspace named by `team` (Slack's own
  parameter for choosing the workspace) and redirects to `redirect_uri?code=…&state=…`.
- `oauth.v2.access` exchanges a code (once, within its lifetime) for a bot token, authenticated with the app's
  client id and secret (HTTP Basic, as slack_sdk sends them, or form fields). With rotation on, the answer
  also carries `refresh_token` and `expires_in`, and `grant_type=refresh_token` exchanges a refresh token for
  a new pair.
- Every token belongs to one workspace (a team, or an enterprise for an org-wide install): the stand-in's Web
  API serves it only that workspace's channels. Uninstalling or revoking makes the tokens `token_revoked`.
"""

from __future__ import annotations

import base64
import binascii
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from aiohttp import web


class OAuthError(Exception):
    """An `{"ok": false, "error": ...}` answer from oauth.v2.access."""

    def __init__(self, error: str) -> None:
        super().__init__(error)
        self.error = error


@dataclass
class Workspace:
    """A Slack workspace (or an Enterprise Grid org) the app may be installed in."""

    key: str  # team id, or enterprise id for an org
    name: str
    enterprise_id: str | None = None
    is_org: bool = False
    bot_user_id: str = ""
    installer: str = "U0INSTALLER"
    installed: bool = False
    tokens: set[str] = field(default_factory=set)


@dataclass
class _Token:
    key: str
    expires_at: float | None = None
    revoked: bool = False


class OAuthServer:
    """Installs, codes and tokens of every workspace; the stand-in's Web API asks it whose a token is."""

    CODE_TTL = 600.0

    def __init__(self, *, client_id: str, client_secret: str, app_id: str, scopes: list[str],
                 rotate: bool = False, expires_in: int = 43_200) -> None:
        self.client_id = client_id
        self.client_secret = client_secret
        self.app_id = app_id
        self.scopes = scopes
        self.rotate = rotate
        self.expires_in = expires_in
        self.redirect_uri = ""  # the app's configured redirect URL, used when the request names none
        self.workspaces: dict[str, Workspace] = {}
        self._tokens: dict[str, _Token] = {}
        self._codes: dict[str, tuple[str, float, str]] = {}  # code -> (workspace key, issued at, redirect_uri)
        self._refresh: dict[str, str] = {}  # refresh token -> workspace key

    def add_workspace(self, key: str, name: str | None = None, *, enterprise_id: str | None = None,
                      is_org: bool = False, bot_user_id: str | None = None) -> Workspace:
        """A workspace (T…) or an org (E…, is_org) that can install the app."""
        ws = Workspace(key=key, name=name or key, enterprise_id=key if is_org else enterprise_id, is_org=is_org,
                       bot_user_id=bot_user_id or f"U0BOT{key[1:]}")
        self.workspaces[key] = ws
        return ws

    def add_token(self, token: str, key: str) -> None:
        """A token issued outside OAuth (the single-workspace bot token) for workspace `key`."""
        self._tokens[token] = _Token(key)

    def owner(self, token: str) -> tuple[str | None, str | None]:
        """(workspace key, None) for a live token, else (None, Slack's error name)."""
        found = self._tokens.get(token)
        if found is None:
            return None, "invalid_auth"
        if found.revoked:
            return None, "token_revoked"
        if found.expires_at is not None and time.time() >= found.expires_at:
            return None, "token_expired"
        return found.key, None

    def expire(self, key: str) -> None:
        """Make every access token of `key` expired now (as if its 12 hours were up)."""
        for token in self.workspaces[key].tokens:
            self._tokens[token].expires_at = time.time() - 1

    def revoke(self, key: str) -> None:
        """Uninstall: every token of the workspace stops working."""
        ws = self.workspaces[key]
        ws.installed = False
        for token in ws.tokens:
            self._tokens[token].revoked = True
        for refresh in [r for r, k in self._refresh.items() if k == key]:
            del self._refresh[refresh]

    # ---- the approval page -----------------------------------------------------------------------

    async def authorize(self, request: web.Request) -> web.Response:
        """Approve the install for `team` at once and send the browser back with a code."""
        query = request.query
        if query.get("client_id") != self.client_id:
            return web.Response(status=400, text="invalid_client_id")
        key = query.get("team", "")
        if key not in self.workspaces:
            return web.Response(status=400, text="unknown team; add_workspace() it first")
        redirect = query.get("redirect_uri") or self.redirect_uri
        if not redirect:
            return web.Response(status=400, text="bad_redirect_uri")
        code = secrets.token_hex(12)
        self._codes[code] = (key, time.monotonic(), query.get("redirect_uri", ""))
        raise web.HTTPFound(f"{redirect}?{urlencode({'code': code, 'state': query.get('state', '')})}")

    # ---- oauth.v2.access -------------------------------------------------------------------------

    def access(self, args: Mapping[str, Any], authorization: str) -> dict[str, Any]:
        """The answer to oauth.v2.access (without `ok`); OAuthError for Slack's documented failures."""
        client_id, client_secret = self._client(args, authorization)
        if client_id != self.client_id:
            raise OAuthError("invalid_client_id")
        if client_secret != self.client_secret:
            raise OAuthError("bad_client_secret")
        if args.get("grant_type") == "refresh_token":
            key = self._refresh.pop(str(args.get("refresh_token") or ""), None)
            if key is None:
                raise OAuthError("invalid_refresh_token")
            return self._grant(key)
        code = str(args.get("code") or "")
        found = self._codes.pop(code, None)
        if found is None or time.monotonic() - found[1] > self.CODE_TTL:
            raise OAuthError("invalid_code")
        if found[2] and str(args.get("redirect_uri") or "") != found[2]:
            raise OAuthError("bad_redirect_uri")
        return self._grant(found[0])

    @staticmethod
    def _client(args: Mapping[str, Any], authorization: str) -> tuple[str, str]:
        if authorization.lower().startswith("basic "):
            try:
                pair = base64.b64decode(authorization[6:].strip()).decode("utf-8")
            except (binascii.Error, UnicodeDecodeError):
                raise OAuthError("invalid_client_id") from None
            client_id, _, secret = pair.partition(":")
            return client_id, secret
        return str(args.get("client_id") or ""), str(args.get("client_secret") or "")

    def _grant(self, key: str) -> dict[str, Any]:
        ws = self.workspaces[key]
        ws.installed = True
        answer: dict[str, Any] = {
            "app_id": self.app_id,
            "authed_user": {"id": ws.installer},
            "scope": ",".join(self.scopes),
            "token_type": "bot",
            "bot_user_id": ws.bot_user_id,
            "team": None if ws.is_org else {"id": ws.key, "name": ws.name},
            "enterprise": {"id": ws.enterprise_id, "name": ws.name} if ws.enterprise_id else None,
            "is_enterprise_install": ws.is_org,
        }
        if self.rotate:
            token = f"xoxe.xoxb-1-{secrets.token_hex(16)}"
            refresh = f"xoxe-1-{secrets.token_hex(16)}"
            self._refresh[refresh] = key
            self._tokens[token] = _Token(key, expires_at=time.time() + self.expires_in)
            answer.update(refresh_token=refresh, expires_in=self.expires_in)
        else:
            token = f"xoxb-{key}-{secrets.token_hex(12)}"
            self._tokens[token] = _Token(key)
        ws.tokens.add(token)
        answer["access_token"] = token
        return answer
