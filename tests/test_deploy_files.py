"""Dockerfile, compose.yaml and .dockerignore are wired to the app as it is: read, never built.

Docker cannot run here, so these checks read the files: the environment compose passes makes app.yaml
load (every required secret set, nothing unknown), the URLs point at compose services, health checks hit a
route the app serves, start order waits for the database, and the image installs every package.
"""

from __future__ import annotations

import fnmatch
import json
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from bot.core.config import Settings, parse_settings

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = ROOT / "compose.yaml"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
APP_YAML = ROOT / "app.yaml"
SERVE_CMD = ["wabridge", "serve", "--config", "/app/app.yaml"]
WABRIDGE_SERVICES = ("migrate", "app")
# What an operator's .env holds; values are placeholders, the point is which names compose needs.
DOTENV = {"POSTGRES_PASSWORD": "pw", "META_APP_SECRET": "app-secret", "META_VERIFY_TOKEN": "verify",
          "SLACK_BOT_TOKEN": "xoxb-1", "SLACK_SIGNING_SECRET": "signing", "PUBLIC_HOST": "wa.example.com",
          "WA_TOKEN_LUCKNOW": "EAAG-lucknow"}

_COMPOSE_VAR = re.compile(r"\$(?:\$|\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?P<op>:?[-?])?(?P<arg>[^}]*)\}|"
                          r"(?P<bare>[A-Za-z_][A-Za-z0-9_]*))")
_APP_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(:-[^}]*)?\}")


class MissingVariable(Exception):
    """A ${VAR:?message} with VAR unset: compose refuses to start."""


def interpolate_compose(text: str, env: Mapping[str, str]) -> str:
    """Compose's interpolation: ${V}, ${V:-d}, ${V-d}, ${V:?msg}, ${V?msg}, $V and $$."""

    def repl(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        name = m.group("name") or m.group("bare")
        op, arg = m.group("op") or "", m.group("arg") or ""
        value = env.get(name)
        empty = value is None or (op.startswith(":") and value == "")
        if op.endswith("-") and empty:
            return arg
        if op.endswith("?") and empty:
            raise MissingVariable(f"{name}: {arg}")
        return value or ""

    return _COMPOSE_VAR.sub(repl, text)


def load_compose(env: Mapping[str, str] = DOTENV) -> dict[str, Any]:
    data = yaml.safe_load(interpolate_compose(COMPOSE.read_text(encoding="utf-8"), env))
    assert isinstance(data, dict)
    return data


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return load_compose()


def service_env(service: Mapping[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {str(k): "" if v is None else str(v) for k, v in env.items()}


def settings_in(compose: Mapping[str, Any], name: str) -> Settings:
    raw = yaml.safe_load(APP_YAML.read_text(encoding="utf-8"))
    return parse_settings(raw, env=service_env(compose["services"][name]))


def app_yaml_variables() -> dict[str, bool]:
    """Every ${VAR} in app.yaml's values (comments aside), and whether it has a default."""
    out: dict[str, bool] = {}

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)
        elif isinstance(node, str):
            for m in _APP_VAR.finditer(node):
                out[m.group(1)] = out.get(m.group(1), False) or m.group(2) is not None

    walk(yaml.safe_load(APP_YAML.read_text(encoding="utf-8")))
    return out


def process_env_names() -> set[str]:
    """Environment variables the code reads itself (not through app.yaml)."""
    names: set[str] = set()
    for path in (ROOT / "bot").rglob("*.py"):
        names.update(re.findall(r"os\.environ(?:\.get)?[\[(]\s*\"([A-Z0-9_]+)\"", path.read_text(encoding="utf-8")))
    return names


def app_routes() -> set[tuple[str, str]]:
    from bot.app.components import default_components
    from bot.app.factory import create_app

    settings = parse_settings({"meta": {"app_secret": "s", "verify_token": "t"},
                               "slack": {"bot_token": "xoxb-1", "signing_secret": "s"}}, env={})
    app = create_app(settings, run_migrations=False, workers=False, components=default_components(settings))
    return {(r.method, r.resource.canonical) for r in app.router.routes() if r.resource is not None}


def healthcheck_url(test: list[str] | str) -> str:
    text = " ".join(test) if isinstance(test, list) else test
    m = re.search(r"https?://[^'\" ]+", text)
    assert m, f"no URL in health check {test!r}"
    return m.group(0)


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = DOCKERFILE.read_text(encoding="utf-8").replace("\\\n", " ")
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            op, _, rest = line.partition(" ")
            out.append((op.upper(), rest.strip()))
    return out


# ---- compose --------------------------------------------------------------------------------------


def test_compose_runs_postgres_16_redis_7_and_several_serve_replicas(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert services["postgres"]["image"].split(":")[1].split(".")[0] == "16"
    assert services["redis"]["image"].split(":")[1].split(".")[0] == "7"
    app = services["app"]
    assert app["command"] == [*SERVE_CMD, "--no-migrate"]
    assert app["deploy"]["replicas"] >= 2
    assert "container_name" not in app and "ports" not in app, "replicas cannot share a name or a host port"


def test_compose_env_makes_app_yaml_load_with_postgres_and_redis_services(compose: dict[str, Any]) -> None:
    for name in WABRIDGE_SERVICES:
        settings = settings_in(compose, name)
        db, redis = urlsplit(settings.database_url), urlsplit(settings.redis_url)
        assert db.scheme == "postgresql+asyncpg" and db.hostname in compose["services"], settings.database_url
        assert redis.scheme == "redis" and redis.hostname in compose["services"], settings.redis_url
        pg_env = service_env(compose["services"][db.hostname])
        assert (db.username, db.password, db.path.lstrip("/")) == (
            pg_env["POSTGRES_USER"], pg_env["POSTGRES_PASSWORD"], pg_env["POSTGRES_DB"])
        assert settings.meta.app_secret == DOTENV["META_APP_SECRET"]
        assert settings.slack.bot_token == DOTENV["SLACK_BOT_TOKEN"]


def test_compose_passes_only_variables_the_app_reads(compose: dict[str, Any]) -> None:
    known = set(app_yaml_variables()) | process_env_names()
    for name in WABRIDGE_SERVICES:
        unknown = set(service_env(compose["services"][name])) - known
        assert not unknown, f"{name} sets variables neither app.yaml nor the code reads: {sorted(unknown)}"


def test_compose_sets_every_secret_app_yaml_requires(compose: dict[str, Any]) -> None:
    required = {name for name, has_default in app_yaml_variables().items() if not has_default}
    assert required, "app.yaml has no required secrets: the check reads it wrongly"
    for name in WABRIDGE_SERVICES:
        assert required <= set(service_env(compose["services"][name]))


@pytest.mark.parametrize("secret", ["POSTGRES_PASSWORD", "META_APP_SECRET", "META_VERIFY_TOKEN", "SLACK_BOT_TOKEN",
                                    "SLACK_SIGNING_SECRET", "PUBLIC_HOST"])
def test_compose_refuses_to_start_without_a_secret(secret: str) -> None:
    env = {k: v for k, v in DOTENV.items() if k != secret}
    with pytest.raises(MissingVariable, match=secret):
        load_compose(env)


def test_compose_waits_for_healthy_database_and_redis_and_migrates_once(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name in ("postgres", "redis"):
        assert services[name]["healthcheck"]["test"], name
    assert services["migrate"]["command"] == ["wabridge", "migrate", "--config", "/app/app.yaml"]
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    deps = services["app"]["depends_on"]
    assert deps["postgres"]["condition"] == deps["redis"]["condition"] == "service_healthy"
    assert deps["migrate"]["condition"] == "service_completed_successfully"
    assert services["caddy"]["depends_on"]["app"]["condition"] == "service_healthy"


def test_health_checks_hit_the_healthz_route_on_the_configured_port(compose: dict[str, Any]) -> None:
    routes = app_routes()
    port = settings_in(compose, "app").server.port
    urls = [healthcheck_url(compose["services"]["app"]["healthcheck"]["test"])]
    urls += [healthcheck_url(rest) for op, rest in dockerfile_instructions() if op == "HEALTHCHECK"]
    assert len(urls) == 2
    for url in urls:
        parts = urlsplit(url)
        assert parts.port == port and ("GET", parts.path) in routes, url
    assert ("GET", "/healthz") in routes


def test_proxy_sends_webhooks_and_slack_to_the_app_port(compose: dict[str, Any]) -> None:
    caddyfile = compose["configs"]["caddyfile"]["content"]
    assert "{$PUBLIC_HOST}" in caddyfile, "Compose must leave Caddy's own placeholder alone ($$)"
    assert re.search(r"name app\b", caddyfile) and re.search(r"port (\d+)", caddyfile)
    port = int(re.search(r"port (\d+)", caddyfile).group(1))  # type: ignore[union-attr]
    assert port == settings_in(compose, "app").server.port
    assert str(port) in compose["services"]["app"]["expose"]
    routes = app_routes()
    assert {("GET", "/webhooks/meta"), ("POST", "/webhooks/meta"), ("POST", "/slack/events")} <= routes
    assert service_env(compose["services"]["caddy"])["PUBLIC_HOST"] == DOTENV["PUBLIC_HOST"]
    # Prometheus metrics are for the private network only
    matcher = re.search(r"@(\w+) path /metrics\b", caddyfile)
    assert matcher and re.search(rf"respond @{matcher.group(1)} 404", caddyfile)


# ---- Dockerfile and .dockerignore -------------------------------------------------------------------


def test_dockerfile_builds_from_python_311_slim_and_runs_serve_as_non_root() -> None:
    steps = dockerfile_instructions()
    assert steps[0] == ("FROM", "python:3.11-slim")
    users = [rest for op, rest in steps if op == "USER"]
    assert users and users[-1] not in ("root", "0")
    cmd = [rest for op, rest in steps if op == "CMD"]
    assert [json.loads(c) for c in cmd] == [SERVE_CMD]
    assert any(op == "EXPOSE" and rest == "8080" for op, rest in steps)
    assert any(op == "RUN" and "pip install ." in rest for op, rest in steps)


def test_dockerfile_copies_every_package_pyproject_installs() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    packages = {p.rstrip("*") for p in project["tool"]["setuptools"]["packages"]["find"]["include"]}
    copied = {Path(rest.split()[0]).name for op, rest in dockerfile_instructions() if op == "COPY"}
    copied |= {Path(src).name for op, rest in dockerfile_instructions() if op == "COPY" for src in rest.split()[:-1]}
    needed = packages | {"pyproject.toml", project["project"]["readme"], "app.yaml"}
    assert needed <= copied, f"not copied into the image: {sorted(needed - copied)}"


def test_dockerignore_keeps_secrets_out_and_the_sources_in() -> None:
    patterns = [p.strip() for p in DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
                if p.strip() and not p.startswith("#")]

    def ignored(name: str) -> bool:
        return any(fnmatch.fnmatch(name, p.removeprefix("**/")) for p in patterns)

    for kept in ("bot", "scheduler", "storage", "pyproject.toml", "README.md", "app.yaml"):
        assert not ignored(kept), kept
    for dropped in (".env", ".env.production", ".git", ".venv", "wabridge.db", "wabridge.egg-info"):
        assert ignored(dropped), dropped


def test_compose_interpolation_follows_compose_rules() -> None:
    env = {"SET": "v", "EMPTY": ""}
    assert interpolate_compose("${SET} ${EMPTY:-d} ${EMPTY-d} ${UNSET-d} $$SET $SET", env) == "v d  d $SET v"
    with pytest.raises(MissingVariable):
        interpolate_compose("${EMPTY:?need it}", env)
    assert interpolate_compose("${EMPTY?need it}", env) == ""


def test_env_example_names_every_variable_compose_reads() -> None:
    example = (ROOT / ".env.example").read_text(encoding="utf-8")
    names = {line.split("=", 1)[0] for line in example.splitlines() if line and not line.startswith("#")}
    read = {m.group("name") for m in _COMPOSE_VAR.finditer(COMPOSE.read_text(encoding="utf-8")) if m.group("name")}
    assert read == names, (read - names, names - read)
    assert set(DOTENV) <= names


OPERATOR_DOCS = ("README.md", "CHANGELOG.md", "CONTRIBUTING.md", "docs/deployment.md", "docs/meta-setup.md",
                 "docs/slack-setup.md", "docs/onboarding.md", "docs/insights.md")


@pytest.mark.parametrize("doc", OPERATOR_DOCS)
def test_operator_docs_use_the_wabridge_command_and_cite_no_commits(doc: str) -> None:
    text = (ROOT / doc).read_text(encoding="utf-8")
    assert "python -m bot" not in text
    commits = re.findall(r"(?<![\w/.-])[0-9a-f]{7,40}(?![\w-])", text)
    assert not [c for c in commits if not c.isdigit()], commits

