"""slack-manifest.yaml grants exactly what the code uses: scopes, events, the slash command, shortcuts, URLs.

The source under bot/ and scheduler/ is read statically (ast): every call of a slack_sdk Web API method
(`client.chat_postMessage(...)`, `client.api_call("pins.add")`, helpers such as `files_upload_v2`) is mapped to
Slack Web API methods through slack_sdk's own source, then to scopes through METHOD_SCOPES. A method missing
from that table fails the test, so a new kind of call forces a look at Slack's docs and an update here and in
the manifest.
"""

from __future__ import annotations

import ast
import inspect
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from slack_sdk.web.async_client import AsyncWebClient

ROOT = Path(__file__).resolve().parents[1]
MANIFEST = ROOT / "slack-manifest.yaml"
SCANNED = ("bot", "scheduler")
# The Slack stand-in implements the Web API for tests and the demo; it never calls Slack.
NOT_SCANNED = ("bot/standins",)
PLACEHOLDER_HOST = "YOUR-HOST"
BOLT_ROUTE = "/slack/events"

# Slack Web API method -> the bot scopes Wabridge needs for the way it calls that method.
# Sources: each method's "Facts" on docs.slack.dev/reference/methods/<method> (api.slack.com/methods/<method>),
# and slackapi/slack-api-specs web-api/slack_web_openapi_v2.json (security.slackAuth).
METHOD_SCOPES: dict[str, frozenset[str]] = {
    "auth.test": frozenset(),  # any token; doctor reads the granted scopes from its x-oauth-scopes header
    "chat.postMessage": frozenset({"chat:write"}),
    "chat.postEphemeral": frozenset({"chat:write"}),
    "chat.update": frozenset({"chat:write"}),
    # Slack accepts channels:/groups:/im:/mpim:history by conversation type; bridged channels may be public
    # or private, so both channel kinds are needed.
    "conversations.history": frozenset({"channels:history", "groups:history"}),
    "conversations.members": frozenset({"channels:read", "groups:read"}),
    "conversations.replies": frozenset({"channels:history", "groups:history"}),
    # Slack lists channels:manage, groups:write, im:write, mpim:write; Wabridge only opens 1:1 DMs.
    "conversations.open": frozenset({"im:write"}),
    "files.info": frozenset({"files:read"}),
    "files.getUploadURLExternal": frozenset({"files:write"}),
    "files.completeUploadExternal": frozenset({"files:write"}),
    "files.delete": frozenset({"files:write"}),  # erasure on request: the bot deletes files it uploaded
    "reactions.add": frozenset({"reactions:write"}),
    "reactions.remove": frozenset({"reactions:write"}),
    "users.info": frozenset({"users:read"}),
    "usergroups.users.list": frozenset({"usergroups:read"}),
    "usergroups.list": frozenset({"usergroups:read"}),
    # channels:read for public channels, groups:read for private ones (Slack: conversations.info).
    "conversations.info": frozenset({"channels:read", "groups:read"}),
    "views.open": frozenset(),
    "views.update": frozenset(),
    "views.push": frozenset(),
    "views.publish": frozenset(),  # the Home tab
    "chat.getPermalink": frozenset(),  # links to threads on the Home tab
}
# chat.postMessage's username / icon_url / icon_emoji need chat:write.customize (Slack: scopes/chat:write.customize).
CUSTOMIZE_ARGS = ("username", "icon_url", "icon_emoji")
CUSTOMIZABLE_METHODS = frozenset({"chat.postMessage", "chat.scheduleMessage"})
# Events API: the scope each bot event needs (Slack: reference/events/<event>).
EVENT_SCOPES: dict[str, str] = {
    "message.channels": "channels:history",
    "message.groups": "groups:history",
    "message.im": "im:history",
    "message.mpim": "mpim:history",
    "app_mention": "app_mentions:read",
    "reaction_added": "reactions:read",
}
# What a bolt listener on an event type subscribes to: Wabridge bridges public and private channels, not DMs.
BOLT_EVENT_SUBSCRIPTIONS: dict[str, tuple[str, ...]] = {"message": ("message.channels", "message.groups")}
INTERACTIVE_LISTENERS = frozenset({"action", "block_action", "view", "view_submission", "view_closed", "options",
                                   "shortcut", "global_shortcut", "message_shortcut"})
SHORTCUT_LISTENERS = frozenset({"shortcut", "global_shortcut", "message_shortcut"})
EVENT_LISTENERS = frozenset({"event", "message"})


# ---- reading the source ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Call:
    """One Slack Web API method called somewhere in the source."""

    method: str
    where: str
    customized: bool = False


@dataclass
class SourceFacts:
    """What the code does with Slack, read statically."""

    calls: list[Call] = field(default_factory=list)
    unresolved: list[str] = field(default_factory=list)  # `api_call(x)` with a non-literal method
    downloads_private_files: list[str] = field(default_factory=list)
    commands: dict[str, str] = field(default_factory=dict)  # "/campaign" -> where
    shortcuts: dict[str, str] = field(default_factory=dict)  # callback_id -> where
    events: dict[str, str] = field(default_factory=dict)  # event type -> where
    interactive: list[str] = field(default_factory=list)


@cache
def sdk_methods(attr: str) -> tuple[str, ...]:
    """The Web API methods one AsyncWebClient method calls (helpers such as files_upload_v2 call several)."""
    fn = getattr(AsyncWebClient, attr, None)
    if attr.startswith("_") or attr == "api_call" or not callable(fn):
        return ()
    try:
        src = inspect.getsource(fn)
    except (OSError, TypeError):
        return ()
    found = list(dict.fromkeys(re.findall(r'api_call\(\s*"([^"]+)"', src)))
    if not found:
        for inner in dict.fromkeys(re.findall(r"self\.([a-z]+_[A-Za-z0-9_]+)\(", src)):
            if inner != attr:
                found.extend(sdk_methods(inner))
    return tuple(dict.fromkeys(found))


def _module_name(rel: str) -> str:
    return rel.removesuffix(".py").removesuffix("/__init__").replace("/", ".")


def _string_constants(tree: ast.Module) -> dict[str, str]:
    out: dict[str, str] = {}
    for node in tree.body:
        targets: list[ast.expr] = []
        value: ast.expr | None = None
        if isinstance(node, ast.Assign):
            targets, value = list(node.targets), node.value
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            targets, value = [node.target], node.value
        if isinstance(value, ast.Constant) and isinstance(value.value, str):
            for t in targets:
                if isinstance(t, ast.Name):
                    out[t.id] = value.value
    return out


def _imports(tree: ast.Module) -> dict[str, tuple[str, str]]:
    out: dict[str, tuple[str, str]] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            for alias in node.names:
                out[alias.asname or alias.name] = (node.module, alias.name)
    return out


def _literal(arg: ast.expr, module: str, constants: Mapping[str, Mapping[str, str]],
             imports: Mapping[str, tuple[str, str]]) -> str | None:
    if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
        return arg.value
    if isinstance(arg, ast.Dict):  # bolt.event({"type": "message", ...})
        for k, v in zip(arg.keys, arg.values, strict=True):
            if isinstance(k, ast.Constant) and k.value == "type":
                return _literal(v, module, constants, imports)
        return None
    if isinstance(arg, ast.Name):
        if arg.id in constants.get(module, {}):
            return constants[module][arg.id]
        if arg.id in imports:
            src_module, name = imports[arg.id]
            return constants.get(src_module, {}).get(name)
    return None


def _is_customized(call: ast.Call, func: ast.AST | None) -> bool:
    if any(k.arg in CUSTOMIZE_ARGS for k in call.keywords):
        return True
    # `args["username"] = …` then `chat_postMessage(**args)` in the same function
    if func is None:
        return False
    for node in ast.walk(func):
        if isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant) \
                and node.slice.value in CUSTOMIZE_ARGS and isinstance(node.ctx, ast.Store):
            return True
    return False


def scan(sources: Mapping[str, str]) -> SourceFacts:
    """Read Slack usage from {relative path: source text}."""
    trees = {rel: ast.parse(text, filename=rel) for rel, text in sources.items()}
    constants = {_module_name(rel): _string_constants(tree) for rel, tree in trees.items()}
    facts = SourceFacts()
    for rel, tree in trees.items():
        module, imports = _module_name(rel), _imports(tree)
        uses_bolt = "slack_bolt" in sources[rel]
        if "url_private" in sources[rel]:
            facts.downloads_private_files.append(rel)
        parents: dict[ast.AST, ast.AST] = {}
        for node in ast.walk(tree):
            for child in ast.iter_child_nodes(node):
                parents[child] = node
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
                continue
            attr, where = node.func.attr, f"{rel}:{node.lineno}"
            enclosing: ast.AST | None = parents.get(node)
            while enclosing is not None and not isinstance(enclosing, ast.FunctionDef | ast.AsyncFunctionDef):
                enclosing = parents.get(enclosing)
            if attr == "api_call":
                if isinstance(enclosing, ast.AsyncFunctionDef | ast.FunctionDef) and enclosing.name == "api_call":
                    continue  # a client subclass passing every method through (bot/slack/client.py): no call site
                name = _literal(node.args[0], module, constants, imports) if node.args else None
                if name is None:
                    facts.unresolved.append(where)
                else:
                    facts.calls.append(Call(name, where, _is_customized(node, enclosing)))
                continue
            methods = sdk_methods(attr)
            for method in methods:
                facts.calls.append(Call(method, where, _is_customized(node, enclosing)))
            if methods or not uses_bolt:
                continue
            if attr in INTERACTIVE_LISTENERS | EVENT_LISTENERS | {"command"}:
                value = _literal(node.args[0], module, constants, imports) if node.args else None
                if attr == "message":
                    value = "message"  # bolt.message(keyword) listens to message events
                if value is None:
                    facts.unresolved.append(where)
                    continue
                if attr == "command":
                    facts.commands[value] = where
                elif attr in SHORTCUT_LISTENERS:
                    facts.shortcuts[value] = where
                elif attr in EVENT_LISTENERS:
                    facts.events[value] = where
                if attr in INTERACTIVE_LISTENERS:
                    facts.interactive.append(where)
    return facts


def read_sources(root: Path = ROOT) -> dict[str, str]:
    out: dict[str, str] = {}
    for top in SCANNED:
        for path in sorted((root / top).rglob("*.py")):
            rel = path.relative_to(root).as_posix()
            if not rel.startswith(NOT_SCANNED):
                out[rel] = path.read_text(encoding="utf-8")
    return out


# ---- what the code needs ------------------------------------------------------------------------------


def unknown_methods(facts: SourceFacts) -> dict[str, list[str]]:
    """Methods the code calls that METHOD_SCOPES does not describe, with where."""
    out: dict[str, list[str]] = {}
    for c in facts.calls:
        if c.method not in METHOD_SCOPES:
            out.setdefault(c.method, []).append(c.where)
    return out


def subscribed_events(facts: SourceFacts) -> set[str]:
    out: set[str] = set()
    for event in facts.events:
        out.update(BOLT_EVENT_SUBSCRIPTIONS.get(event, (event,)))
    return out


def needed_scopes(facts: SourceFacts) -> dict[str, list[str]]:
    """Every bot scope the code needs, with the reasons (where)."""
    need: dict[str, list[str]] = {}

    def add(scope: str, why: str) -> None:
        need.setdefault(scope, []).append(why)

    for c in facts.calls:
        for scope in METHOD_SCOPES.get(c.method, ()):
            add(scope, f"{c.method} at {c.where}")
        if c.customized and c.method in CUSTOMIZABLE_METHODS:
            add("chat:write.customize", f"{c.method} with a custom username/icon at {c.where}")
    for rel in facts.downloads_private_files:
        add("files:read", f"url_private download in {rel}")
    for event in sorted(subscribed_events(facts)):
        if event in EVENT_SCOPES:
            add(EVENT_SCOPES[event], f"event {event}")
    for name, where in [*facts.commands.items(), *facts.shortcuts.items()]:
        add("commands", f"{name} at {where}")
    return need


def missing_scopes(need: Mapping[str, Iterable[str]], granted: Iterable[str]) -> dict[str, list[str]]:
    have = set(granted)
    return {scope: list(why) for scope, why in need.items() if scope not in have}


# ---- the manifest ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def manifest() -> dict[str, Any]:
    data = yaml.safe_load(MANIFEST.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


@pytest.fixture(scope="module")
def facts() -> SourceFacts:
    return scan(read_sources())


def bot_scopes(manifest: Mapping[str, Any]) -> list[str]:
    return list(manifest["oauth_config"]["scopes"]["bot"])


def manifest_urls(manifest: Mapping[str, Any]) -> dict[str, str]:
    settings, features = manifest["settings"], manifest["features"]
    urls = {"event_subscriptions.request_url": settings["event_subscriptions"]["request_url"],
            "interactivity.request_url": settings["interactivity"]["request_url"]}
    if "message_menu_options_url" in settings["interactivity"]:
        urls["interactivity.message_menu_options_url"] = settings["interactivity"]["message_menu_options_url"]
    for cmd in features.get("slash_commands") or []:
        urls[f"slash_commands[{cmd['command']}].url"] = cmd["url"]
    return urls


def test_manifest_follows_schema_v2_limits(manifest: dict[str, Any]) -> None:
    assert manifest["_metadata"]["major_version"] == 2
    assert set(manifest) <= {"_metadata", "display_information", "features", "oauth_config", "settings"}
    display = manifest["display_information"]
    assert 1 <= len(display["name"]) <= 35 and 1 <= len(display["description"]) <= 140
    features = manifest["features"]
    assert set(features) <= {"app_home", "bot_user", "shortcuts", "slash_commands", "unfurl_domains"}
    assert 1 <= len(features["bot_user"]["display_name"]) <= 80
    for sc in features["shortcuts"]:
        assert set(sc) == {"name", "type", "callback_id", "description"}, sc
        assert 1 <= len(sc["name"]) <= 24 and 1 <= len(sc["description"]) <= 150 and len(sc["callback_id"]) <= 255
        assert sc["type"] in ("message", "global")
    for cmd in features["slash_commands"]:
        assert set(cmd) <= {"command", "url", "description", "usage_hint", "should_escape"}, cmd
        assert re.fullmatch(r"/[a-z0-9_-]{1,31}", cmd["command"]), cmd["command"]
        assert 1 <= len(cmd["description"]) <= 2000 and len(cmd.get("usage_hint", "")) <= 1000
    scopes = bot_scopes(manifest)
    assert len(scopes) == len(set(scopes)), "a bot scope is listed twice"
    assert set(manifest["settings"]) <= {"event_subscriptions", "interactivity", "org_deploy_enabled",
                                         "socket_mode_enabled", "token_rotation_enabled", "allowed_ip_address_ranges",
                                         "incoming_webhooks"}
    assert manifest["settings"]["socket_mode_enabled"] is False, "production uses HTTP; Socket Mode is for development"


def test_every_slack_method_the_code_calls_has_a_scope_entry(facts: SourceFacts) -> None:
    assert facts.calls, "no Slack calls found: the scan is broken"
    assert not facts.unresolved, f"Slack method or listener names that are not literals: {facts.unresolved}"
    unknown = unknown_methods(facts)
    assert not unknown, ("the code calls Slack methods METHOD_SCOPES does not describe; look up their scopes on "
                         f"docs.slack.dev/reference/methods and add them here and to the manifest: {unknown}")


def test_manifest_grants_every_scope_the_code_needs(manifest: dict[str, Any], facts: SourceFacts) -> None:
    missing = missing_scopes(needed_scopes(facts), bot_scopes(manifest))
    assert not missing, f"slack-manifest.yaml lacks scopes the code needs: {missing}"


def test_manifest_asks_for_no_scope_the_code_does_not_use(manifest: dict[str, Any], facts: SourceFacts) -> None:
    unused = set(bot_scopes(manifest)) - set(needed_scopes(facts))
    assert not unused, f"slack-manifest.yaml asks for scopes nothing uses: {sorted(unused)}"


def test_doctor_checks_the_scopes_the_manifest_grants(manifest: dict[str, Any]) -> None:
    from bot.ops import doctor

    checked = set(doctor.REQUIRED_SLACK_SCOPES) | set(getattr(doctor, "USEFUL_SLACK_SCOPES", ()))
    assert checked == set(bot_scopes(manifest))


def test_bot_events_are_those_the_listeners_need(manifest: dict[str, Any], facts: SourceFacts) -> None:
    assert "message" in facts.events, "the thread-reply listener was not found"
    assert set(manifest["settings"]["event_subscriptions"]["bot_events"]) == subscribed_events(facts)


def test_shortcuts_in_the_manifest_are_the_ones_the_code_handles(manifest: dict[str, Any],
                                                                  facts: SourceFacts) -> None:
    listed = {sc["callback_id"]: sc for sc in manifest["features"]["shortcuts"]}
    assert set(listed) == set(facts.shortcuts), (sorted(listed), facts.shortcuts)
    # the handlers read body["message"] and body["channel"], which only message shortcuts carry
    assert all(sc["type"] == "message" for sc in listed.values())
    names = {sc["name"] for sc in listed.values()}
    assert names == {"Send template", "Saved reply", "Mark opted out / in", "Export thread",
                     "Export customer data", "Erase customer data"}


def test_slash_commands_in_the_manifest_are_the_ones_the_code_handles(manifest: dict[str, Any],
                                                                      facts: SourceFacts) -> None:
    listed = {cmd["command"] for cmd in manifest["features"]["slash_commands"]}
    assert listed == {"/campaign", "/wabridge"}
    unlisted = set(facts.commands) - listed
    assert not unlisted, f"commands registered in code but missing from the manifest: {unlisted}"
    if not facts.commands:
        pytest.xfail("no bolt listener registers /campaign yet")
    assert listed == set(facts.commands)


def test_interactivity_is_on_because_the_code_has_interactive_listeners(manifest: dict[str, Any],
                                                                        facts: SourceFacts) -> None:
    assert facts.interactive
    assert manifest["settings"]["interactivity"]["is_enabled"] is True


def test_every_request_url_is_the_bolt_route_the_app_mounts(manifest: dict[str, Any]) -> None:
    from bot.app.factory import create_app
    from bot.app.slack_component import make_slack_component
    from bot.core.config import parse_settings

    settings = parse_settings({"meta": {"app_secret": "s", "verify_token": "t"},
                               "slack": {"bot_token": "xoxb-1", "signing_secret": "s"}}, env={})
    app = create_app(settings, run_migrations=False, workers=False, components=[make_slack_component(outbox=False)])
    posts = {r.resource.canonical for r in app.router.routes() if r.method == "POST" and r.resource is not None}
    assert BOLT_ROUTE in posts
    for key, url in manifest_urls(manifest).items():
        parts = urlsplit(url)
        assert (parts.scheme, parts.netloc, parts.path) == ("https", PLACEHOLDER_HOST, BOLT_ROUTE), (key, url)


# ---- the checks themselves can fail --------------------------------------------------------------------------

SYNTHETIC = '''
from slack_bolt.async_app import AsyncApp
PIN = "pins.add"
SHORTCUT = "wabridge_pin"

async def post(client, text):
    args = {"channel": "C1", "text": text}
    args["icon_emoji"] = ":phone:"
    await client.chat_postMessage(**args)
    await client.api_call(PIN, json={"channel": "C1"})
    await client.files_upload_v2(channel="C1", content="x", filename="x.txt")

def register(bolt: AsyncApp) -> None:
    bolt.shortcut(SHORTCUT)(post)
    bolt.command("/pin")(post)
    bolt.event("message")(post)
'''


def test_scan_finds_sdk_helpers_api_calls_listeners_and_custom_names() -> None:
    facts = scan({"bot/synthetic.py": SYNTHETIC})
    methods = {c.method for c in facts.calls}
    assert methods == {"chat.postMessage", "pins.add", "files.getUploadURLExternal", "files.completeUploadExternal"}
    assert any(c.customized for c in facts.calls if c.method == "chat.postMessage")
    assert set(facts.shortcuts) == {"wabridge_pin"} and set(facts.commands) == {"/pin"}
    assert subscribed_events(facts) == {"message.channels", "message.groups"}


def test_scan_reports_a_method_without_a_scope_entry_and_a_missing_scope() -> None:
    facts = scan({"bot/synthetic.py": SYNTHETIC})
    assert set(unknown_methods(facts)) == {"pins.add"}
    need = needed_scopes(facts)
    granted = ["chat:write", "files:write", "commands", "channels:history", "groups:history"]
    assert set(missing_scopes(need, granted)) == {"chat:write.customize"}
    assert not missing_scopes(need, [*granted, "chat:write.customize"])


def test_scan_flags_a_listener_name_it_cannot_resolve() -> None:
    source = "from slack_bolt.async_app import AsyncApp\ndef r(bolt, name):\n    bolt.shortcut(name)(print)\n"
    assert scan({"bot/x.py": source}).unresolved == ["bot/x.py:3"]
