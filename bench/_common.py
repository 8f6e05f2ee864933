"""Shared helpers for the benchmarks: ports, `serve` subprocesses, stand-in processes, percentiles, tables.

Everything runs on 127.0.0.1. Services are throwaway: a fresh PostgreSQL database per run (dropped at the
end) and a private redis-server, so a test suite flushing the shared Redis cannot spoil a measurement.

This module is also a small program, used as a subprocess by the benchmarks:

    python -m bench._common standins [--cap PNID=MPS ...] [--slack-limit METHOD=PER_S/BURST ...]
                                                              # Graph + Slack stand-ins, prints their URLs
    python -m bench._common bare --port N                     # the baseline: an endpoint that returns 200
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import platform
import resource
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests import services  # noqa: E402  (needs ROOT on sys.path when run as a script)
from tests.helpers import APP_SECRET, BOT_TOKEN, SIGNING_SECRET, VERIFY_TOKEN  # noqa: E402

START_TIMEOUT = 60.0


# ---- numbers and tables --------------------------------------------------------------------------


def percentile(values: Sequence[float], p: float) -> float:
    """The p-th percentile (0-100) by linear interpolation between closest ranks; nan when empty."""
    if not values:
        return math.nan
    ordered = sorted(values)
    k = (len(ordered) - 1) * p / 100.0
    lo, hi = math.floor(k), math.ceil(k)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def fmt(value: object) -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return "-"
        return f"{value:,.3f}" if abs(value) < 10 else f"{value:,.1f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def table(rows: Sequence[Mapping[str, object]], title: str = "") -> str:
    """Rows as a Markdown table (readable in a terminal and pasteable into docs/benchmarks.md)."""
    if not rows:
        return f"{title}\n(no rows)" if title else "(no rows)"
    headers = list(rows[0])
    cells = [[fmt(r.get(h, "")) for h in headers] for r in rows]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(headers)]
    lines = [f"| {' | '.join(h.ljust(w) for h, w in zip(headers, widths, strict=True))} |",
             f"|{'|'.join('-' * (w + 2) for w in widths)}|"]
    lines += [f"| {' | '.join(c.rjust(w) for c, w in zip(row, widths, strict=True))} |" for row in cells]
    return "\n".join(([title] if title else []) + lines)


def machine() -> str:
    """One line naming the machine: cores, CPU model, Python, and the load average when the bench started
    (the machine may be shared: a high load means the figures are pessimistic)."""
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = os.getloadavg()[0]
    return (f"nproc={os.cpu_count()} cpu={model or platform.processor() or '?'} "
            f"python={platform.python_version()} ({platform.python_implementation()}) load(1 min)={load:.2f}")


def load_average() -> float:
    """The machine's 1-minute load average now."""
    return os.getloadavg()[0]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc; 0 when it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children_of(pid: int) -> list[int]:
    """The processes whose parent is pid (Linux /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    found.append(int(entry.name))
            except (OSError, IndexError, ValueError):
                continue
    return found


def tree_cpu_seconds(pid: int) -> float:
    """CPU time of a process and its children so far (a `serve --processes N` supervisor and its N)."""
    return cpu_seconds(pid) + sum(cpu_seconds(child) for child in children_of(pid))


def pids_named(name: str) -> list[int]:
    """Processes whose command name is `name` (e.g. postgres, redis-server)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() == name:
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


class CpuMeter:
    """CPU used by named groups of processes between start() and stop(), as a share of one core."""

    def __init__(self, groups: Mapping[str, Sequence[int] | str]) -> None:
        self.groups = groups  # name -> pids, or a command name looked up at each reading

    def _read(self) -> dict[str, dict[int, float]]:
        out: dict[str, dict[int, float]] = {}
        for name, who in self.groups.items():
            pids = pids_named(who) if isinstance(who, str) else list(who)
            out[name] = {pid: cpu_seconds(pid) for pid in pids}
        return out

    def start(self) -> CpuMeter:
        self._t0, self._c0 = time.monotonic(), self._read()
        return self

    def stop(self) -> dict[str, float]:
        elapsed = max(time.monotonic() - self._t0, 1e-9)
        now = self._read()
        return {name: sum(c - self._c0[name].get(pid, 0.0) for pid, c in now[name].items()) / elapsed
                for name in now}


def peak_rss_mb() -> float:
    """This process's peak resident set size in MB (ru_maxrss is in KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


# ---- services ------------------------------------------------------------------------------------


free_port = services.free_port


def pg_base_url() -> str:
    """The PostgreSQL server to create throwaway databases on (SystemExit when none answers)."""
    url = services.configured_pg_url()
    if url is None:
        raise SystemExit("PostgreSQL does not answer on 127.0.0.1:5432 (set WABRIDGE_TEST_PG_URL)")
    return url


@contextmanager
def pg_database() -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one measurement; dropped afterwards."""
    base = pg_base_url()
    url = asyncio.run(services.create_pg_database(base))
    try:
        yield url
    finally:
        asyncio.run(services.drop_pg_database(base, url))


@contextmanager
def redis_server() -> Iterator[str]:
    """A private redis-server on a free loopback port."""
    with services.throwaway_redis() as url:
        yield url


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def wait_http(url: str, timeout: float = START_TIMEOUT, proc: subprocess.Popen[Any] | None = None) -> None:
    """Poll url until it answers 200 (or fail with the process's exit)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before {url} answered")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{url} did not answer within {timeout:.0f} s")
        time.sleep(0.1)


def stop_process(proc: subprocess.Popen[Any], timeout: float = 20.0) -> None:
    """SIGTERM, then SIGKILL if it does not leave in time."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


@dataclass(frozen=True)
class Channel:
    """One configured WhatsApp number."""

    name: str
    phone_number_id: str
    waba_id: str = "200000000000001"
    mode: str = "coexistence"
    mps: int = 5
    slack_channel: str = "C0BENCH"


def write_config(path: Path, *, database_url: str, redis_url: str, graph_url: str, slack_api_url: str,
                 channels: Sequence[Channel], extra: dict[str, Any] | None = None) -> Path:
    """An app.yaml for `serve` and the CLI, with the test secrets and the given stand-ins (and extra top-level
    keys, e.g. `retention`)."""
    import yaml

    raw = {
        "server": {"host": "127.0.0.1", "port": 8080, "metrics_public": True},  # the benchmarks read /metrics
        "database_url": database_url,
        "redis_url": redis_url,
        "meta": {"graph_url": graph_url, "app_id": "300000000000001", "app_secret": APP_SECRET,
                 "verify_token": VERIFY_TOKEN},
        "slack": {"api_url": slack_api_url, "bot_token": BOT_TOKEN, "signing_secret": SIGNING_SECRET,
                  "alerts_channel": "C0ALERTS", "campaign_managers": ["UMANAGER"]},
        "channels": [{"name": c.name, "phone_number_id": c.phone_number_id, "waba_id": c.waba_id,
                      "display_phone_number": "+91 522 400 0000", "mode": c.mode, "mps": c.mps,
                      "access_token": "EAAG-bench-token", "slack_channel": c.slack_channel} for c in channels],
        **(extra or {}),
    }
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


class Serve:
    """`python -m bot serve --config FILE --port N` as a subprocess; its output goes to a log file."""

    def __init__(self, config: Path, *, log_dir: Path, name: str = "serve", migrate: bool = True,
                 log_level: str = "INFO", role: str = "all", processes: int = 1) -> None:
        self.config = config
        self.role = role
        self.processes = processes  # > 1: `--processes N` (a supervisor and N processes of the role)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_dir / f"{name}-{self.port}.log"
        self.migrate = migrate
        self.log_level = log_level
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Serve:
        args = [sys.executable, "-m", "bot", "serve", "--config", str(self.config), "--port", str(self.port),
                "--host", "127.0.0.1"]
        if not self.migrate:
            args.append("--no-migrate")
        if self.role != "all":
            args += ["--role", self.role]
        if self.processes > 1:
            args += ["--processes", str(self.processes)]
        env = {**_env(), "WABRIDGE_LOG_LEVEL": self.log_level}
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(args, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_http(f"{self.url}/healthz", proc=self.proc)
        except RuntimeError as exc:
            raise RuntimeError(f"{exc}; last log lines:\n{self.tail()}") from None
        return self

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)

    def __enter__(self) -> Serve:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def cli(config: Path, *args: str, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
    """Run `python -m bot --config FILE ARGS…` (e.g. `campaign create …`); raises when it fails."""
    done = subprocess.run([sys.executable, "-m", "bot", "--config", str(config), *args], cwd=ROOT, env=_env(),
                          capture_output=True, text=True, timeout=timeout, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"`bot {' '.join(args)}` exited {done.returncode}: {done.stderr[-2000:]}")
    return done


def get_json(url: str, timeout: float = 30.0) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return json.loads(resp.read())


class Standins:
    """The Graph and Slack stand-ins in a process of their own (as Meta and Slack are other systems: their
    clock of arrivals is not held up by the loader's event loop). Times are CLOCK_MONOTONIC, shared by all
    processes on the machine, so they compare with time.monotonic() here."""

    def __init__(self, caps: Mapping[str, int] | None = None,
                 slack_limits: Mapping[str, tuple[float, int]] | None = None) -> None:
        self.caps = dict(caps or {})
        self.slack_limits = dict(slack_limits or {})  # method -> (per second per channel, burst)
        self.graph_url = ""
        self.slack_api_url = ""
        self._control = ""
        self.proc: subprocess.Popen[str] | None = None

    def start(self) -> Standins:
        args = [sys.executable, "-m", "bench._common", "standins"]
        for pnid, mps in self.caps.items():
            args += ["--cap", f"{pnid}={mps}"]
        for method, (per_second, burst) in self.slack_limits.items():
            args += ["--slack-limit", f"{method}={per_second:g}/{burst}"]
        self.proc = subprocess.Popen(args, cwd=ROOT, env=_env(), stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line.startswith("{"):
            stop_process(self.proc)
            raise RuntimeError(f"stand-in process did not start: {line!r}")
        urls = json.loads(line)
        self.graph_url, self.slack_api_url = urls["graph"], urls["slack_api"]
        self._control = urls["graph"]
        return self

    def graph_records(self) -> dict[str, list[dict[str, Any]]]:
        """{"sends": [...], "throttle_hits": [...], "rejected": [...]}, each {t, pnid, to, code}."""
        return dict(get_json(f"{self._control}/_bench/graph"))

    def slack_posts(self) -> list[dict[str, Any]]:
        """chat.postMessage calls as {t, ok, status, blob} (blob: the call's arguments as JSON text)."""
        return list(get_json(f"{self.slack_api_url.removesuffix('/api/')}/_bench/slack"))

    def sends_count(self, pnid: str) -> int:
        """Sends accepted for one number so far (cheap to poll, unlike graph_records)."""
        return int(get_json(f"{self._control}/_bench/count?pnid={pnid}")["sends"])

    def reset(self) -> None:
        get_json(f"{self._control}/_bench/reset")

    def send_status_webhooks(self, webhook_url: str) -> None:
        """Make the Graph stand-in answer every accepted send with sent/delivered/read webhooks, as Meta does."""
        from urllib.parse import quote

        get_json(f"{self._control}/_bench/status_webhooks?url={quote(webhook_url, safe='')}")

    def status_feed(self) -> dict[str, float]:
        """{delivered, retries, pending, last_delivered_at (CLOCK_MONOTONIC)} of the status webhooks."""
        return dict(get_json(f"{self._control}/_bench/status_feed"))

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)

    def __enter__(self) -> Standins:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class BareServer:
    """The baseline endpoint, in its own process: reads the body and answers 200, nothing else."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> BareServer:
        self.proc = subprocess.Popen([sys.executable, "-m", "bench._common", "bare", "--port", str(self.port)],
                                     cwd=ROOT, env=_env())
        wait_http(f"{self.url}/healthz", proc=self.proc)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            stop_process(self.proc)


def temp_dir(prefix: str) -> tempfile.TemporaryDirectory[str]:
    return tempfile.TemporaryDirectory(prefix=prefix)


# ---- customers writing, and their posts in Slack (the mirror benchmarks) ---------------------------


@contextmanager
def mirror_stack(prefix: str, caps: Mapping[str, int] | None = None) -> Iterator[tuple[Path, Standins, str, str]]:
    """What a mirror benchmark runs on: (a temporary directory, the stand-ins, a private Redis, a fresh
    PostgreSQL database), all gone afterwards."""
    with temp_dir(prefix) as tmp, Standins(caps) as standins, redis_server() as redis_url, \
            pg_database() as db_url:
        yield Path(tmp), standins, redis_url, db_url


def customer_message(marker: str, i: int, *, number: str, wa_id: str, name: str, ts: int,
                     text: str = "question {marker}-{i}") -> tuple[bytes, dict[str, str]]:
    """A customer's signed text to `number`, carrying `marker-i` so that its Slack post is found by text."""
    from tests.helpers import inbound_text, signed

    payload = inbound_text(f"wamid.{marker}.{i}", text.format(marker=marker, i=i), wa_id=wa_id, name=name, ts=ts)
    payload["entry"][0]["changes"][0]["value"]["metadata"]["phone_number_id"] = number
    return signed(payload)


async def open_loop(url: str, items: Sequence[tuple[bytes, Mapping[str, str]]], rate: float
                    ) -> tuple[dict[int, float], list[float], int]:
    """POST items at `rate` a second whatever the answers take (open loop): ({item: send time}, ack
    latencies, errors)."""
    import aiohttp

    sent: dict[int, float] = {}
    acks: list[float] = []
    errors = 0

    async def one(session: aiohttp.ClientSession, i: int, body: bytes, headers: Mapping[str, str]) -> None:
        nonlocal errors
        sent[i] = time.monotonic()
        try:
            async with session.post(url, data=body, headers=dict(headers)) as resp:
                await resp.read()
                if resp.status != 200:
                    errors += 1
                    return
        except (aiohttp.ClientError, TimeoutError):
            errors += 1
            return
        acks.append(time.monotonic() - sent[i])

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=32),
                                     timeout=aiohttp.ClientTimeout(total=10)) as session:
        start = time.monotonic() + 0.01
        tasks = []
        for i, (body, headers) in enumerate(items):
            delay = start + i / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(session, i, body, headers)))
        await asyncio.gather(*tasks)
    return sent, acks, errors


def first_posts(standins: Standins, marker: str) -> dict[int, float]:
    """When Slack first took a post carrying `marker-i`, for each i."""
    import re

    pattern = re.compile(rf"{re.escape(marker)}-(\d+)\b")
    first: dict[int, float] = {}
    for post in standins.slack_posts():
        if post["ok"]:
            for m in set(pattern.findall(post["blob"])):
                first[int(m)] = min(post["t"], first.get(int(m), post["t"]))
    return first


def mirrored(standins: Standins, marker: str, sent: Mapping[int, float], timeout: float) -> list[float]:
    """Wait up to `timeout` for every sent message's post; the latencies of those that arrived."""
    deadline = time.monotonic() + timeout
    got = first_posts(standins, marker)
    while len(got) < len(sent) and time.monotonic() < deadline:
        time.sleep(0.5)
        got = first_posts(standins, marker)
    return [got[i] - t for i, t in sent.items() if i in got]


STAGES = ("stored", "applied", "posted")


def webhook_stages(db_url: str, marker: str, sent: Mapping[int, float], arrived: Mapping[int, float]
                   ) -> dict[str, list[float]]:
    """Where each message's time went: POST to stored (`webhook_logs.received_at`), stored to applied by the
    webhook worker (`processed_at`), applied to posted in Slack (the outbox). Seconds, per stage."""
    import re

    from sqlalchemy import select

    from storage.db import make_engine
    from storage.models import WebhookLog, as_utc

    async def rows() -> list[Any]:
        engine = make_engine(db_url)
        try:
            async with engine.connect() as conn:
                return list((await conn.execute(select(WebhookLog.raw_body, WebhookLog.received_at,
                                                       WebhookLog.processed_at)
                                                .where(WebhookLog.lane == "live"))).all())
        finally:
            await engine.dispose()

    wall = time.time() - time.monotonic()  # CLOCK_MONOTONIC to wall clock (one machine: one offset)
    pattern = re.compile(rf"{re.escape(marker)}-(\d+)\b".encode())
    out: dict[str, list[float]] = {stage: [] for stage in STAGES}
    for body, received, processed in asyncio.run(rows()):
        found = pattern.search(body)
        i = int(found.group(1)) if found else -1
        if i not in sent or i not in arrived or processed is None:
            continue
        stored, applied = as_utc(received).timestamp() - wall, as_utc(processed).timestamp() - wall
        out["stored"].append(stored - sent[i])
        out["applied"].append(applied - stored)
        out["posted"].append(arrived[i] - applied)
    return out


def latency_stats(values: Sequence[float]) -> dict[str, object]:
    """n, p50, p99 and max in milliseconds."""
    ms = 1000.0
    return {"n": len(values), "p50 ms": percentile(values, 50) * ms, "p99 ms": percentile(values, 99) * ms,
            "max ms": max(values, default=float("nan")) * ms}


def py_spy(pid: int, out: str, rate: int = 200) -> subprocess.Popen[bytes] | None:
    """Start `py-spy record` (collapsed stacks) on pid until stopped; None when py-spy is not installed."""
    import shutil

    binary = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(binary).exists():
        print("py-spy not found (pip install py-spy): no profile", file=sys.stderr)
        return None
    return subprocess.Popen([binary, "record", "-r", str(rate), "-f", "raw", "-o", out, "-p", str(pid)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def stop_py_spy(spy: subprocess.Popen[bytes]) -> None:
    """py-spy writes its file when interrupted (SIGINT), not on SIGTERM."""
    if spy.poll() is None:
        spy.send_signal(signal.SIGINT)
        try:
            spy.wait(timeout=30)
        except subprocess.TimeoutExpired:
            spy.kill()
            spy.wait(timeout=10)


def top_frames(collapsed: str, contains: str = "", limit: int = 15) -> list[tuple[float, str]]:
    """From a py-spy collapsed-stack file: the frames most often on the stack (share of samples),
    optionally only those whose text contains `contains` (e.g. "bot/")."""
    counts: dict[str, int] = {}
    total = 0
    for line in Path(collapsed).read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if not n.isdigit():
            continue
        total += int(n)
        for frame in set(stack.split(";")):
            if contains in frame:
                counts[frame] = counts.get(frame, 0) + int(n)
    ranked = sorted(counts.items(), key=lambda kv: -kv[1])[:limit]
    return [(n / total if total else 0.0, frame) for frame, n in ranked]


# ---- the subprocess programs ---------------------------------------------------------------------


async def _serve_standins(caps: Mapping[str, int], slack_limits: Mapping[str, tuple[float, int]]) -> None:
    from aiohttp import web

    from bot.standins.graph import GraphStandin
    from bot.standins.slack import SlackStandin

    def rows(records: Sequence[Any]) -> list[dict[str, Any]]:
        return [{"t": r.time, "pnid": r.phone_number_id, "to": r.to, "code": r.error_code} for r in records]

    class Graph(GraphStandin):
        def _routes(self, app: web.Application) -> None:
            app.router.add_get("/_bench/graph", self._bench_records)
            app.router.add_get("/_bench/reset", self._bench_reset)
            app.router.add_get("/_bench/count", self._bench_count)
            app.router.add_get("/_bench/status_webhooks", self._bench_status_webhooks)
            app.router.add_get("/_bench/status_feed", self._bench_status_feed)
            super()._routes(app)

        async def _bench_status_webhooks(self, request: web.Request) -> web.Response:
            self.send_status_webhooks(request.query["url"], APP_SECRET)
            return web.json_response({"ok": True})

        async def _bench_status_feed(self, request: web.Request) -> web.Response:
            feed = self.status_feed
            if feed is None:
                return web.json_response({"delivered": 0, "retries": 0, "pending": 0, "last_delivered_at": 0})
            return web.json_response({"delivered": feed.stats.delivered, "retries": feed.stats.retries,
                                      "pending": feed.pending, "last_delivered_at": feed.stats.last_delivered_at})

        async def _bench_records(self, request: web.Request) -> web.Response:
            return web.json_response({"sends": rows(self.sends), "throttle_hits": rows(self.throttle_hits),
                                      "rejected": rows(self.rejected)})

        async def _bench_count(self, request: web.Request) -> web.Response:
            pnid = request.query.get("pnid")
            return web.json_response({"sends": sum(1 for r in self.sends if r.phone_number_id == pnid)})

        async def _bench_reset(self, request: web.Request) -> web.Response:
            self.reset_records()
            slack.calls.clear()
            return web.json_response({"ok": True})

    class Slack(SlackStandin):
        def _routes(self, app: web.Application) -> None:
            app.router.add_get("/_bench/slack", self._bench_posts)
            super()._routes(app)

        async def _bench_posts(self, request: web.Request) -> web.Response:
            posts = [{"t": c.time, "ok": c.ok, "status": c.status, "blob": json.dumps(c.args, default=str)}
                     for c in self.calls if c.method == "chat.postMessage"]
            return web.json_response(posts)

    graph = Graph()
    for pnid, mps in caps.items():
        graph.set_mps(pnid, float(mps))
    slack = Slack(bot_token=BOT_TOKEN)
    for method, (per_second, burst) in slack_limits.items():
        slack.limit_per_channel(method, per_second, burst)
    await graph.start()
    await slack.start()
    print(json.dumps({"graph": graph.base_url, "slack_api": slack.api_url}), flush=True)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    await slack.stop()
    await graph.stop()


async def _serve_bare(port: int) -> None:
    from aiohttp import web

    async def receive(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(text="EVENT_RECEIVED")

    async def health(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    app = web.Application()
    app.router.add_post("/webhooks/meta", receive)
    app.router.add_get("/healthz", health)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    await runner.cleanup()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="benchmark helper processes")
    sub = parser.add_subparsers(dest="what", required=True)
    st = sub.add_parser("standins")
    st.add_argument("--cap", action="append", default=[], metavar="PNID=MPS")
    st.add_argument("--slack-limit", action="append", default=[], metavar="METHOD=PER_S/BURST")
    bare = sub.add_parser("bare")
    bare.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    if args.what == "standins":
        caps = {k: int(v) for k, v in (c.split("=", 1) for c in args.cap)}
        limits = {}
        for spec in args.slack_limit:
            method, rate = spec.split("=", 1)
            per_second, _, burst = rate.partition("/")
            limits[method] = (float(per_second), int(burst or 1))
        asyncio.run(_serve_standins(caps, limits))
    else:
        asyncio.run(_serve_bare(args.port))


if __name__ == "__main__":
    main()
