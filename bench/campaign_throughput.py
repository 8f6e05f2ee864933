"""Campaign throughput: achieved send rate against each number's cap, with one and two `serve` processes.

Run from the repository root:

    .venv/bin/python -m bench.campaign_throughput            # 5, 80 and 1,000 mps; 1 then 2 processes
    .venv/bin/python -m bench.campaign_throughput --quick    # shorter campaigns
    .venv/bin/python bench/campaign_throughput.py --mps 80 --processes 2 --seconds 3
    .venv/bin/python -m bench.campaign_throughput --hog 2   # the same beside a CPU hog on two cores

Three Cloud API numbers are configured at 5, 80 and 1,000 messages per second. The Graph stand-in runs in
a process of its own with the same cap per number, so a send over the cap is refused with 130429 and
counted. `serve` processes share one PostgreSQL database and one (private) Redis; each campaign is created
with `python -m bot campaign create …` while they run, as an operator's script would, and they pick it up.

Figures per campaign, from the stand-in's arrival stamps: achieved rate ÷ cap (first to last send), the
most sends in any sliding one-second window, 130429 refusals, recipients sent twice, and each process's
share (from its /metrics). The baseline is the cap itself: a campaign send counts against the cap from
its start until its response is back (the latest moment it can have reached Meta), so a saturated number
runs at 1 / (1 + response latency) of the cap, whatever the jitter or the CPU load. ``--hog N`` runs N
busy processes beside the bridge for the whole measurement.
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing
import re
import sys
import time
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import _common
from scheduler.ratemath import achieved_rate, max_in_window

TARGET_RATIO = 0.99
PNID_BASE = 100000000000100
TEMPLATE = "bench_notice"


@dataclass(frozen=True)
class Number:
    mps: int
    recipients: int

    @property
    def pnid(self) -> str:
        return str(PNID_BASE + self.mps)

    @property
    def name(self) -> str:
        return f"bench{self.mps}"


def write_audience(path: Path, count: int, block: int) -> Path:
    """A CSV of `count` distinct valid Indian mobile numbers (block keeps campaigns apart)."""
    with open(path, "w") as f:
        f.write("phone,name\n")
        for i in range(count):
            f.write(f"+91 98{block % 10}{i:07d},Student {i}\n")
    return path


def _sent_by(url: str, channel: str) -> float:
    """This process's count of campaign messages accepted by Meta for a channel (from /metrics)."""
    with urllib.request.urlopen(f"{url}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    pattern = re.compile(r'^wabridge_whatsapp_sends_total\{([^}]*)\} ([0-9.e+]+)$', re.M)
    total = 0.0
    for labels, value in pattern.findall(text):
        if f'channel="{channel}"' in labels and 'source="campaign"' in labels and 'outcome="sent"' in labels:
            total += float(value)
    return total


def _campaign_id(output: str) -> int:
    found = re.search(r"campaign #(\d+)", output)
    if not found:
        raise RuntimeError(f"no campaign id in: {output!r}")
    return int(found.group(1))


def measure(config: Path, standins: _common.Standins, serves: Sequence[_common.Serve], number: Number,
            audience: Path, wait: float, profile: str = "") -> dict[str, object]:
    """Create one campaign through the CLI, wait for it to be sent (or `wait` s), and read the stand-in."""
    standins.reset()
    before = [_sent_by(s.url, number.name) for s in serves]
    created = time.monotonic()
    out = _common.cli(config, "campaign", "create", "--channel", number.name, "--template", TEMPLATE,
                      "--language", "en", "--audience", str(audience), "--category", "utility",
                      "--name", f"bench {number.mps} mps")
    cid = _campaign_id(out.stdout)
    assert standins.proc is not None
    meter = _common.CpuMeter({"serve": [s.proc.pid for s in serves if s.proc is not None],
                              "postgres": "postgres", "redis": "redis-server",
                              "meta": [standins.proc.pid]}).start()
    spy = _common.py_spy(serves[0].proc.pid, profile) if profile and serves[0].proc is not None else None
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline and standins.sends_count(number.pnid) < number.recipients:
        time.sleep(0.25)
    cpu = meter.stop()
    if spy is not None:
        _common.stop_py_spy(spy)
    finished = standins.sends_count(number.pnid) >= number.recipients
    if not finished:
        try:
            _common.cli(config, "campaign", "cancel", str(cid))
        except RuntimeError as exc:
            if "already" not in str(exc):  # it finished between the last look and the cancel
                raise
        time.sleep(1.0)
    records = standins.graph_records()
    sends = [r for r in records["sends"] if r["pnid"] == number.pnid]
    hits = [r for r in records["throttle_hits"] if r["pnid"] == number.pnid]
    times = [float(str(r["t"])) for r in sends]
    per_recipient: dict[str, int] = {}
    for r in sends:
        per_recipient[str(r["to"])] = per_recipient.get(str(r["to"]), 0) + 1
    shares = [_sent_by(s.url, number.name) - b for s, b in zip(serves, before, strict=True)]
    rate = achieved_rate(times)
    return {
        "processes": len(serves), "cap mps": number.mps, "recipients": number.recipients, "sent": len(sends),
        "rate/s": rate, "rate/cap": rate / number.mps,
        "max 1-s window": max_in_window(times, 1.0), "130429": len(hits),
        "130429 at s": ",".join(f"{float(str(h['t'])) - min(times):.2f}" for h in hits) if hits and times else "-",
        "twice": sum(1 for n in per_recipient.values() if n > 1),
        "per process": "/".join(str(int(s)) for s in shares),
        "start s": (min(times) - created) if times else float("nan"),
        "CPU serve/pg/redis/meta": "/".join(f"{cpu[k]:.2f}" for k in ("serve", "postgres", "redis", "meta")),
        "done": "yes" if len(sends) >= number.recipients else f"cancelled after {wait:g} s",
    }


def _spin() -> None:
    while True:
        pass


@contextlib.contextmanager
def cpu_hog(processes: int) -> Iterator[None]:
    """``processes`` busy loops at normal priority for as long as the block runs."""
    hogs = [multiprocessing.Process(target=_spin, daemon=True) for _ in range(processes)]
    for hog in hogs:
        hog.start()
    try:
        yield
    finally:
        for hog in hogs:
            hog.terminate()
            hog.join()


def run(mps: Sequence[int], processes: Sequence[int], seconds: float, slow_seconds: float,
        wait_factor: float = 4.0, profile: str = "", hog: int = 0) -> dict[str, object]:
    """Measure each cap with each process count; returns the figures (also printed)."""
    numbers = [Number(m, max(2, int(m * (slow_seconds if m < 50 else seconds))) + 1) for m in mps]
    rows: list[dict[str, object]] = []
    with _common.temp_dir("wabridge-bench-campaign-") as tmp_name, cpu_hog(hog), \
            _common.Standins({n.pnid: n.mps for n in numbers}) as standins, \
            _common.redis_server() as redis_url, _common.pg_database() as db_url:
        tmp = Path(tmp_name)
        config = _common.write_config(
            tmp / "app.yaml", database_url=db_url, redis_url=redis_url, graph_url=standins.graph_url,
            slack_api_url=standins.slack_api_url,
            channels=[_common.Channel(n.name, n.pnid, mode="cloud_api", mps=n.mps, slack_channel=f"C0B{n.mps}")
                      for n in numbers])
        block = 0
        for count in processes:
            serves: list[_common.Serve] = []
            try:
                for k in range(count):  # one after another: the first applies the migrations
                    serves.append(_common.Serve(config, log_dir=tmp, name=f"serve{count}-{k}").start())
                for number in numbers:
                    block += 1
                    audience = write_audience(tmp / f"audience-{block}.csv", number.recipients, block)
                    expected = number.recipients / number.mps
                    spy_out = f"{profile}.{number.mps}mps.x{count}" if profile else ""
                    rows.append(measure(config, standins, serves, number, audience,
                                        wait=expected * wait_factor + 10.0, profile=spy_out))
            finally:
                for serve in serves:
                    serve.stop()
    print(_common.table(rows, f"Campaign throughput; {_common.machine()}; CPU hog processes: {hog}"))
    print(f"\nrate/cap target >= {TARGET_RATIO} (1 / (1 + response latency) by design); "
          "max 1-s window must be <= cap; 130429 target 0; twice must be 0")
    kept = all(int(r["max 1-s window"]) <= int(r["cap mps"]) for r in rows)  # type: ignore[call-overload]
    no_hits = all(r["130429"] == 0 for r in rows)
    print(f"cap kept in every window: {'yes' if kept else 'NO'}; no 130429: {'yes' if no_hits else 'NO'}; "
          f"rate/cap >= {TARGET_RATIO}: "
          + ", ".join(f"{r['cap mps']} mps x{r['processes']} {float(str(r['rate/cap'])):.3f}" for r in rows))
    return {"rows": rows, "cap_kept": kept, "no_130429": no_hits}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mps", type=int, nargs="+", default=[5, 80, 1000], help="caps to measure")
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2], help="serve processes")
    parser.add_argument("--seconds", type=float, default=None,
                        help="nominal campaign length for caps of 50 and more (default 5, 2 with --quick)")
    parser.add_argument("--slow-seconds", type=float, default=None,
                        help="nominal campaign length for smaller caps (default 10, 4 with --quick)")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--py-spy", default="", metavar="PREFIX",
                        help="record the first serve process with py-spy during each campaign (PREFIX.<mps>mps.x<n>)")
    parser.add_argument("--hog", type=int, default=0, metavar="N",
                        help="run N CPU-bound busy processes beside the bridge (2: both cores of the bench machine)")
    args = parser.parse_args(argv)
    run(args.mps, args.processes, args.seconds or (2.0 if args.quick else 5.0),
        args.slow_seconds or (4.0 if args.quick else 10.0), profile=args.py_spy, hog=args.hog)
    return 0


if __name__ == "__main__":
    sys.exit(main())
