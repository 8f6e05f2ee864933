"""Mirror latency: a customer's WhatsApp message, from the webhook POST to Slack receiving chat.postMessage.

Run from the repository root:

    .venv/bin/python -m bench.mirror_latency             # 10, 50 then 200 messages/s over 256 channels, 15 s each,
                                                         # then the maximum sustained rate (3,000 over 1,024 channels)
    .venv/bin/python -m bench.mirror_latency --quick     # 8 s
    .venv/bin/python bench/mirror_latency.py --rates 20 --conversations 10 --seconds 5
    .venv/bin/python -m bench.mirror_latency --processes 2   # `serve --processes 2`: one process per core

Slack takes about one chat.postMessage per second per channel, and the bridge's pacer holds to it, so one
channel can never mirror 10 or 200 messages a second live: the conversations are spread over many WhatsApp
numbers (256 by default), each with its own Slack channel, message i going to number i % channels (at 200/s over
256 channels, one post every 1.28 s per channel). `--channels 1` puts everything in one channel and shows
Slack's limit instead of the bridge's.

The last step offers 3,000 messages at 2,000/s over 1,024 channels (a few posts per channel, so Slack's pace is
not the limit) and prints the maximum sustained mirror rate: messages in Slack ÷ seconds from the first
webhook sent to the last post received.

`serve` runs as a subprocess on a fresh PostgreSQL database with the Slack stand-in in a process of its own;
each message carries a unique marker, so its post is found by text. The stand-in stamps arrivals with
CLOCK_MONOTONIC, the same clock as the loader's time.monotonic(), so the two compare directly.

Baselines, in the same run: the floor of this path's two ends, the webhook's ack alone and a direct
chat.postMessage from this process to the same stand-in (its arrival stamp minus its send time).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
import urllib.request
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import aiohttp
from slack_sdk.web.async_client import AsyncWebClient

from bench import _common
from tests.helpers import BOT_TOKEN

TARGET_P50_MS = 100.0
TARGET_P99_MS = 300.0
TARGET_MAX_RATE = 500.0  # messages/s mirrored from a backlog, Slack's per-channel pace aside
SETTLE_TIMEOUT = 60.0
MAX_RATE_OFFERED = 2000.0  # messages/s offered in the backlog step: more than the bridge mirrors


CHANNELS = 256


def channel_number(n: int) -> str:
    """The phone_number_id of the bench's n-th WhatsApp number (the first is tests.helpers.PNID)."""
    return f"1000000000{n + 1:05d}"


def bench_channels(count: int) -> list[_common.Channel]:
    return [_common.Channel(f"branch{n}", channel_number(n), slack_channel=f"C0BENCH{n:03d}") for n in range(count)]


async def _send(url: str, rate: float, conversations: int, seconds: float, tag: str, *, channels: int = 1
                ) -> tuple[dict[int, float], list[float], int]:
    """Post inbound texts open-loop; returns ({message number: send time}, ack latencies, errors)."""
    n = max(1, int(rate * seconds))
    base_ts = int(time.time()) - 5
    items = [_common.customer_message(f"mlat-{tag}", i, number=channel_number(i % channels),
                                      wa_id=f"9198300{i % conversations:05d}", name=f"Customer {i % conversations}",
                                      ts=base_ts + i // conversations, text="question {marker}-{i} about the batch")
             for i in range(n)]
    return await _common.open_loop(url, items, rate)


async def _direct_posts(api_url: str, n: int) -> list[float]:
    """Round trips of chat.postMessage straight to the stand-in: send time to the stand-in's arrival stamp."""
    sent: dict[str, float] = {}
    async with aiohttp.ClientSession() as http:
        client = AsyncWebClient(token=BOT_TOKEN, base_url=api_url, session=http)
        for i in range(n):
            text = f"direct-{i}"
            sent[text] = time.monotonic()
            await client.chat_postMessage(channel="C0BENCH", text=text)
            await asyncio.sleep(0.02)
    return list(sent.values())


_stats = _common.latency_stats


@dataclass
class MaxRate:
    """The backlog step: n messages offered far faster than the bridge mirrors them."""

    n: int
    channels: int
    mirrored: int = 0
    seconds: float = float("nan")  # first webhook sent to last post received
    cpu_ms: float = float("nan")  # serve's CPU time per message mirrored (less sensitive to load than the rate)
    statements: float = float("nan")  # SQL statements per message mirrored

    @property
    def rate(self) -> float:
        return self.mirrored / self.seconds if self.seconds > 0 else float("nan")


def _statements(base_url: str) -> float:
    """The wabridge_db_statements counter of `serve`'s /metrics."""
    with urllib.request.urlopen(f"{base_url}/metrics", timeout=10) as resp:
        for line in resp.read().decode().splitlines():
            if line.startswith("wabridge_db_statements_total "):
                return float(line.split()[1])
    return float("nan")


def _max_rate(serve: _common.Serve, standins: _common.Standins, step: MaxRate, offered: float, tag: str) -> None:
    """Offer step.n messages at `offered`/s over step.channels channels (two conversations each) and time
    how long until the last is in Slack: the bridge's sustained mirror rate, Slack's per-channel pace aside
    (each channel gets n / channels posts, a few seconds of its allowance at most)."""
    assert serve.proc is not None
    # With several processes /metrics answers for whichever one the connection reaches: no statement count.
    counted = serve.processes == 1
    cpu = _common.tree_cpu_seconds(serve.proc.pid)
    statements = _statements(serve.url) if counted else float("nan")
    sent, _, _ = asyncio.run(_send(f"{serve.url}/webhooks/meta", offered, 2 * step.channels, step.n / offered, tag,
                                   channels=step.channels))
    _common.mirrored(standins, f"mlat-{tag}", sent, SETTLE_TIMEOUT)
    arrived = _common.first_posts(standins, f"mlat-{tag}")
    if sent and arrived:
        step.mirrored = len(arrived)
        step.seconds = max(arrived.values()) - min(sent.values())
        step.cpu_ms = 1000 * (_common.tree_cpu_seconds(serve.proc.pid) - cpu) / step.mirrored
        step.statements = ((_statements(serve.url) - statements) / step.mirrored if counted else float("nan"))


def run(rates: Sequence[float], conversations: int, seconds: float, channels: int = CHANNELS, *,
        profile: str = "", max_rate: MaxRate | None = None, offered: float = MAX_RATE_OFFERED, processes: int = 1
        ) -> dict[str, object]:
    """Measure each rate in turn (waiting for the previous one to be mirrored), then the maximum sustained
    rate (unless max_rate is None); returns the figures."""
    tag = uuid.uuid4().hex[:6]
    steps: list[tuple[float, list[float], list[float], int, int]] = []
    configured = max(channels, max_rate.channels if max_rate is not None else 0)
    with _common.mirror_stack("wabridge-bench-mirror-") as (tmp, standins, redis_url, db_url):
        # Baseline: direct posts to the stand-in, matched to its arrival stamps by text.
        direct_sent = asyncio.run(_direct_posts(standins.slack_api_url, 50))
        direct_arrived = [p["t"] for p in standins.slack_posts() if '"direct-' in p["blob"]]
        direct = [a - s for s, a in zip(direct_sent, direct_arrived, strict=True)]
        standins.reset()
        config = _common.write_config(Path(tmp) / "app.yaml", database_url=db_url, redis_url=redis_url,
                                      graph_url=standins.graph_url, slack_api_url=standins.slack_api_url,
                                      channels=bench_channels(configured))
        with _common.Serve(config, log_dir=Path(tmp), processes=processes) as serve:
            assert serve.proc is not None
            spy = _common.py_spy(serve.proc.pid, profile) if profile else None
            for n, rate in enumerate(rates):
                step_tag = f"{tag}s{n}"
                sent, acks, errors = asyncio.run(
                    _send(f"{serve.url}/webhooks/meta", rate, conversations, seconds, step_tag, channels=channels))
                latencies = _common.mirrored(standins, f"mlat-{step_tag}", sent, SETTLE_TIMEOUT)
                steps.append((rate, acks, latencies, errors, len(sent) - len(latencies)))
            if max_rate is not None:
                _max_rate(serve, standins, max_rate, offered, f"{tag}max")
            if spy is not None:
                _common.stop_py_spy(spy)
    floor_p50 = _common.percentile(direct, 50)
    rows: list[dict[str, object]] = [
        {"path": "direct chat.postMessage (baseline)", "msg/s": "-", **_stats(direct), "ratio p50": 1.0,
         "errors": 0, "not mirrored": 0}]
    for rate, acks, latencies, errors, missing in steps:
        rows.append({"path": "webhook ack (baseline)", "msg/s": rate, **_stats(acks),
                     "ratio p50": _common.percentile(acks, 50) / floor_p50, "errors": errors, "not mirrored": "-"})
        rows.append({"path": "webhook -> Slack post", "msg/s": rate, **_stats(latencies),
                     "ratio p50": _common.percentile(latencies, 50) / floor_p50, "errors": errors,
                     "not mirrored": missing})
    last = rows[-1]
    p50, p99 = float(last["p50 ms"]), float(last["p99 ms"])  # type: ignore[arg-type]
    layout = f"serve --processes {processes}; " if processes > 1 else ""
    print(_common.table(rows, f"Mirror latency: {layout}{conversations} conversations over {channels} channels, "
                              f"{seconds:g} s per rate; "
                              f"{_common.machine()}"))
    print(f"\nratio p50: against the direct post's p50; not mirrored: no post within {SETTLE_TIMEOUT:g} s")
    if max_rate is not None:
        lost = max_rate.n - max_rate.mirrored
        print(f"maximum sustained mirror rate: {max_rate.rate:.1f} messages/s ({max_rate.mirrored} of {max_rate.n} "
              f"offered at {offered:g}/s over {max_rate.channels} channels, in Slack {max_rate.seconds:.1f} s after "
              f"the first was sent; {lost} not mirrored within {SETTLE_TIMEOUT:g} s) (target >= {TARGET_MAX_RATE:g}: "
              f"{'met' if max_rate.rate >= TARGET_MAX_RATE and not lost else 'MISSED'})")
        print(f"  per message mirrored: {max_rate.cpu_ms:.2f} ms of serve's CPU (intake, processing and posting), "
              f"{max_rate.statements:.1f} SQL statements")
    print(f"at {last['msg/s']}/s: p50 {p50:.1f} ms (target < {TARGET_P50_MS:g}: "
          f"{'met' if p50 < TARGET_P50_MS else 'MISSED'}), p99 {p99:.1f} ms (target < {TARGET_P99_MS:g}: "
          f"{'met' if p99 < TARGET_P99_MS else 'MISSED'})")
    return {"rows": rows, "p50_ms": p50, "p99_ms": p99,
            "max_rate": max_rate.rate if max_rate is not None else None}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rates", type=float, nargs="+", default=[10.0, 50.0, 200.0],
                        help="inbound messages per second, in order (the target is for the last)")
    parser.add_argument("--conversations", type=int, default=512)
    parser.add_argument("--channels", type=int, default=CHANNELS,
                        help=f"WhatsApp numbers (each its own Slack channel), default {CHANNELS}")
    parser.add_argument("--seconds", type=float, default=None, help="default 15 (8 with --quick)")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--max-rate-messages", type=int, default=3000, metavar="N",
                        help="messages offered at once for the maximum sustained rate (0: skip that step)")
    parser.add_argument("--max-rate-channels", type=int, default=1024, metavar="C",
                        help="channels the backlog step spreads over (default 1024: Slack's one post per second "
                             "per channel is not what it measures)")
    parser.add_argument("--processes", type=int, default=1, metavar="N",
                        help="run `serve --processes N` (N processes of the default role on one port; default 1)")
    parser.add_argument("--py-spy", default="", metavar="FILE",
                        help="record `serve` with py-spy (collapsed stacks) while it is measured")
    args = parser.parse_args(argv)
    max_rate = MaxRate(args.max_rate_messages, args.max_rate_channels) if args.max_rate_messages > 0 else None
    run(args.rates, args.conversations, args.seconds or (8.0 if args.quick else 15.0), args.channels,
        profile=args.py_spy, max_rate=max_rate, processes=args.processes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
