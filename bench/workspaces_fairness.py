"""Workspace fairness: many businesses on one deployment, one of them sending an 80-mps campaign; how long the
others' customers' messages take from the webhook POST to their Slack post.

Run from the repository root:

    .venv/bin/python -m bench.workspaces_fairness              # 100 workspaces x 2 numbers, 15 s
    .venv/bin/python -m bench.workspaces_fairness --quick      # 20 workspaces, 8 s
    .venv/bin/python bench/workspaces_fairness.py --workspaces 10 --rate 10 --seconds 5

`serve` runs in many-workspace mode (slack.client_id) on a fresh PostgreSQL database with a private Redis, the
stand-ins in a process of their own. Every workspace is installed beforehand, straight into the installation
store (sealed, as the OAuth flow stores it): the Slack stand-in of the benchmarks knows one bot token, so every
workspace's installation carries it; the bridge still resolves a token per workspace for every post, which is
the work measured. Workspace 0's first number (Cloud API, 80 mps) sends a campaign of `80 x seconds` recipients
while the stand-in answers every send with sent/delivered/read webhooks (a status storm in workspace 0); at the
same time customers write to the other workspaces' numbers at `--rate` messages a second, each to a number of
its own in turn. Target: their p99 below 300 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
import threading
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import aiohttp
import yaml

from bench import _common
from bench.campaign_throughput import write_audience
from tests.helpers import BOT_TOKEN, inbound_text, signed

TARGET_P99_MS = 300.0
SETTLE_TIMEOUT = 60.0
CAMPAIGN_MPS = 80
CLIENT_ID = "111.222"
PNID_BASE = 110000000000000


def team(n: int) -> str:
    return f"T0W{n:04d}"


def number(n: int, k: int) -> str:
    """phone_number_id of workspace n's k-th number (k = 0, 1)."""
    return str(PNID_BASE + n * 10 + k)


def write_config(path: Path, *, workspaces: int, db_url: str, redis_url: str, standins: _common.Standins,
                 token_key: str) -> Path:
    """The benchmarks' app.yaml, turned into many-workspace mode: client id, token key, a team per number."""
    channels = [_common.Channel(f"w{n}n{k}", number(n, k), mode="cloud_api" if (n, k) == (0, 0) else "coexistence",
                                mps=CAMPAIGN_MPS if (n, k) == (0, 0) else 5, slack_channel=f"C0W{n:04d}{k}")
                for n in range(workspaces) for k in range(2)]
    _common.write_config(path, database_url=db_url, redis_url=redis_url, graph_url=standins.graph_url,
                         slack_api_url=standins.slack_api_url, channels=channels)
    raw = yaml.safe_load(path.read_text())
    raw["meta"]["token_key"] = token_key
    raw["slack"].pop("bot_token", None)
    raw["slack"].update(client_id=CLIENT_ID, client_secret="bench-client-secret")
    for entry in raw["channels"]:
        entry["slack_team"] = team(int(re.match(r"w(\d+)n", entry["name"]).group(1)))  # type: ignore[union-attr]
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


async def install_all(db_url: str, workspaces: int, token_key: str) -> None:
    """Every workspace installed, as the OAuth flow would have stored it (token sealed) and filed it."""
    from slack_sdk.oauth.installation_store.models.installation import Installation

    from bot.onboarding.crypto import TokenBox
    from storage.db import make_engine, make_sessionmaker
    from storage.installations import SealedInstallationStore
    from storage.workspaces import record_install

    engine = make_engine(db_url)
    store = SealedInstallationStore(CLIENT_ID, engine, TokenBox(token_key))
    try:
        for n in range(workspaces):
            await store.async_save(Installation(app_id="A0STANDIN", enterprise_id=None, team_id=team(n),
                                                team_name=f"Business {n}", bot_token=BOT_TOKEN, bot_id="B0STANDIN",
                                                bot_user_id="U0STANDINBOT", bot_scopes=["chat:write"],
                                                user_id="U0INSTALLER", token_type="bot"))
        async with make_sessionmaker(engine)() as session, session.begin():
            for n in range(workspaces):
                await record_install(session, team(n), enterprise_id=None, name=f"Business {n}")
    finally:
        await engine.dispose()


async def customers(url: str, workspaces: int, rate: float, seconds: float, tag: str
                    ) -> tuple[dict[int, float], int]:
    """Customers of workspaces 1… write open-loop, message i to the (i mod 2(w-1))-th of their numbers."""
    others = [(n, k) for n in range(1, workspaces) for k in range(2)]
    total = max(1, int(rate * seconds))
    base_ts = int(time.time()) - 5
    sent: dict[int, float] = {}
    errors = 0
    bodies = []
    for i in range(total):
        n, k = others[i % len(others)]
        payload = inbound_text(f"wamid.fair.{tag}.{i}", f"question fair-{tag}-{i}", wa_id=f"9198400{i:05d}",
                               name=f"Customer {i}", ts=base_ts)
        payload["entry"][0]["changes"][0]["value"]["metadata"]["phone_number_id"] = number(n, k)
        bodies.append(signed(payload))

    async def one(session: aiohttp.ClientSession, i: int, body: bytes, headers: dict[str, str]) -> None:
        nonlocal errors
        sent[i] = time.monotonic()
        try:
            async with session.post(url, data=body, headers=headers) as resp:
                await resp.read()
                errors += resp.status != 200
        except (aiohttp.ClientError, TimeoutError):
            errors += 1

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=32),
                                     timeout=aiohttp.ClientTimeout(total=10)) as session:
        start = time.monotonic() + 0.01
        tasks = []
        for i, (body, headers) in enumerate(bodies):
            delay = start + i / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(session, i, body, headers)))
        await asyncio.gather(*tasks)
    return sent, errors


def arrivals(standins: _common.Standins, tag: str) -> dict[int, float]:
    marker = re.compile(rf"fair-{re.escape(tag)}-(\d+)\b")
    first: dict[int, float] = {}
    for post in standins.slack_posts():
        if post["ok"]:
            for m in set(marker.findall(post["blob"])):
                first[int(m)] = min(post["t"], first.get(int(m), post["t"]))
    return first


def run(workspaces: int, rate: float, seconds: float, campaign_seconds: float) -> dict[str, object]:
    from bot.onboarding.crypto import new_key

    tag = uuid.uuid4().hex[:6]
    key = new_key()
    recipients = max(2, int(CAMPAIGN_MPS * campaign_seconds))
    with _common.temp_dir("wabridge-bench-fair-") as tmp_name, \
            _common.Standins({number(0, 0): CAMPAIGN_MPS}) as standins, \
            _common.redis_server() as redis_url, _common.pg_database() as db_url:
        tmp = Path(tmp_name)
        config = write_config(tmp / "app.yaml", workspaces=workspaces, db_url=db_url, redis_url=redis_url,
                              standins=standins, token_key=key)
        _common.cli(config, "migrate")
        asyncio.run(install_all(db_url, workspaces, key))
        with _common.Serve(config, log_dir=tmp) as serve:
            standins.send_status_webhooks(f"{serve.url}/webhooks/meta")
            audience = write_audience(tmp / "audience.csv", recipients, 7)
            campaign = threading.Thread(target=_common.cli, args=(
                config, "campaign", "create", "--channel", "w0n0", "--template", "bench_notice", "--language",
                "en", "--audience", str(audience), "--category", "utility", "--name", "storm"))
            campaign.start()
            started = time.monotonic() + SETTLE_TIMEOUT
            while standins.sends_count(number(0, 0)) < min(recipients, CAMPAIGN_MPS):  # the storm is on
                if time.monotonic() > started:
                    raise RuntimeError(f"the campaign did not start; serve log:\n{serve.tail()}")
                time.sleep(0.1)
            sent, errors = asyncio.run(customers(f"{serve.url}/webhooks/meta", workspaces, rate, seconds, tag))
            campaign_sends = standins.sends_count(number(0, 0))
            deadline = time.monotonic() + SETTLE_TIMEOUT
            got = arrivals(standins, tag)
            while len(got) < len(sent) and time.monotonic() < deadline:
                time.sleep(0.5)
                got = arrivals(standins, tag)
            campaign.join()
    latencies = [got[i] - t for i, t in sent.items() if i in got]
    ms = 1000.0
    p99 = _common.percentile(latencies, 99) * ms
    row = {"workspaces": workspaces, "numbers": 2 * workspaces, "msg/s": rate, "n": len(latencies),
           "p50 ms": _common.percentile(latencies, 50) * ms, "p99 ms": p99,
           "max ms": max(latencies, default=float("nan")) * ms, "campaign sends meanwhile": campaign_sends,
           "errors": errors, "not mirrored": len(sent) - len(latencies)}
    print(_common.table([row], f"Other workspaces' customers during workspace 0's {CAMPAIGN_MPS}-mps campaign, "
                               f"{seconds:g} s; {_common.machine()}"))
    print(f"\np99 {p99:.1f} ms (target < {TARGET_P99_MS:g}: {'met' if p99 < TARGET_P99_MS else 'MISSED'})")
    return row


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workspaces", type=int, default=None, help="default 100 (20 with --quick)")
    parser.add_argument("--rate", type=float, default=20.0, help="other workspaces' customer messages a second")
    parser.add_argument("--seconds", type=float, default=None, help="default 15 (8 with --quick)")
    parser.add_argument("--campaign-seconds", type=float, default=None,
                        help="campaign size in seconds at 80 mps (default: --seconds + 10)")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    workspaces = max(2, args.workspaces or (20 if args.quick else 100))
    seconds = args.seconds or (8.0 if args.quick else 15.0)
    run(workspaces, args.rate, seconds, args.campaign_seconds or seconds + 10.0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
