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

`--reply-storm RATE` adds a reply storm to the campaign: workspace 0's customers write RATE messages a second
into one of its channels (Slack takes one post a second there), each opening a thread.

Baseline, in the same run: the same customers writing at the same rate before the campaign starts (no storm);
the storm phase's p50 and p99 are printed as ratios of it. `--py-spy FILE` records `serve` during the storm.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
import threading
import time
import uuid
from collections.abc import Awaitable, Sequence
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import yaml

from bench import _common
from bench.campaign_throughput import write_audience
from tests.helpers import BOT_TOKEN

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


async def customers(url: str, workspaces: int, rate: float, seconds: float, marker: str, phase: int = 0
                    ) -> tuple[dict[int, float], int]:
    """Customers of workspaces 1… write open-loop, message i to the (i mod 2(w-1))-th of their numbers; each
    phase's customers are new (their first message opens a thread), so two phases measure the same work."""
    others = [(n, k) for n in range(1, workspaces) for k in range(2)]
    base_ts = int(time.time()) - 5
    items = [_common.customer_message(marker, i, number=number(*others[i % len(others)]),
                                      wa_id=f"919840{phase % 10}{i:05d}", name=f"Customer {i}", ts=base_ts)
             for i in range(max(1, int(rate * seconds)))]
    sent, _, errors = await _common.open_loop(url, items, rate)
    return sent, errors


async def with_reply_storm(quiet: Awaitable[tuple[dict[int, float], int]], url: str, rate: float, seconds: float,
                           marker: str) -> tuple[dict[int, float], int]:
    """The quiet customers' traffic while workspace 0's customers write `rate` messages a second into its
    second number (one Slack channel, each message a new thread): a reply storm."""
    if rate <= 0:
        return await quiet
    base_ts = int(time.time()) - 5
    items = [_common.customer_message(marker, i, number=number(0, 1), wa_id=f"919850{i:06d}", name=f"Storm {i}",
                                      ts=base_ts) for i in range(max(1, int(rate * seconds)))]
    result, _ = await asyncio.gather(quiet, _common.open_loop(url, items, rate))
    return result


def _row(phase: str, latencies: list[float], sent: dict[int, float], errors: int, rate: float,
         baseline: dict[str, object] | None, campaign_sends: int | str) -> dict[str, object]:
    stats = _common.latency_stats(latencies)
    row: dict[str, object] = {"phase": phase, "msg/s": rate, **stats}
    for p in ("p50", "p99"):
        quiet = float(baseline[f"{p} ms"]) if baseline is not None else float(stats[f"{p} ms"])  # type: ignore[arg-type]
        row[f"ratio {p}"] = float(stats[f"{p} ms"]) / quiet if quiet else float("nan")  # type: ignore[arg-type]
    row.update({"campaign sends": campaign_sends, "errors": errors,
                "not mirrored": len(sent) - len(latencies)})
    return row


def run(workspaces: int, rate: float, seconds: float, campaign_seconds: float, *, profile: str = "",
        reply_storm: float = 0.0) -> dict[str, object]:
    """The quiet workspaces' latency without the storm (the baseline), then during it, in one run."""
    from bot.onboarding.crypto import new_key

    tag = uuid.uuid4().hex[:6]
    key = new_key()
    recipients = max(2, int(CAMPAIGN_MPS * campaign_seconds))
    url_of = "{}/webhooks/meta".format
    with _common.mirror_stack("wabridge-bench-fair-", {number(0, 0): CAMPAIGN_MPS}) as (tmp, standins,
                                                                                         redis_url, db_url):
        config = write_config(tmp / "app.yaml", workspaces=workspaces, db_url=db_url, redis_url=redis_url,
                              standins=standins, token_key=key)
        _common.cli(config, "migrate")
        asyncio.run(install_all(db_url, workspaces, key))
        with _common.Serve(config, log_dir=tmp) as serve:
            assert serve.proc is not None
            # Baseline: the same customers of the same workspaces, same rate, nothing else going on.
            quiet_sent, quiet_errors = asyncio.run(customers(url_of(serve.url), workspaces, rate, seconds,
                                                             f"fair-{tag}q"))
            quiet = _common.mirrored(standins, f"fair-{tag}q", quiet_sent, SETTLE_TIMEOUT)
            standins.send_status_webhooks(url_of(serve.url))
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
            spy = _common.py_spy(serve.proc.pid, profile) if profile else None
            sent, errors = asyncio.run(with_reply_storm(
                customers(url_of(serve.url), workspaces, rate, seconds, f"fair-{tag}s", 1), url_of(serve.url),
                reply_storm, seconds, f"fair-{tag}r"))
            campaign_sends = standins.sends_count(number(0, 0))
            if spy is not None:
                _common.stop_py_spy(spy)
            storm = _common.mirrored(standins, f"fair-{tag}s", sent, SETTLE_TIMEOUT)
            campaign.join()
        stages = {phase: _common.webhook_stages(db_url, marker, phase_sent, _common.first_posts(standins, marker))
                  for phase, marker, phase_sent in (("no storm", f"fair-{tag}q", quiet_sent),
                                                    ("storm", f"fair-{tag}s", sent))}
    baseline = _row("no storm (baseline)", quiet, quiet_sent, quiet_errors, rate, None, "-")
    storm_name = f"workspace 0 at {CAMPAIGN_MPS} mps" + (f" + {reply_storm:g} replies/s" if reply_storm else "")
    row = _row(storm_name, storm, sent, errors, rate, baseline, campaign_sends)
    p99 = float(row["p99 ms"])  # type: ignore[arg-type]
    print(_common.table([baseline, row], f"Other workspaces' customers ({workspaces} workspaces x 2 numbers), "
                                         f"{seconds:g} s per phase; {_common.machine()}"))
    print(f"\nratio: against the same customers' latency with no storm, measured first in this run; "
          f"not mirrored: no post within {SETTLE_TIMEOUT:g} s")
    print(f"p99 {p99:.1f} ms, {float(row['ratio p99']):.2f} x the quiet p99 "  # type: ignore[arg-type]
          f"(target < {TARGET_P99_MS:g} ms: {'met' if p99 < TARGET_P99_MS else 'MISSED'})\n")
    print(_common.table([{"phase": phase, "stage": stage, **_common.latency_stats(values)}
                         for phase, by_stage in stages.items() for stage, values in by_stage.items()],
                        "Where the time went: POST to stored, stored to applied (webhook worker), applied to "
                        "posted (Slack outbox)"))
    if profile:
        for share, frame in _common.top_frames(profile, "bot/", 15):
            print(f"{share:6.1%}  {frame}")
    return {"baseline": baseline, "storm": row}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workspaces", type=int, default=None, help="default 100 (20 with --quick)")
    parser.add_argument("--rate", type=float, default=20.0, help="other workspaces' customer messages a second")
    parser.add_argument("--seconds", type=float, default=None, help="default 15 (8 with --quick)")
    parser.add_argument("--campaign-seconds", type=float, default=None,
                        help="campaign size in seconds at 80 mps (default: --seconds + 10)")
    parser.add_argument("--reply-storm", type=float, default=0.0, metavar="RATE",
                        help="also a reply storm: workspace 0's customers write RATE messages a second into one "
                             "of its channels during the storm phase")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--py-spy", default="", metavar="FILE",
                        help="record `serve` with py-spy (raw stacks) during the storm phase; prints the top frames")
    args = parser.parse_args(argv)
    workspaces = max(2, args.workspaces or (20 if args.quick else 100))
    seconds = args.seconds or (8.0 if args.quick else 15.0)
    run(workspaces, args.rate, seconds, args.campaign_seconds or seconds + 10.0, profile=args.py_spy,
        reply_storm=args.reply_storm)
    return 0


if __name__ == "__main__":
    sys.exit(main())
