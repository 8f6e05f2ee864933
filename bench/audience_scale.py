"""Audience scale: importing a campaign audience CSV of 10k, 100k and 1M recipients (rows/s, peak RSS).

Run from the repository root:

    .venv/bin/python -m bench.audience_scale                    # 10k, 100k, 1M rows into PostgreSQL
    .venv/bin/python -m bench.audience_scale --quick            # 10k and 100k
    .venv/bin/python bench/audience_scale.py --sizes 10000 --db postgres sqlite

The CSV (phone, name, course; numbers written the ways people write them, a few duplicates and bad rows)
is generated in a temporary directory. Every measurement runs in a fresh subprocess and reports its own
peak RSS (VmHWM: ru_maxrss would carry the forking parent's peak across exec on Linux); "RSS before" is
what the interpreter and imports took before the first row.

Stages, each over the same file in the same run:
- csv.reader: the baseline, reading the rows and nothing else;
- parse_rows: header sniffing, phone normalisation and validation (scheduler.campaigns.audience.parse_rows), to
  show where an import's time goes; by default only up to 100k rows, to keep the run within 3 minutes;
- import_audience: the whole import into a draft campaign on a fresh database, batches committed.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import random
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import _common

TARGET_ROWS_PER_S = 50_000
TARGET_RSS_MB = 300.0
REGION = "IN"


def write_csv(path: Path, rows: int, seed: int = 7) -> Path:
    """rows data rows: Indian mobiles in mixed spellings, about 0.5% duplicates and 0.1% bad numbers."""
    rnd = random.Random(seed)
    with open(path, "w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["Phone", "Name", "Course"])
        for i in range(rows):
            n = i if rnd.random() > 0.005 else rnd.randrange(max(1, i))  # a duplicate of an earlier row
            national = f"9{n:09d}"[:10]
            spelling = n % 4
            phone = (f"+91 {national[:5]} {national[5:]}" if spelling == 0 else f"0{national}" if spelling == 1
                     else f"91{national}" if spelling == 2 else national)
            if rnd.random() < 0.001:
                phone = "12345"
            out.writerow([phone, f"Student {n}", "JEE" if n % 2 else "NEET"])
    return path


# ---- child process: one measurement -----------------------------------------------------------------


def _status_mb(field: str) -> float:
    """A size from /proc/self/status in MB (VmRSS: now; VmHWM: the peak of this program)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024.0
    return float("nan")


def _child_csv(path: str) -> dict[str, Any]:
    rows = 0
    with open(path, encoding="utf-8-sig", newline="") as f:
        for _ in csv.reader(f):
            rows += 1
    return {"rows": rows - 1}


def _child_parse(path: str) -> dict[str, Any]:
    from scheduler.campaigns.audience import BadRow, parse_rows
    from scheduler.campaigns.audience_text import open_text

    rows = bad = 0
    with open_text(path) as stream:
        for item in parse_rows(stream, REGION, ["Name"]):
            rows += 1
            bad += isinstance(item, BadRow)
    return {"rows": rows, "bad": bad}


async def _child_import(path: str, db_url: str) -> dict[str, Any]:
    from scheduler.campaigns import records as campaigns
    from scheduler.campaigns.audience import import_audience
    from scheduler.campaigns.audience_text import open_text
    from scheduler.campaigns.schedule import Schedule
    from storage.db import make_engine, make_sessionmaker
    from storage.models import Channel, utcnow

    engine = make_engine(db_url)
    sessions = make_sessionmaker(engine)
    async with sessions() as session, session.begin():
        channel = Channel(phone_number_id="100000000000001", waba_id="200000000000001", name="lucknow",
                          mode="cloud_api", mps=80)
        session.add(channel)
        await session.flush()
        draft = await campaigns.create_draft(
            session, name="scale", channel_id=channel.id, template_name="notice", language="en",
            category="UTILITY", variables={"1": {"column": "Name"}},
            schedule=Schedule("now", "Asia/Kolkata", run_at=utcnow()), created_by="bench", slack_channel=None)
        campaign_id = draft.id
    started = time.perf_counter()
    with open_text(path) as stream:
        report = await import_audience(sessions, campaign_id, stream, REGION, ["Name"])
    elapsed = time.perf_counter() - started
    await engine.dispose()
    return {"rows": report.rows, "imported": report.imported, "duplicates": report.duplicates,
            "bad": report.bad_count, "seconds": elapsed}


def child(stage: str, path: str, db_url: str) -> None:
    """Run one stage and print its figures as JSON (the timed part excludes imports and set-up)."""
    import phonenumbers  # noqa: F401  (loaded before the clock starts, as a running server has it)

    import scheduler.campaigns.audience  # noqa: F401

    before = _status_mb("VmRSS")
    started = time.perf_counter()
    if stage == "csv.reader":
        out = _child_csv(path)
    elif stage == "parse_rows":
        out = _child_parse(path)
    else:
        out = asyncio.run(_child_import(path, db_url))
    out.setdefault("seconds", time.perf_counter() - started)
    # VmHWM, not ru_maxrss: on Linux ru_maxrss survives exec, so a child would report its parent's peak.
    out.update(rss_before_mb=before, peak_rss_mb=_status_mb("VmHWM"))
    print(json.dumps(out))


# ---- parent: orchestration ----------------------------------------------------------------------------


def _migrated(db_url: str) -> str:
    from storage.db import migrate_sync

    migrate_sync(db_url)
    return db_url


def _run_child(stage: str, path: Path, db_url: str = "") -> dict[str, Any]:
    done = subprocess.run([sys.executable, "-m", "bench.audience_scale", "--child", stage, str(path), db_url],
                          cwd=_common.ROOT, env=_common._env(), capture_output=True, text=True, timeout=900,
                          check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{stage} on {path.name} failed: {done.stderr[-3000:]}")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def run(sizes: Sequence[int], dbs: Sequence[str], stages: Sequence[str], parse_limit: int = 100_000
        ) -> dict[str, object]:
    """Measure every stage at every size; returns the figures (also printed)."""
    rows: list[dict[str, object]] = []
    with _common.temp_dir("wabridge-bench-audience-") as tmp_name:
        tmp = Path(tmp_name)
        for size in sizes:
            path = write_csv(tmp / f"audience-{size}.csv", size)
            baseline = 0.0
            plan = [s for s in stages if s != "import" and (s != "parse_rows" or size <= parse_limit)]
            plan += [f"import ({db})" for db in dbs] if "import" in stages else []
            for stage in plan:
                if stage.startswith("import (postgres"):
                    with _common.pg_database() as url:
                        figures = _run_child("import", path, _migrated(url))
                elif stage.startswith("import (sqlite"):
                    figures = _run_child("import", path, _migrated(f"sqlite+aiosqlite:///{tmp / f'a{size}.db'}"))
                else:
                    figures = _run_child(stage, path)
                rate = figures["rows"] / figures["seconds"] if figures["seconds"] else float("nan")
                if stage == "csv.reader":
                    baseline = rate
                rows.append({"rows": size, "stage": stage, "seconds": figures["seconds"], "rows/s": rate,
                             "vs csv.reader": rate / baseline if baseline else float("nan"),
                             "RSS before MB": figures["rss_before_mb"], "peak RSS MB": figures["peak_rss_mb"],
                             "imported": figures.get("imported", "-"), "bad": figures.get("bad", "-")})
            path.unlink()
    print(_common.table(rows, f"Audience import; {_common.machine()}"))
    imports = [r for r in rows if str(r["stage"]).startswith("import")]
    slowest = min((float(str(r["rows/s"])) for r in imports), default=float("nan"))
    peak = max((float(str(r["peak RSS MB"])) for r in imports), default=float("nan"))
    print(f"\nimport: slowest {slowest:,.0f} rows/s (target >= {TARGET_ROWS_PER_S:,}: "
          f"{'met' if slowest >= TARGET_ROWS_PER_S else 'MISSED'}); highest peak RSS {peak:.0f} MB (target < "
          f"{TARGET_RSS_MB:g}: {'met' if peak < TARGET_RSS_MB else 'MISSED'})")
    return {"rows": rows, "slowest_rows_per_s": slowest, "peak_rss_mb": peak}


def main(argv: Sequence[str] | None = None) -> int:
    if argv is None and len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(*sys.argv[2:5])
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=None, help="rows per file (default 10k 100k 1M)")
    parser.add_argument("--db", nargs="+", default=["postgres"], choices=["postgres", "sqlite"])
    parser.add_argument("--stages", nargs="+", default=["csv.reader", "parse_rows", "import"],
                        choices=["csv.reader", "parse_rows", "import"])
    parser.add_argument("--parse-limit", type=int, default=100_000,
                        help="largest file the parse_rows stage runs on (it only explains the import's time)")
    parser.add_argument("--quick", action="store_true", help="10k and 100k rows")
    args = parser.parse_args(argv)
    sizes = args.sizes or ([10_000, 100_000] if args.quick else [10_000, 100_000, 1_000_000])
    run(sizes, args.db, args.stages, args.parse_limit)
    return 0


if __name__ == "__main__":
    sys.exit(main())
