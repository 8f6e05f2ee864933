"""Reading app.yaml: ${VAR} and ${VAR:-default} from the environment, unset secrets told apart from bad keys,
and the first validation error named by its key."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import (
    ValidationError,
)

from bot.core.config.errors import EVERY_SECRET, ONE_WORKSPACE_SECRETS, SECRETS, ConfigError, Need
from bot.core.config.settings import Settings

_VAR = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::-(?P<default>[^}]*))?\}")


class _Missing:
    """Marks a ${VAR} with no value and no default; reported only if the key is actually required."""

    def __init__(self, var: str) -> None:
        self.var = var


def interpolate(value: Any, env: Mapping[str, str], path: str = "") -> Any:
    """Replace ${VAR} / ${VAR:-default} in every string of a loaded YAML tree."""
    if isinstance(value, dict):
        return {k: interpolate(v, env, f"{path}.{k}" if path else str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env, f"{path}[{i}]") for i, v in enumerate(value)]
    if not isinstance(value, str):
        return value

    whole = _VAR.fullmatch(value)
    if whole:
        name, default = whole.group("name"), whole.group("default")
        if name in env:
            return env[name]
        if default is not None:
            return default
        return _Missing(name)

    def repl(m: re.Match[str]) -> str:
        name, default = m.group("name"), m.group("default")
        if name in env:
            return env[name]
        if default is not None:
            return default
        raise ConfigError(path, f"environment variable {name} is not set")

    return _VAR.sub(repl, value)


def _group(path: str) -> Need:
    return Need.CHANNELS if path.startswith("channels[") else Need(path.split(".", 1)[0])


def _put(tree: dict[str, Any], path: str, value: str) -> None:
    """Set a secret's dotted path (meta.x, slack.x, channels[i].x) in a loaded tree, creating its section."""
    node: Any = tree
    parts = re.split(r"\.|(?=\[)", path)
    for part in parts[:-1]:
        if part.startswith("["):
            node = node[int(part[1:-1])]
        else:
            if node.get(part) is None:
                node[part] = {}
            elif not isinstance(node[part], dict | list):
                return  # a section of the wrong type: the model names it
            node = node[part]
    node[parts[-1]] = value


def _env_vars(raw: Any, path: str = "") -> dict[str, str]:
    """Every key whose whole value is ${VAR} or ${VAR:-default}, with the variable's name."""
    if isinstance(raw, dict):
        return {k: v for key, value in raw.items()
                for k, v in _env_vars(value, f"{path}.{key}" if path else str(key)).items()}
    if isinstance(raw, list):
        return {k: v for i, value in enumerate(raw) for k, v in _env_vars(value, f"{path}[{i}]").items()}
    whole = _VAR.fullmatch(raw) if isinstance(raw, str) else None
    return {path: whole.group("name")} if whole else {}


def _at(tree: Any, path: str) -> Any:
    """The value at a dotted path such as channels[0].access_token, or None."""
    node: Any = tree
    for part in re.split(r"\.|(?=\[)", path):
        if part.startswith("["):
            index = int(part[1:-1])
            node = node[index] if isinstance(node, list) and index < len(node) else None
        else:
            node = node.get(part) if isinstance(node, dict) else None
    return node


def _unset_secrets(raw: Any, tree: Any) -> list[tuple[str, str]]:
    """Every secret that is absent or empty: (key, `key (export VAR)` where the file names a variable)."""
    client_id = _at(tree, "slack.client_id")
    many = isinstance(client_id, str) and bool(client_id.strip())
    paths = [p for p in SECRETS if not (many and p in ONE_WORKSPACE_SECRETS)]
    channels = tree.get("channels") if isinstance(tree, dict) else None
    if isinstance(channels, list):
        paths += [f"channels[{i}].access_token" for i, ch in enumerate(channels) if isinstance(ch, dict)]
    unset: list[tuple[str, str]] = []
    for path in paths:
        node = _at(tree, path)
        if isinstance(node, str) and node.strip():
            continue
        if node is not None and not isinstance(node, str):
            continue  # a wrong type: the model names it
        written = _at(raw, path)
        var = _VAR.fullmatch(written) if isinstance(written, str) else None
        unset.append((path, f"{path} (export {var.group('name')})" if var else path))
    return unset


# A validator's message may start with the key it is about ("channels[0].slack_team: …"): that key is named.
_KEY_PATH = re.compile(r"[a-z_]+(\[\d+\])?(\.[a-z_]+(\[\d+\])?)+|channels\[\d+\]\.[a-z_]+")


def _first_error(exc: ValidationError) -> ConfigError:
    err = exc.errors()[0]
    loc = ".".join(
        f"[{p}]" if isinstance(p, int) else str(p) for p in err["loc"]
    ).replace(".[", "[")
    msg = err["msg"]
    if err["type"] == "missing":
        return ConfigError(loc, "required key is missing")
    if err["type"] == "extra_forbidden":
        return ConfigError(loc, "unknown key")
    if msg.startswith("Value error, "):
        text = msg.removeprefix("Value error, ")
        if ": " in text and _KEY_PATH.fullmatch(text.split(": ", 1)[0]):
            key, text = text.split(": ", 1)
            return ConfigError(key, text)
        return ConfigError(loc, text)
    return ConfigError(loc, msg)


def _strip_missing(tree: Any) -> tuple[Any, dict[str, str]]:
    missing: dict[str, str] = {}

    def walk(node: Any, path: str) -> Any:
        if isinstance(node, dict):
            out = {}
            for k, v in node.items():
                p = f"{path}.{k}" if path else str(k)
                if isinstance(v, _Missing):
                    missing[p] = v.var
                    continue
                out[k] = walk(v, p)
            return out
        if isinstance(node, list):
            return [walk(v, f"{path}[{i}]") for i, v in enumerate(node)]
        return node

    return walk(tree, ""), missing


def parse_settings(raw: Any, env: Mapping[str, str] | None = None, *,
                   needs: frozenset[Need] = EVERY_SECRET) -> Settings:
    """Validate a loaded YAML tree into Settings; ConfigError names the first bad key.

    Only the secrets of `needs` must be set; the others may be unset (they read as "" and are listed in
    `unset_secrets`), so a command that never talks to Meta or Slack runs without their secrets."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError("(top)", "the config must be a mapping of keys")
    tree = interpolate(raw, os.environ if env is None else env)
    tree, missing = _strip_missing(tree)
    unset = _unset_secrets(raw, tree)
    refused = [text for path, text in unset if _group(path) in needs]
    if refused:
        raise ConfigError("secrets", "not set or empty: " + ", ".join(refused))
    for path, _ in unset:
        _put(tree, path, "")
    try:
        settings = Settings.model_validate(tree, context={"needs": needs})
    except ValidationError as exc:
        err = _first_error(exc)
        if err.key in missing:
            err = ConfigError(err.key, f"secret not set: export {missing[err.key]}")
        raise err from None
    settings._unset = [path for path, _ in unset]
    settings._env_vars = _env_vars(raw)
    return settings


def load_settings(path: str | Path, env: Mapping[str, str] | None = None, *,
                  needs: frozenset[Need] = EVERY_SECRET) -> Settings:
    """Read and validate the YAML config file at path (see parse_settings for `needs`)."""
    p = Path(path)
    if not p.exists():
        raise ConfigError(str(p), "config file not found")
    try:
        raw = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        raise ConfigError(str(p), f"not valid YAML{where}") from None
    return parse_settings(raw, env, needs=needs)
