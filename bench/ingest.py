"""Ingest: signed Meta deliveries posted open-loop at increasing rates to `serve` on PostgreSQL.

Run from the repository root:

    .venv/bin/python -m bench.ingest                 # 250, 1000, 4000 deliveries/s, 6 s each
    .venv/bin/python -m bench.ingest --quick         # 250 and 4000 deliveries/s, 2 s each
    .venv/bin/python bench/ingest.py --rates 100 2000 --seconds 3

The same loader first drives a bare aiohttp endpoint (reads the body, answers 200) in its own process: the
baseline, measured in the same run. Each delivery is due at a fixed time (open loop); its latency counts from
that time, so a loader held up by a slow server shows the queueing as latency instead of hiding it. After
each step the run waits until `serve` has processed its backlog and reports that rate too.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import aiohttp

from bench import _common, http_load
from tests.helpers import echo_text, inbound_text, signed, status

TARGET_RATIO = 0.8  # at the last rate (4,000/s by default: one number at Meta's top tier, statuses included)
TARGET_P99_MS = 100.0
CONTACTS = 200
DRAIN_WAIT = 10.0  # after a step, how long to watch the backlog being processed before moving on
REQUEST_TIMEOUT = 5.0

Delivery = tuple[bytes, dict[str, str]]


@dataclass
class Step:
    """What one rate step measured."""

    target: int
    sent: int
    ok: int
    errors: int
    rate: float  # successful deliveries per second, first due time to last answer
    p50_ms: float
    p99_ms: float
    max_ms: float


def deliveries(n: int, tag: str) -> list[Delivery]:
    """n signed deliveries, unique wamids: per five, two inbound texts, an echo, and its delivered and read."""
    out: list[Delivery] = []
    ts = int(time.time()) - 60
    for i in range(n):
        kind = i % 5
        group = i // 5
        wa_id = f"9198200{group % CONTACTS:05d}"
        echo_id = f"wamid.bench.{tag}.e{group}"
        if kind in (0, 1):
            payload = inbound_text(f"wamid.bench.{tag}.{i}", f"hello {tag} {i}", wa_id=wa_id, ts=ts)
        elif kind == 2:
            payload = echo_text(echo_id, f"reply {tag} {i}", to=wa_id, ts=ts)
        else:
            payload = status(echo_id, "delivered" if kind == 3 else "read", recipient=wa_id, ts=ts + kind)
        out.append(signed(payload))
    return out


async def load(loader: http_load.OpenLoop, url: str, items: Sequence[Delivery], rate: float) -> Step:
    """Post items open-loop at rate per second over the loader's keep-alive connections (bench.http_load);
    latency counts from each item's due time."""
    requests = [http_load.render(url, body, headers) for body, headers in items]
    start = time.monotonic()
    outcomes = await loader.run(requests, rate, grace=REQUEST_TIMEOUT)
    return _step(rate, len(items), [(o.latency, o.status == 200) for o in outcomes], time.monotonic() - start)


async def load_aiohttp(session: aiohttp.ClientSession, url: str, items: Sequence[Delivery], rate: float) -> Step:
    """As `load`, with aiohttp's client (`--client aiohttp`: the loader of the figures before 0.9.0)."""
    results: list[tuple[float, bool]] = []

    async def one(body: bytes, headers: dict[str, str], due: float) -> None:
        ok = False
        try:
            async with session.post(url, data=body, headers=headers) as resp:
                await resp.read()
                ok = resp.status == 200
        except (aiohttp.ClientError, TimeoutError):
            ok = False
        results.append((time.monotonic() - due, ok))

    tasks: list[asyncio.Task[None]] = []
    start = time.monotonic() + 0.01
    for i, (body, headers) in enumerate(items):
        due = start + i / rate
        delay = due - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(body, headers, due)))
    await asyncio.gather(*tasks)
    return _step(rate, len(items), results, time.monotonic() - start)


def _step(rate: float, sent: int, results: Sequence[tuple[float, bool]], seconds: float) -> Step:
    good = [lat for lat, ok in results if ok]
    return Step(target=int(rate), sent=sent, ok=len(good), errors=sent - len(good),
                rate=len(good) / max(seconds, 1e-9),
                p50_ms=_common.percentile(good, 50) * 1000, p99_ms=_common.percentile(good, 99) * 1000,
                max_ms=max(good, default=float("nan")) * 1000)


class Backlog:
    """Reads the webhook log of the `serve` database over one connection: how much is still unprocessed."""

    def __init__(self, db_url: str) -> None:
        from sqlalchemy.engine import make_url

        self.dsn = make_url(db_url).set(drivername="postgresql").render_as_string(hide_password=False)
        self.conn: Any = None

    async def __aenter__(self) -> Backlog:
        import asyncpg

        self.conn = await asyncpg.connect(self.dsn)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.conn.close()

    async def counts(self) -> tuple[int, int]:
        """(processed, pending) deliveries."""
        row = await self.conn.fetchrow(
            "SELECT count(processed_at), count(*) - count(processed_at) FROM webhook_logs")
        return int(row[0]), int(row[1])

    async def watch(self, processed_before: int, since: float, wait: float) -> tuple[float, int]:
        """Wait until nothing is pending or `wait` has passed; (deliveries processed per second since `since`,
        still pending)."""
        deadline = time.monotonic() + wait
        while True:
            done, left = await self.counts()
            if left == 0 or time.monotonic() >= deadline:
                return (done - processed_before) / (time.monotonic() - since), left
            await asyncio.sleep(0.1)


@dataclass
class Measured:
    step: Step
    cpu: float = float("nan")  # the server's CPU share during the step (1.0 = one core)
    processed: float = float("nan")  # deliveries processed per second, from the step's start
    backlog: int = 0  # still unprocessed when the run moved on


async def _measure(url: str, rates: Sequence[int], seconds: float, connections: int, tag: str,
                   pid: int | None = None, db_url: str | None = None, drain_wait: float = DRAIN_WAIT,
                   client: str = "raw") -> list[Measured]:
    out: list[Measured] = []
    async with contextlib.AsyncExitStack() as stack:
        if client == "aiohttp":
            session = await stack.enter_async_context(aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=connections),
                timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT)))

            async def send(items: Sequence[Delivery], rate: float) -> Step:
                return await load_aiohttp(session, url, items, rate)
        else:
            loader = http_load.OpenLoop(url, connections)
            stack.callback(loader.close)

            async def send(items: Sequence[Delivery], rate: float) -> Step:
                return await load(loader, url, items, rate)
        backlog = await stack.enter_async_context(Backlog(db_url)) if db_url else None
        warm = deliveries(min(200, max(20, rates[0] // 2)), f"{tag}w")
        await send(warm, max(50, rates[0] // 2))  # connections, pools and caches
        if backlog is not None:
            await backlog.watch(0, time.monotonic(), drain_wait)
        for n, rate in enumerate(rates):
            items = deliveries(max(1, int(rate * seconds)), f"{tag}{n}")
            done_before = (await backlog.counts())[0] if backlog else 0
            cpu0, began = (_common.tree_cpu_seconds(pid) if pid else 0.0), time.monotonic()
            measured = Measured(await send(items, rate))
            if pid:
                measured.cpu = (_common.tree_cpu_seconds(pid) - cpu0) / (time.monotonic() - began)
            if backlog is not None:
                measured.processed, measured.backlog = await backlog.watch(done_before, began, drain_wait)
            out.append(measured)
    return out


def run(rates: Sequence[int], seconds: float, connections: int, *, drain_wait: float = DRAIN_WAIT,
        profile: str = "", split: bool = False, web: int = 1, client: str = "raw") -> dict[str, object]:
    """Baseline then `serve`; returns the figures (also printed).

    split: `serve --role web` takes the deliveries and `serve --role worker` processes them; CPU is the web's.
    web > 1: that many web processes on the port (`serve --role web --processes N`), with a worker beside."""
    split = split or web > 1
    tag = uuid.uuid4().hex[:6]
    with _common.temp_dir("wabridge-bench-ingest-") as tmp, _common.Standins() as standins, \
            _common.redis_server() as redis_url, _common.pg_database() as db_url:
        with _common.BareServer() as bare:
            assert bare.proc is not None
            base = asyncio.run(_measure(f"{bare.url}/webhooks/meta", rates, seconds, connections, f"b{tag}",
                                        pid=bare.proc.pid, client=client))
        config = _common.write_config(Path(tmp) / "app.yaml", database_url=db_url, redis_url=redis_url,
                                      graph_url=standins.graph_url, slack_api_url=standins.slack_api_url,
                                      channels=[_common.Channel("lucknow", "100000000000001")])
        with _common.Serve(config, log_dir=Path(tmp), role="web" if split else "all", processes=web) as serve, \
                (_common.Serve(config, log_dir=Path(tmp), name="worker", migrate=False, role="worker")
                 if split else contextlib.nullcontext()) as worker:
            assert serve.proc is not None
            spy = _common.py_spy(serve.proc.pid, profile) if profile else None
            ours = asyncio.run(_measure(f"{serve.url}/webhooks/meta", rates, seconds, connections, f"s{tag}",
                                        pid=serve.proc.pid, db_url=db_url, drain_wait=drain_wait,
                                        client=client))
            if spy is not None:
                _common.stop_py_spy(spy)
            errors_in_log = serve.tail(2000).count("Traceback") + (worker.tail(2000).count("Traceback")
                                                                   if worker is not None else 0)
    rows: list[dict[str, object]] = []
    for b, s in zip(base, ours, strict=True):
        rows.append({
            "target/s": s.step.target, "bare/s": b.step.rate, "bare p50 ms": b.step.p50_ms,
            "bare p99 ms": b.step.p99_ms, "serve/s": s.step.rate, "serve p50 ms": s.step.p50_ms,
            "serve p99 ms": s.step.p99_ms, "errors": s.step.errors, "serve CPU": s.cpu,
            "processed/s": s.processed, "backlog": s.backlog,
            "ratio": s.step.rate / b.step.rate if b.step.rate else float("nan"),
        })
    top = rows[-1]
    ratio = float(top["ratio"])  # type: ignore[arg-type]
    p99 = float(top["serve p99 ms"])  # type: ignore[arg-type]
    layout = (f", serve --role web --processes {web} + serve --role worker" if web > 1
              else ", serve --role web + serve --role worker" if split else "")
    print(_common.table(rows, f"Ingest: {seconds:g} s per rate, {connections} connections ({client} loader){layout}; "
                              f"{_common.machine()}"))
    print(f"\nat {top['target/s']}/s: ratio {ratio:.3f} (target >= {TARGET_RATIO}: "
          f"{'met' if ratio >= TARGET_RATIO else 'MISSED'}), p99 ack {p99:.1f} ms (target < {TARGET_P99_MS:g} ms: "
          f"{'met' if p99 < TARGET_P99_MS else 'MISSED'}); tracebacks in the serve log: {errors_in_log}")
    return {"rows": rows, "ratio": ratio, "p99_ms": p99}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rates", type=int, nargs="+", default=None, help="deliveries per second, in order")
    parser.add_argument("--seconds", type=float, default=None, help="length of each rate step")
    parser.add_argument("--connections", type=int, default=64, help="the loader's keep-alive connections")
    parser.add_argument("--quick", action="store_true", help="250 and 4000/s for 2 s each")
    parser.add_argument("--drain-wait", type=float, default=None,
                        help=f"seconds to watch the backlog after each step (default {DRAIN_WAIT:g}, 3 with --quick)")
    parser.add_argument("--json", action="store_true", help="also print the figures as one JSON line")
    parser.add_argument("--py-spy", default="", metavar="FILE",
                        help="record `serve` with py-spy (collapsed stacks) while it is measured")
    parser.add_argument("--split", action="store_true",
                        help="run `serve --role web` and `serve --role worker` as two processes")
    parser.add_argument("--web", type=int, default=1, metavar="N",
                        help="N web processes sharing the port (`serve --role web --processes N`), a worker beside")
    parser.add_argument("--client", choices=("raw", "aiohttp"), default="raw",
                        help="the loader: raw (bench.http_load, default) or aiohttp's client (figures before 0.9.0)")
    args = parser.parse_args(argv)
    rates = args.rates or ([250, 4000] if args.quick else [250, 1000, 4000])
    seconds = args.seconds or (2.0 if args.quick else 6.0)
    drain_wait = args.drain_wait if args.drain_wait is not None else (3.0 if args.quick else DRAIN_WAIT)
    figures = run(rates, seconds, args.connections, drain_wait=drain_wait, profile=args.py_spy,
                  split=args.split, web=args.web, client=args.client)
    if args.json:
        print(json.dumps(figures, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
